@testable import Model
import TestSupport
import XCTest

/// The odd, non-square geometry shared by the convolution tests: N=2, C=3, H=7, W=5, 4 outputs.
enum ConvolutionCases {
    static let batch = 2, channels = 3, height = 7, width = 5, outputs = 4

    /// Kernels 3x3, 4x4, 1x1 and a rectangular 3x2, strides 1 and 2, paddings 0 and 1, plus two
    /// windows whose stride and padding differ between the axes.
    static let windows: [Window] = {
        var result: [Window] = []
        for (kh, kw) in [(3, 3), (4, 4), (1, 1), (3, 2)] {
            for stride in [1, 2] {
                for padding in [0, 1] {
                    result.append(Window(kernelHeight: kh, kernelWidth: kw, strideHeight: stride, strideWidth: stride,
                                         paddingHeight: padding, paddingWidth: padding))
                }
            }
        }
        result.append(Window(kernelHeight: 3, kernelWidth: 2, strideHeight: 2, strideWidth: 1, paddingHeight: 0, paddingWidth: 1))
        result.append(Window(kernelHeight: 2, kernelWidth: 3, strideHeight: 1, strideWidth: 2, paddingHeight: 1, paddingWidth: 0))
        return result
    }()

    static func label(_ w: Window) -> String {
        "k\(w.kernelHeight)x\(w.kernelWidth) s\(w.strideHeight)x\(w.strideWidth) p\(w.paddingHeight)x\(w.paddingWidth)"
    }

    static func input(seed: UInt64) -> (floats: [Float], tensor: Tensor4) {
        let values = randomFloats(batch * height * width * channels, seed: seed)
        return (values, Tensor4(batch: batch, height: height, width: width, channels: channels, values: values.map(Double.init)))
    }
}

/// Parameter-store plumbing for layer tests.
extension ParameterStore {
    /// Sets every gradient to a random value, so that a test can check the backward pass adds to it.
    func fillGradients(seed: UInt64) -> [Float] {
        let values = randomFloats(count, seed: seed)
        for i in 0..<count { gradients[i] = values[i] }
        return values
    }

    /// `slot`'s gradient in PyTorch's layout minus what `fillGradients` put there.
    func accumulatedGradient(_ slot: ParameterSlot, since before: [Float]) -> [Double] {
        let start = FloatBuffer(count: count)
        for i in 0..<count { start[i] = before[i] }
        let now = torchTensor(slot, in: gradients), then = torchTensor(slot, in: start)
        return zip(now, then).map { $0 - $1 }
    }
}

/// What `Conv2d` and `ConvTranspose2d` have in common, for checks that apply to both.
protocol ConvolutionLayer {
    var weight: ParameterSlot { get }
    var bias: ParameterSlot { get }
    func workspaceCount(batch: Int, height: Int, width: Int) -> Int
    func forward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, batch: Int, height: Int, width: Int,
                 relu: Bool, parameters: UnsafePointer<Float>, workspace: UnsafeMutablePointer<Float>)
    func backward(inputGradient: UnsafeMutablePointer<Float>?, outputGradient: UnsafePointer<Float>,
                  input: UnsafePointer<Float>, batch: Int, height: Int, width: Int,
                  parameters: UnsafePointer<Float>, gradients: UnsafeMutablePointer<Float>,
                  workspace: UnsafeMutablePointer<Float>)
}

extension Conv2d: ConvolutionLayer {}
extension ConvTranspose2d: ConvolutionLayer {}

/// `layer`'s forward pass with bias and ReLU, then dx, dW (accumulated onto non-zero gradients)
/// and db, on a random `batch x height x width x inputs` input, against the naive double ops
/// (`naiveForward(x, weight, bias)`, `naiveBackward(dy, x, weight)`), within `tolerance` (dW relative to its largest entry). The workspace
/// starts as NaN before each pass and every output as NaN: all must be written. Random values
/// are drawn from `seed + 10`, `seed + 20` and `seed + 30`.
func assertMatchesNaive(
    _ layer: some ConvolutionLayer, store: ParameterStore, batch: Int, height: Int, width: Int, inputs: Int,
    seed: UInt64, label: String, tolerance: Double = 1e-5,
    naiveForward: (Tensor4, [Double], [Double]) -> Tensor4,
    naiveBackward: (Tensor4, Tensor4, [Double]) -> ConvolutionGradients,
    file: StaticString = #filePath, line: UInt = #line
) {
    let x = randomFloats(batch * height * width * inputs, seed: seed + 10)
    let tensor = Tensor4(batch: batch, height: height, width: width, channels: inputs, values: x.map(Double.init))
    let weight = torchTensor(layer.weight, in: store.values), bias = torchTensor(layer.bias, in: store.values)
    let expected = naiveForward(tensor, weight, bias)
    let input = makeBuffer(x)
    let workspace = makeBuffer(count: layer.workspaceCount(batch: batch, height: height, width: width), filledWith: .nan)
    let output = makeBuffer(count: expected.values.count, filledWith: .nan)
    layer.forward(output: output.pointer, input: input.pointer, batch: batch, height: height, width: width,
                  relu: true, parameters: store.values.pointer, workspace: workspace.pointer)
    assertClose(output.array, expected.values.map { max($0, 0) }, tolerance: tolerance, "\(label) forward+relu",
                file: file, line: line)

    let r = randomFloats(expected.values.count, seed: seed + 20)
    let dy = makeBuffer(r)
    let naive = naiveBackward(Tensor4(batch: batch, height: expected.height, width: expected.width,
                                      channels: expected.channels, values: r.map(Double.init)), tensor, weight)
    let before = store.fillGradients(seed: seed + 30)
    workspace.pointer.update(repeating: .nan, count: workspace.count)
    let dx = makeBuffer(count: x.count, filledWith: .nan)
    layer.backward(inputGradient: dx.pointer, outputGradient: dy.pointer, input: input.pointer,
                   batch: batch, height: height, width: width, parameters: store.values.pointer,
                   gradients: store.gradients.pointer, workspace: workspace.pointer)
    assertClose(dx.array, naive.input.values, tolerance: tolerance, "\(label) dx", file: file, line: line)
    // dW relative to its largest entry: each entry is a sum over all pixels, and Winograd's
    // rounding (F(4x4, 3x3) sums products of transforms with entries up to 8 and down to 1/24)
    // follows the size of those sums, so a small entry among large ones carries their absolute error.
    assertClose(store.accumulatedGradient(layer.weight, since: before), naive.weight, tolerance: tolerance,
                floor: max(1, largestMagnitude(naive.weight)), "\(label) dW", file: file, line: line)
    assertClose(store.accumulatedGradient(layer.bias, since: before), naive.bias, tolerance: tolerance, "\(label) db",
                file: file, line: line)
    withExtendedLifetime((input, dy, output, dx, workspace)) {}
}
