/// A 2-D transposed convolution over NHWC activations: `[N, H, W, inputChannels]` ->
/// `[N, Ho, Wo, outputChannels]` with `Ho = (H - 1)*strideH - 2*padH + kh` (PyTorch's
/// `ConvTranspose2d` without output padding or dilation).
///
/// Weight stored `[in, kh, kw, out]` (checkpoints use PyTorch's `[in, out, kh, kw]`), bias `[out]`.
/// The forward pass is one GEMM `input[N*H*W, in] * W[in, kh*kw*out]` followed by `col2im`, so
/// no zero-stuffed input is ever built; the backward pass lowers `dL/doutput` with `im2col`.
public struct ConvTranspose2d {
    public let inputChannels: Int
    public let outputChannels: Int
    public let window: Window
    public let weight: ParameterSlot
    public let bias: ParameterSlot

    init(name: String, inputChannels: Int, outputChannels: Int, window: Window, parameters: ParameterStore) {
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.window = window
        // PyTorch computes fan_in from the weight's second dimension: out * kh * kw.
        let fanIn = outputChannels * window.area
        let bound = 1 / Float(fanIn).squareRoot()
        weight = parameters.add(
            name: "\(name)/weight", shape: [inputChannels, outputChannels, window.kernelHeight, window.kernelWidth],
            layout: .transposedConvolution(input: inputChannels, output: outputChannels,
                                           kernelHeight: window.kernelHeight, kernelWidth: window.kernelWidth),
            uniformBound: bound)
        bias = parameters.add(name: "\(name)/bias", shape: [outputChannels], uniformBound: bound)
    }

    public var name: String { String(weight.name.dropLast("/weight".count)) }

    /// Columns of one expanded input row: `kh * kw * outputChannels`.
    var expansion: Int { window.area * outputChannels }

    public func outputSize(height: Int, width: Int) -> (height: Int, width: Int) {
        window.transposedOutput(height: height, width: width)
    }

    public func workspaceCount(batch: Int, height: Int, width: Int) -> Int {
        if usesStridedWinograd {
            // The adjoint convolution maps the output [Ho, Wo, out] to the input [H, W, in].
            return StridedWinograd.layout(batch: batch, outputHeight: height, outputWidth: width,
                                          inputChannels: outputChannels, outputChannels: inputChannels).count
        }
        return batch * height * width * expansion
    }

    /// A 4x4 window with stride 2 and padding 1: this layer is the adjoint of a strided
    /// convolution from its output to its input with the same weight (`[in, 4, 4, out]` is that
    /// convolution's `[out, kh, kw, in]`), which runs as Winograd F(4x4, 2x2) (`StridedWinograd`):
    /// the forward pass is that convolution's input gradient, the input gradient its forward pass.
    /// When `StridedWinograd.applies`, as for `Conv2d`.
    var usesStridedWinograd: Bool {
        StridedWinograd.applies(to: window, channels: outputChannels, inputChannels)
    }

    /// `output` `[N, Ho, Wo, out]` = convT(`input` `[N, H, W, in]`) + bias, then ReLU if asked.
    public func forward(
        output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, relu: Bool = false,
        parameters: UnsafePointer<Float>, workspace: UnsafeMutablePointer<Float>
    ) {
        let (oh, ow) = outputSize(height: height, width: width)
        let rows = batch * height * width
        if usesStridedWinograd {
            StridedWinograd.inputGradient(
                output, outputGradient: input, weight: parameters + weight.offset,
                batch: batch, height: oh, width: ow, outputHeight: height, outputWidth: width,
                inputChannels: outputChannels, outputChannels: inputChannels, workspace: workspace)
            addBias(output, bias: parameters + bias.offset, rows: batch * oh * ow, channels: outputChannels, relu: relu)
            return
        }
        gemm(transposeA: false, transposeB: false, m: rows, n: expansion, k: inputChannels,
             a: input, lda: inputChannels, b: parameters + weight.offset, ldb: expansion,
             beta: 0, c: workspace, ldc: expansion)
        output.update(repeating: 0, count: batch * oh * ow * outputChannels)
        // The output is the "image" whose convolution windows are the input positions.
        col2im(image: output, columns: workspace, batch: batch, height: oh, width: ow,
               channels: outputChannels, window: window)
        addBias(output, bias: parameters + bias.offset, rows: batch * oh * ow, channels: outputChannels, relu: relu)
    }

    /// Accumulates weight and bias gradients; WRITES `dL/dinput` when `inputGradient` is given.
    public func backward(
        inputGradient: UnsafeMutablePointer<Float>?, outputGradient: UnsafePointer<Float>,
        input: UnsafePointer<Float>, batch: Int, height: Int, width: Int,
        parameters: UnsafePointer<Float>, gradients: UnsafeMutablePointer<Float>,
        workspace: UnsafeMutablePointer<Float>
    ) {
        let (oh, ow) = outputSize(height: height, width: width)
        let rows = batch * height * width
        accumulateBiasGradient(gradients + bias.offset, dy: outputGradient, rows: batch * oh * ow, channels: outputChannels)
        if usesStridedWinograd {
            // dW and dx of the adjoint convolution from the output [Ho, Wo, out] to the input.
            StridedWinograd.transposedBackward(
                weightGradient: gradients + weight.offset, output: inputGradient, input: outputGradient,
                outputGradient: input, weight: parameters + weight.offset, batch: batch, height: oh, width: ow,
                outputHeight: height, outputWidth: width, inputChannels: outputChannels, outputChannels: inputChannels,
                workspace: workspace)
            return
        }
        im2col(columns: workspace, image: outputGradient, batch: batch, height: oh, width: ow,
               channels: outputChannels, window: window)
        // dW[in, E] += x^T[in, rows] * dColumns[rows, E]
        gemm(transposeA: true, transposeB: false, m: inputChannels, n: expansion, k: rows,
             a: input, lda: inputChannels, b: workspace, ldb: expansion,
             beta: 1, c: gradients + weight.offset, ldc: expansion)
        guard let inputGradient else { return }
        // dx[rows, in] = dColumns[rows, E] * W^T[E, in]
        gemm(transposeA: false, transposeB: true, m: rows, n: inputChannels, k: expansion,
             a: workspace, lda: expansion, b: parameters + weight.offset, ldb: expansion,
             beta: 0, c: inputGradient, ldc: inputChannels)
    }

    public func forwardMultiplyAdds(batch: Int, height: Int, width: Int) -> Int {
        batch * height * width * inputChannels * expansion
    }
}
