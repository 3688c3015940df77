@testable import Model
import TestSupport
import XCTest

final class ConvTranspose2dTests: XCTestCase {
    typealias Cases = ConvolutionCases

    private struct Layer {
        let store = ParameterStore()
        let conv: ConvTranspose2d
        let workspace: FloatBuffer
        let outputHeight: Int, outputWidth: Int

        init(window: Window, seed: UInt64) {
            conv = ConvTranspose2d(name: "up", inputChannels: Cases.channels, outputChannels: Cases.outputs, window: window,
                                   parameters: store)
            store.allocate()
            store.initialize(seed: seed)
            (outputHeight, outputWidth) = conv.outputSize(height: Cases.height, width: Cases.width)
            workspace = FloatBuffer(count: conv.workspaceCount(batch: Cases.batch, height: Cases.height, width: Cases.width))
        }

        var outputCount: Int { Cases.batch * outputHeight * outputWidth * Cases.outputs }
        var weight: [Double] { torchTensor(conv.weight, in: store.values) }
        var bias: [Double] { torchTensor(conv.bias, in: store.values) }

        func forward(_ input: FloatBuffer, relu: Bool = false) -> FloatBuffer {
            let output = makeBuffer(count: outputCount, filledWith: .nan)
            conv.forward(output: output.pointer, input: input.pointer, batch: Cases.batch, height: Cases.height,
                         width: Cases.width, relu: relu, parameters: store.values.pointer, workspace: workspace.pointer)
            return output
        }
    }

    /// Test 3a: GEMM + col2im against PyTorch's definition as a scatter,
    /// `out[n, oy, ox, o] += x[n, iy, ix, i] * W[i, o, ky, kx]` with `oy = iy*s - p + ky`.
    func testForwardMatchesNaiveScatter() {
        for (index, window) in Cases.windows.enumerated() {
            let label = Cases.label(window)
            let layer = Layer(window: window, seed: 1100 + UInt64(index))
            // PyTorch's fan_in for a transposed conv comes from the weight's second dimension: out * kh * kw.
            XCTAssertEqual(layer.conv.weight.shape, [Cases.channels, Cases.outputs, window.kernelHeight, window.kernelWidth])
            let bound = 1 / Double(Cases.outputs * window.area).squareRoot()
            XCTAssertEqual(Double(layer.conv.weight.uniformBound!), bound, accuracy: 1e-7)
            for v in layer.weight + layer.bias { XCTAssertLessThanOrEqual(abs(v), bound, label) }

            let (x, tensor) = Cases.input(seed: 1200 + UInt64(index))
            let expected = naiveConvTranspose2d(tensor, weight: layer.weight, bias: layer.bias,
                                                outputChannels: Cases.outputs, window: window)
            XCTAssertEqual(layer.outputHeight, expected.height, label)
            XCTAssertEqual(layer.outputWidth, expected.width, label)
            let input = makeBuffer(x)
            assertClose(layer.forward(input).array, expected.values, tolerance: 1e-5, "convT \(label) forward")
            assertClose(layer.forward(input, relu: true).array, expected.values.map { max($0, 0) }, tolerance: 1e-5,
                        "convT \(label) forward+relu")
        }
    }

    /// Test 3b: the backward pass against a naive double backward and central differences.
    func testBackwardMatchesNaiveDoubleBackwardAndFiniteDifferences() {
        for (index, window) in Cases.windows.enumerated() {
            let label = Cases.label(window)
            let layer = Layer(window: window, seed: 1300 + UInt64(index))
            let (x, tensor) = Cases.input(seed: 1400 + UInt64(index))
            let input = makeBuffer(x)
            let rFloats = randomFloats(layer.outputCount, seed: 1500 + UInt64(index))
            let r = rFloats.map(Double.init)
            let rBuffer = makeBuffer(rFloats)

            let before = layer.store.fillGradients(seed: 1600 + UInt64(index))
            let inputGradient = makeBuffer(count: x.count, filledWith: 7)
            layer.conv.backward(inputGradient: inputGradient.pointer, outputGradient: rBuffer.pointer, input: input.pointer,
                                batch: Cases.batch, height: Cases.height, width: Cases.width,
                                parameters: layer.store.values.pointer, gradients: layer.store.gradients.pointer,
                                workspace: layer.workspace.pointer)
            let dy = Tensor4(batch: Cases.batch, height: layer.outputHeight, width: layer.outputWidth,
                             channels: Cases.outputs, values: r)
            let expected = naiveConvTranspose2dBackward(dy, input: tensor, weight: layer.weight, window: window)
            assertClose(inputGradient.array, expected.input.values, tolerance: 1e-4, "convT \(label) dx vs naive")
            assertClose(layer.store.accumulatedGradient(layer.conv.weight, since: before), expected.weight,
                        tolerance: 1e-4, "convT \(label) dW vs naive")
            assertClose(layer.store.accumulatedGradient(layer.conv.bias, since: before), expected.bias,
                        tolerance: 1e-4, "convT \(label) db vs naive")

            layer.store.zeroGradients()
            layer.conv.backward(inputGradient: nil, outputGradient: rBuffer.pointer, input: input.pointer,
                                batch: Cases.batch, height: Cases.height, width: Cases.width,
                                parameters: layer.store.values.pointer, gradients: layer.store.gradients.pointer,
                                workspace: layer.workspace.pointer)
            assertClose(torchTensor(layer.conv.weight, in: layer.store.gradients), expected.weight, tolerance: 1e-4,
                        "convT \(label) dW (no dx)")

            let h: Float = 1e-2
            func loss() -> Double { dot(layer.forward(input), r) }
            var numeric: [Double] = [], analytic: [Double] = []
            for i in sampleIndices(count: x.count, samples: 6, seed: 11 + UInt64(index)) {
                let saved = input[i]
                input[i] = saved + h; let plus = loss()
                input[i] = saved - h; let minus = loss()
                input[i] = saved
                numeric.append((plus - minus) / Double(2 * h))
                analytic.append(Double(inputGradient[i]))
            }
            let values = layer.store.values, gradients = layer.store.gradients
            for slot in [layer.conv.weight, layer.conv.bias] {
                for j in sampleIndices(count: slot.count, samples: 6, seed: 12 + UInt64(index)) {
                    let i = slot.offset + j
                    let saved = values[i]
                    values[i] = saved + h; let plus = loss()
                    values[i] = saved - h; let minus = loss()
                    values[i] = saved
                    numeric.append((plus - minus) / Double(2 * h))
                    analytic.append(Double(gradients[i]))
                }
            }
            assertClose(analytic, numeric, tolerance: 1e-2, "convT \(label) gradients vs finite differences")
            withExtendedLifetime((rBuffer, input, inputGradient)) {}
        }
    }

