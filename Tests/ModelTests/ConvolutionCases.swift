@testable import Model
import TestSupport

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
