@testable import Model
import TestSupport
import XCTest

final class Conv2dTests: XCTestCase {
    typealias Cases = ConvolutionCases

    private struct Layer {
        let store = ParameterStore()
        let conv: Conv2d
        let workspace: FloatBuffer
        let outputHeight: Int, outputWidth: Int

        init(window: Window, seed: UInt64) {
            conv = Conv2d(name: "conv", inputChannels: Cases.channels, outputChannels: Cases.outputs, window: window,
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
            let output = makeBuffer(count: outputCount, filledWith: .nan)  // every element must be written
            conv.forward(output: output.pointer, input: input.pointer, batch: Cases.batch, height: Cases.height,
                         width: Cases.width, relu: relu, parameters: store.values.pointer, workspace: workspace.pointer)
            return output
        }
    }

    /// Test 1: the im2col + GEMM forward against a direct 7-loop convolution in double.
    func testForwardMatchesNaiveDirectConvolution() {
        for (index, window) in Cases.windows.enumerated() {
            let label = Cases.label(window)
            let layer = Layer(window: window, seed: 100 + UInt64(index))
            let fanIn = Double(Cases.channels * window.area)
            XCTAssertEqual(layer.conv.weight.shape, [Cases.outputs, Cases.channels, window.kernelHeight, window.kernelWidth])
            for v in layer.weight + layer.bias {
                XCTAssertLessThanOrEqual(abs(v), 1 / fanIn.squareRoot(), "\(label): initial value outside U(-1/sqrt(fan_in), ..)")
            }
            let (x, tensor) = Cases.input(seed: 200 + UInt64(index))
            let expected = naiveConv2d(tensor, weight: layer.weight, bias: layer.bias, outputChannels: Cases.outputs, window: window)
            XCTAssertEqual(layer.outputHeight, expected.height, label)
            XCTAssertEqual(layer.outputWidth, expected.width, label)
            let input = makeBuffer(x)
            assertClose(layer.forward(input).array, expected.values, tolerance: 1e-5, "conv \(label) forward")
            assertClose(layer.forward(input, relu: true).array, expected.values.map { max($0, 0) }, tolerance: 1e-5,
                        "conv \(label) forward+relu")
        }
    }