    /// Test 3c: the 4x4 stride-2 padding-1 layer as the adjoint of Winograd F(2x2, 2x2), with
    /// channel counts that fill whole 16-float vectors and leave tails: forward with bias and ReLU,
    /// dx, dW (accumulated onto non-zero gradients) and db against the naive double ops.
    func testStridedWinogradMatchesNaiveWithFullVectorsAndTails() {
        let window = Window(kernel: 4, stride: 2, padding: 1)
        let cases = [(batch: 2, height: 4, width: 5, inputs: 20, outputs: 37),
                     (batch: 1, height: 3, width: 3, inputs: 33, outputs: 16),
                     (batch: 2, height: 1, width: 4, inputs: 16, outputs: 18),
                     (batch: 1, height: 3, width: 2, inputs: 64, outputs: 3)]
        for (index, c) in cases.enumerated() {
            let label = "\(c)"
            let store = ParameterStore()
            let conv = ConvTranspose2d(name: "up", inputChannels: c.inputs, outputChannels: c.outputs, window: window,
                                       parameters: store)
            store.allocate()
            store.initialize(seed: 1200 + UInt64(index))
            XCTAssertEqual(conv.usesStridedWinograd, c.outputs >= 16, label)
            assertMatchesNaive(conv, store: store, batch: c.batch, height: c.height, width: c.width, inputs: c.inputs,
                               seed: 1200 + UInt64(index), label: label,
                               naiveForward: { naiveConvTranspose2d($0, weight: $1, bias: $2, outputChannels: c.outputs, window: window) },
                               naiveBackward: { naiveConvTranspose2dBackward($0, input: $1, weight: $2, window: window) })
        }
    }

    /// Test 3d: `resize` (nearest-neighbour upsampling by 2, then a 3x3 convolution with padding 1)
    /// against those two naive double ops, through the GEMM path and the strided Winograd one, with
    /// full vectors and tails: forward with bias and ReLU, dx, dW (accumulated) and db, within 3e-5
    /// (the tied 4x4 kernel's entries are sums of up to four weights, so Winograd's rounding, which
    /// follows the kernel's size, is up to four times that of an untied layer: 1.2e-5 measured).
    /// The weight is a Conv2d's, `[out, in, 3, 3]`, with PyTorch's Conv2d bound.
    func testResizeLayerIsNearestUpsamplingThenA3x3Convolution() {
        let window = Window(kernel: 4, stride: 2, padding: 1), same3 = Window(kernel: 3, stride: 1, padding: 1)
        let cases = [(batch: 2, height: 3, width: 4, inputs: 3, outputs: 4),
                     (batch: 2, height: 4, width: 5, inputs: 20, outputs: 37),
                     (batch: 1, height: 3, width: 3, inputs: 33, outputs: 16),
                     (batch: 1, height: 1, width: 2, inputs: 16, outputs: 3)]
        for (index, c) in cases.enumerated() {
            let label = "resize \(c)"
            let store = ParameterStore()
            let conv = ConvTranspose2d(name: "up", inputChannels: c.inputs, outputChannels: c.outputs, window: window,
                                       resize: true, parameters: store)
            store.allocate()
            store.initialize(seed: 1700 + UInt64(index))
            XCTAssertEqual(conv.weight.shape, [c.outputs, c.inputs, 3, 3], label)
            XCTAssertEqual(Double(conv.weight.uniformBound!), 1 / Double(9 * c.inputs).squareRoot(), accuracy: 1e-7, label)
            XCTAssertEqual(conv.outputSize(height: c.height, width: c.width).height, 2 * c.height, label)
            assertMatchesNaive(conv, store: store, batch: c.batch, height: c.height, width: c.width, inputs: c.inputs,
                               seed: 1700 + UInt64(index), label: label, tolerance: 3e-5,
                               naiveForward: { x, weight, bias in
                                   naiveConv2d(naiveUpsampleNearest2x(x), weight: weight, bias: bias, outputChannels: c.outputs,
                                               window: same3)
                               },
                               naiveBackward: { dy, x, weight in
                                   var g = naiveConv2dBackward(dy, input: naiveUpsampleNearest2x(x), weight: weight, window: same3)
                                   g.input = naiveUpsampleNearest2xBackward(g.input)
                                   return g
                               })
        }
    }
}