    /// Test 2: input, weight and bias gradients of `L = sum(y * r)` against (a) a naive backward in
    /// double (exact: the gradients are linear maps of r) and (b) central finite differences of the
    /// layer's own forward pass on sampled entries.
    func testBackwardMatchesNaiveDoubleBackwardAndFiniteDifferences() {
        for (index, window) in Cases.windows.enumerated() {
            let label = Cases.label(window)
            let layer = Layer(window: window, seed: 300 + UInt64(index))
            let (x, tensor) = Cases.input(seed: 400 + UInt64(index))
            let input = makeBuffer(x)
            let rFloats = randomFloats(layer.outputCount, seed: 500 + UInt64(index))
            let r = rFloats.map(Double.init)
            let rBuffer = makeBuffer(rFloats)

            // (a) Exact comparison with the naive backward. Gradients start non-zero: they must accumulate.
            let before = layer.store.fillGradients(seed: 600 + UInt64(index))
            let inputGradient = makeBuffer(count: x.count, filledWith: 7)  // must be overwritten
            layer.conv.backward(inputGradient: inputGradient.pointer, outputGradient: rBuffer.pointer, input: input.pointer,
                                batch: Cases.batch, height: Cases.height, width: Cases.width,
                                parameters: layer.store.values.pointer, gradients: layer.store.gradients.pointer,
                                workspace: layer.workspace.pointer)
            let dy = Tensor4(batch: Cases.batch, height: layer.outputHeight, width: layer.outputWidth,
                             channels: Cases.outputs, values: r)
            let expected = naiveConv2dBackward(dy, input: tensor, weight: layer.weight, window: window)
            let dW = layer.store.accumulatedGradient(layer.conv.weight, since: before)
            let db = layer.store.accumulatedGradient(layer.conv.bias, since: before)
            assertClose(inputGradient.array, expected.input.values, tolerance: 1e-4, "conv \(label) dx vs naive")
            assertClose(dW, expected.weight, tolerance: 1e-4, "conv \(label) dW vs naive")
            assertClose(db, expected.bias, tolerance: 1e-4, "conv \(label) db vs naive")

            // Without an input gradient the parameter gradients are the same.
            layer.store.zeroGradients()
            layer.conv.backward(inputGradient: nil, outputGradient: rBuffer.pointer, input: input.pointer,
                                batch: Cases.batch, height: Cases.height, width: Cases.width,
                                parameters: layer.store.values.pointer, gradients: layer.store.gradients.pointer,
                                workspace: layer.workspace.pointer)
            assertClose(torchTensor(layer.conv.weight, in: layer.store.gradients), expected.weight, tolerance: 1e-4,
                        "conv \(label) dW (no dx)")

            // (b) Central differences, h = 1e-2 in float (the loss is linear in each entry).
            let h: Float = 1e-2
            func loss() -> Double { dot(layer.forward(input), r) }
            var numeric: [Double] = [], analytic: [Double] = []
            for i in sampleIndices(count: x.count, samples: 6, seed: 1 + UInt64(index)) {
                let saved = input[i]
                input[i] = saved + h; let plus = loss()
                input[i] = saved - h; let minus = loss()
                input[i] = saved
                numeric.append((plus - minus) / Double(2 * h))
                analytic.append(Double(inputGradient[i]))
            }
            let values = layer.store.values, gradients = layer.store.gradients
            for slot in [layer.conv.weight, layer.conv.bias] {
                for j in sampleIndices(count: slot.count, samples: 6, seed: 2 + UInt64(index)) {
                    let i = slot.offset + j
                    let saved = values[i]
                    values[i] = saved + h; let plus = loss()
                    values[i] = saved - h; let minus = loss()
                    values[i] = saved
                    numeric.append((plus - minus) / Double(2 * h))
                    analytic.append(Double(gradients[i]))
                }
            }
            assertClose(analytic, numeric, tolerance: 1e-2, "conv \(label) gradients vs finite differences")
            withExtendedLifetime((rBuffer, input, inputGradient)) {}
        }
    }

    /// Test 4: `<im2col(x), c> == <x, col2im(c)>`; im2col also against a naive gather (zeros in the
    /// padding), and col2im adds into what the image already holds.
    func testIm2colAndCol2imAreAdjoint() {
        let (n, h, w, c) = (Cases.batch, Cases.height, Cases.width, Cases.channels)
        for (index, window) in Cases.windows.enumerated() {
            let label = Cases.label(window)
            let (oh, ow) = window.convolutionOutput(height: h, width: w)
            let rowLength = window.area * c
            let columnCount = n * oh * ow * rowLength
            let (xFloats, x) = Cases.input(seed: 700 + UInt64(index))
            let image = makeBuffer(xFloats)
            let columns = makeBuffer(count: columnCount, filledWith: .nan)
            im2col(columns: columns.pointer, image: image.pointer, batch: n, height: h, width: w, channels: c, window: window)

            var gathered = [Double](repeating: 0, count: columnCount)
            for b in 0..<n { for oy in 0..<oh { for ox in 0..<ow { for ky in 0..<window.kernelHeight {
                for kx in 0..<window.kernelWidth { for ch in 0..<c {
                    let iy = oy * window.strideHeight - window.paddingHeight + ky
                    let ix = ox * window.strideWidth - window.paddingWidth + kx
                    let row = (b * oh + oy) * ow + ox
                    let column = (ky * window.kernelWidth + kx) * c + ch
                    gathered[row * rowLength + column] = (iy < 0 || iy >= h || ix < 0 || ix >= w) ? 0 : x[b, iy, ix, ch]
                } }
            } } } }
            assertClose(columns.array, gathered, tolerance: 0, "im2col \(label) vs naive gather")

            let cFloats = randomFloats(columnCount, seed: 800 + UInt64(index))
            let cBuffer = makeBuffer(cFloats)
            let back = FloatBuffer(count: image.count)
            col2im(image: back.pointer, columns: cBuffer.pointer, batch: n, height: h, width: w, channels: c, window: window)
            let lhs = dot(columns, cFloats.map(Double.init))
            let rhs = dot(back, xFloats.map(Double.init))
            assertClose(lhs, rhs, tolerance: 1e-5, "<im2col(x), c> vs <x, col2im(c)> \(label)")

            // col2im accumulates: starting from x gives x + col2im(c).
            let accumulated = makeBuffer(xFloats)
            col2im(image: accumulated.pointer, columns: cBuffer.pointer, batch: n, height: h, width: w, channels: c, window: window)
            assertClose(accumulated.array, zip(xFloats, back.array).map { Double($0) + Double($1) }, tolerance: 1e-6,
                        "col2im \(label) accumulates")
            withExtendedLifetime((image, columns, cBuffer, back, accumulated)) {}
        }
    }

    /// "Same" stride-1 convolutions that narrow the channels (as the residual blocks' 3x3 does)
    /// compute dx by lowering dy and multiplying by the flipped kernel; the gradients equal the
    /// naive backward in double (a stride-2 window, which scatters back with col2im, beside them).
    func testNarrowingSameConvolutionBackward() {
        let (batch, height, width, inputs, outputs) = (2, 7, 5, 6, 2)
        for (index, window) in [Window(kernel: 3, stride: 1, padding: 1),
                                Window(kernelHeight: 3, kernelWidth: 5, strideHeight: 1, strideWidth: 1,
                                       paddingHeight: 1, paddingWidth: 2),
                                Window(kernel: 4, stride: 2, padding: 1)].enumerated() {
            let store = ParameterStore()
            let conv = Conv2d(name: "conv", inputChannels: inputs, outputChannels: outputs, window: window, parameters: store)
            store.allocate()
            store.initialize(seed: 900 + UInt64(index))
            XCTAssertEqual(conv.usesFlippedInputGradient(batch: batch, height: height, width: width),
                           window.strideHeight == 1 && !conv.usesWinograd)
            let x = randomFloats(batch * height * width * inputs, seed: 910 + UInt64(index))
            let input = makeBuffer(x)
            let tensor = Tensor4(batch: batch, height: height, width: width, channels: inputs, values: x.map(Double.init))
            let (oh, ow) = conv.outputSize(height: height, width: width)
            let r = randomFloats(batch * oh * ow * outputs, seed: 920 + UInt64(index))
            let dy = makeBuffer(r)
            let expected = naiveConv2dBackward(Tensor4(batch: batch, height: oh, width: ow, channels: outputs, values: r.map(Double.init)),
                                               input: tensor, weight: torchTensor(conv.weight, in: store.values), window: window)
            let workspace = FloatBuffer(count: conv.workspaceCount(batch: batch, height: height, width: width))
            let output = FloatBuffer(count: batch * oh * ow * outputs)
            let label = "\(window)"
            conv.forward(output: output.pointer, input: input.pointer, batch: batch, height: height, width: width,
                         parameters: store.values.pointer, workspace: workspace.pointer)
            workspace.pointer.update(repeating: .nan, count: workspace.count)  // backward must not rely on it
            store.zeroGradients()
            let dx = makeBuffer(count: x.count, filledWith: 7)
            conv.backward(inputGradient: dx.pointer, outputGradient: dy.pointer, input: input.pointer,
                          batch: batch, height: height, width: width, parameters: store.values.pointer,
                          gradients: store.gradients.pointer, workspace: workspace.pointer)
            assertClose(dx.array, expected.input.values, tolerance: 1e-4, "\(label): dx")
            assertClose(torchTensor(conv.weight, in: store.gradients), expected.weight, tolerance: 1e-4, "\(label): dW")
            assertClose(torchTensor(conv.bias, in: store.gradients), expected.bias, tolerance: 1e-4, "\(label): db")
            withExtendedLifetime((input, dy, output)) {}
        }
    }

    /// Test 6: the Winograd paths, F(4x4, 3x3) for 3x3 stride 1 padding 1 and F(2x2, 2x2) for 4x4
    /// stride 2 padding 1, with channel counts that fill whole 16-float vectors and leave tails, on
    /// odd and even sizes: forward with bias and ReLU, and dx, dW (accumulated onto non-zero
    /// gradients) and db against the naive double ops. Three image channels keep im2col for 4x4.
    /// The two largest cases have more tiles than `WinogradProducts` takes in one block.
    func testWinogradMatchesNaiveWithFullVectorsAndTails() {
        let same = Window(kernel: 3, stride: 1, padding: 1), strided = Window(kernel: 4, stride: 2, padding: 1)
        let cases = [(window: same, batch: 2, height: 6, width: 9, inputs: 37, outputs: 20),
                     (window: same, batch: 1, height: 5, width: 4, inputs: 16, outputs: 33),
                     (window: same, batch: 3, height: 8, width: 8, inputs: 5, outputs: 64),
                     (window: same, batch: 1, height: 1, width: 3, inputs: 17, outputs: 2),
                     (window: same, batch: 3, height: 29, width: 21, inputs: 16, outputs: 19),
                     (window: strided, batch: 2, height: 8, width: 10, inputs: 20, outputs: 37),
                     (window: strided, batch: 1, height: 7, width: 5, inputs: 33, outputs: 16),
                     (window: strided, batch: 2, height: 2, width: 6, inputs: 16, outputs: 18),
                     (window: strided, batch: 1, height: 9, width: 6, inputs: 3, outputs: 64),
                     (window: strided, batch: 5, height: 48, width: 38, inputs: 16, outputs: 20)]
        for (index, c) in cases.enumerated() {
            let label = "\(c)"
            let store = ParameterStore()
            let conv = Conv2d(name: "conv", inputChannels: c.inputs, outputChannels: c.outputs, window: c.window, parameters: store)
            store.allocate()
            store.initialize(seed: 1000 + UInt64(index))
            XCTAssertEqual(conv.usesWinograd || conv.usesStridedWinograd, c.inputs >= 16 || c.window == same, label)
            assertMatchesNaive(conv, store: store, batch: c.batch, height: c.height, width: c.width, inputs: c.inputs,
                               seed: 1000 + UInt64(index), label: label,
                               naiveForward: { naiveConv2d($0, weight: $1, bias: $2, outputChannels: c.outputs, window: c.window) },
                               naiveBackward: { naiveConv2dBackward($0, input: $1, weight: $2, window: c.window) })
        }
    }

    /// The Winograd products' 6 x 32 register block (used where the build has AVX-512's 32 vector
    /// registers) gives the two 6 x 16 blocks' results bit for bit: the same fused multiply-adds in
    /// the same order for every output entry, with and without accumulation.
    func testWideProductBlockEqualsTwoNarrowBlocks() {
        var generator = SplitMix64(seed: 77)
        let depth = 37, aRow = 41, ldc = 40
        let a = (0..<(depth + 5 * aRow)).map { _ in Float.random(in: -1...1, using: &generator) }
        let b = (0..<(2 * depth * 16)).map { _ in Float.random(in: -1...1, using: &generator) }
        let start = (0..<(6 * ldc)).map { _ in Float.random(in: -1...1, using: &generator) }
        for accumulate in [false, true] {
            var wide = start, narrow = start
            a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { b in
                let b2 = b.baseAddress! + depth * 16
                wide.withUnsafeMutableBufferPointer {
                    WinogradProducts.wideBlock(depth: depth, a: a.baseAddress!, aStep: 1, aRow: aRow, b: b.baseAddress!, b2: b2,
                                               bStep: 16, c: $0.baseAddress! + 3, ldc: ldc, accumulate: accumulate)
                }
                narrow.withUnsafeMutableBufferPointer {
                    for (panel, offset) in [(b.baseAddress!, 3), (b2, 19)] {
                        WinogradProducts.block(rows: 6, lanes: 16, depth: depth, a: a.baseAddress!, aStep: 1, aRow: aRow,
                                               b: panel, bStep: 16, c: $0.baseAddress! + offset, ldc: ldc, accumulate: accumulate)
                    }
                }
            } }
            XCTAssertEqual(wide, narrow, "accumulate \(accumulate), wide registers \(WinogradProducts.wide)")
            XCTAssertNotEqual(wide, start)
        }
    }
}
