/// A 2-D convolution over NHWC activations: `[N, H, W, inputChannels]` ->
/// `[N, Ho, Wo, outputChannels]` with `Ho = (H + 2*padH - kh) / strideH + 1`.
///
/// Weight stored `[out, kh, kw, in]` (checkpoints use PyTorch's `[out, in, kh, kw]`), bias `[out]`.
/// The forward pass lowers the whole batch with `im2col` into a shared workspace and runs one
/// GEMM; a 1x1 convolution skips `im2col`; a 3x3 stride-1 padding-1 convolution runs as Winograd
/// F(4x4, 3x3) (`Winograd`) and a 4x4 stride-2 padding-1 one as F(4x4, 2x2) over pixel pairs
/// (`StridedWinograd`), forward and backward.
public struct Conv2d {
    public let inputChannels: Int
    public let outputChannels: Int
    public let window: Window
    public let weight: ParameterSlot
    public let bias: ParameterSlot

    init(name: String, inputChannels: Int, outputChannels: Int, window: Window, parameters: ParameterStore) {
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.window = window
        let fanIn = inputChannels * window.area
        let bound = 1 / Float(fanIn).squareRoot()
        weight = parameters.add(
            name: "\(name)/weight", shape: [outputChannels, inputChannels, window.kernelHeight, window.kernelWidth],
            layout: .convolution(output: outputChannels, input: inputChannels,
                                 kernelHeight: window.kernelHeight, kernelWidth: window.kernelWidth),
            uniformBound: bound)
        bias = parameters.add(name: "\(name)/bias", shape: [outputChannels], uniformBound: bound)
    }

    public var name: String { String(weight.name.dropLast("/weight".count)) }

    /// Columns of one lowered input row: `kh * kw * inputChannels`.
    var reduction: Int { window.area * inputChannels }

    public func outputSize(height: Int, width: Int) -> (height: Int, width: Int) {
        window.convolutionOutput(height: height, width: width)
    }

    /// Workspace floats the passes need for a batch of `batch` inputs of `height x width`.
    public func workspaceCount(batch: Int, height: Int, width: Int) -> Int {
        if window.isPointwise { return 0 }
        if usesWinograd {
            return Winograd.layout(batch: batch, height: height, width: width,
                                   inputChannels: inputChannels, outputChannels: outputChannels).count
        }
        let (oh, ow) = outputSize(height: height, width: width)
        if usesStridedWinograd {
            return StridedWinograd.layout(batch: batch, outputHeight: oh, outputWidth: ow,
                                          inputChannels: inputChannels, outputChannels: outputChannels).count
        }
        return batch * oh * ow * reduction
    }

    /// Runs as Winograd F(4x4, 2x2) over pixel pairs (`StridedWinograd.applies`).
    var usesStridedWinograd: Bool {
        StridedWinograd.applies(to: window, channels: inputChannels, outputChannels)
    }

    /// Runs as Winograd F(4x4, 3x3) (`Winograd.applies`).
    var usesWinograd: Bool {
        Winograd.applies(to: window)
    }

    /// `output` `[N, Ho, Wo, out]` = conv(`input` `[N, H, W, in]`) + bias, then ReLU if asked.
    public func forward(
        output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
        batch: Int, height: Int, width: Int, relu: Bool = false,
        parameters: UnsafePointer<Float>, workspace: UnsafeMutablePointer<Float>
    ) {
        let (oh, ow) = outputSize(height: height, width: width)
        let rows = batch * oh * ow
        if usesWinograd {
            Winograd.convolve(output: output, input: input, weight: parameters + weight.offset, batch: batch, height: height, width: width,
                              inputChannels: inputChannels, outputChannels: outputChannels, workspace: workspace)
            addBias(output, bias: parameters + bias.offset, rows: rows, channels: outputChannels, relu: relu)
            return
        }
        if usesStridedWinograd {
            StridedWinograd.convolve(output: output, input: input, weight: parameters + weight.offset,
                                     batch: batch, height: height, width: width, outputHeight: oh, outputWidth: ow,
                                     inputChannels: inputChannels, outputChannels: outputChannels, workspace: workspace)
            addBias(output, bias: parameters + bias.offset, rows: rows, channels: outputChannels, relu: relu)
            return
        }
        let lowered: UnsafePointer<Float>
        if window.isPointwise {
            lowered = input
        } else {
            im2col(columns: workspace, image: input, batch: batch, height: height, width: width,
                   channels: inputChannels, window: window)
            lowered = UnsafePointer(workspace)
        }
        gemm(transposeA: false, transposeB: true, m: rows, n: outputChannels, k: reduction,
             a: lowered, lda: reduction, b: parameters + weight.offset, ldb: reduction,
             beta: 0, c: output, ldc: outputChannels)
        addBias(output, bias: parameters + bias.offset, rows: rows, channels: outputChannels, relu: relu)
    }

    /// Accumulates the weight and bias gradients into `gradients` and, when `inputGradient` is
    /// given, WRITES `dL/dinput` `[N, H, W, in]` there. `outputGradient` is `dL/doutput`.
    public func backward(
        inputGradient: UnsafeMutablePointer<Float>?, outputGradient: UnsafePointer<Float>,
        input: UnsafePointer<Float>, batch: Int, height: Int, width: Int,
        parameters: UnsafePointer<Float>, gradients: UnsafeMutablePointer<Float>,
        workspace: UnsafeMutablePointer<Float>
    ) {
        let (oh, ow) = outputSize(height: height, width: width)
        let rows = batch * oh * ow
        accumulateBiasGradient(gradients + bias.offset, dy: outputGradient, rows: rows, channels: outputChannels)
        if usesWinograd {
            Winograd.backward(
                weightGradient: gradients + weight.offset, inputGradient: inputGradient, input: input,
                outputGradient: outputGradient, weight: parameters + weight.offset, batch: batch, height: height, width: width,
                inputChannels: inputChannels, outputChannels: outputChannels, workspace: workspace)
            return
        }
        if usesStridedWinograd {
            StridedWinograd.backward(
                weightGradient: gradients + weight.offset, inputGradient: inputGradient, input: input,
                outputGradient: outputGradient, weight: parameters + weight.offset, batch: batch, height: height, width: width,
                outputHeight: oh, outputWidth: ow, inputChannels: inputChannels, outputChannels: outputChannels,
                workspace: workspace)
            return
        }
        let lowered: UnsafePointer<Float>
        if window.isPointwise {
            lowered = input
        } else {
            im2col(columns: workspace, image: input, batch: batch, height: height, width: width,
                   channels: inputChannels, window: window)
            lowered = UnsafePointer(workspace)
        }
        // dW[out, K] += dy^T[out, rows] * columns[rows, K]
        gemm(transposeA: true, transposeB: false, m: outputChannels, n: reduction, k: rows,
             a: outputGradient, lda: outputChannels, b: lowered, ldb: reduction,
             beta: 1, c: gradients + weight.offset, ldc: reduction)
        guard let inputGradient else { return }
        if window.isPointwise {
            // dx[rows, in] = dy[rows, out] * W[out, in]
            gemm(transposeA: false, transposeB: false, m: rows, n: inputChannels, k: outputChannels,
                 a: outputGradient, lda: outputChannels, b: parameters + weight.offset, ldb: reduction,
                 beta: 0, c: inputGradient, ldc: inputChannels)
        } else if usesFlippedInputGradient(batch: batch, height: height, width: width) {
            // A "same" stride-1 convolution narrowing the channels (the residual blocks' 3x3):
            // dx is the convolution of dy with the flipped, transposed kernel,
            // dx[rows, in] = im2col(dy)[rows, kh*kw*out] * Wf[kh*kw*out, in], which lowers the
            // narrow dy instead of scattering a [rows, kh*kw*in] matrix back with col2im.
            let flippedCount = window.area * outputChannels
            let flipped = workspace, loweredGradient = workspace + flippedCount * inputChannels
            let w = parameters + weight.offset
            for ky in 0..<window.kernelHeight {
                for kx in 0..<window.kernelWidth {
                    let tap = (window.kernelHeight - 1 - ky) * window.kernelWidth + (window.kernelWidth - 1 - kx)
                    for o in 0..<outputChannels {
                        (flipped + ((ky * window.kernelWidth + kx) * outputChannels + o) * inputChannels)
                            .update(from: w + (o * window.area + tap) * inputChannels, count: inputChannels)
                    }
                }
            }
            im2col(columns: loweredGradient, image: outputGradient, batch: batch, height: oh, width: ow,
                   channels: outputChannels, window: window)
            gemm(transposeA: false, transposeB: false, m: batch * height * width, n: inputChannels, k: flippedCount,
                 a: loweredGradient, lda: flippedCount, b: flipped, ldb: inputChannels,
                 beta: 0, c: inputGradient, ldc: inputChannels)
        } else {
            // dColumns[rows, K] = dy[rows, out] * W[out, K], then scatter back.
            gemm(transposeA: false, transposeB: false, m: rows, n: reduction, k: outputChannels,
                 a: outputGradient, lda: outputChannels, b: parameters + weight.offset, ldb: reduction,
                 beta: 0, c: workspace, ldc: reduction)
            inputGradient.update(repeating: 0, count: batch * height * width * inputChannels)
            col2im(image: inputGradient, columns: workspace, batch: batch, height: height, width: width,
                   channels: inputChannels, window: window)
        }
    }

    /// Whether `backward` computes `dL/dinput` by lowering `dy` (see there): only for a stride-1
    /// window whose padding keeps the size (`pad = (k - 1) / 2`, odd `k`), with fewer output
    /// than input channels, not run as Winograd, and when the flipped kernel and lowered `dy` fit in the workspace.
    func usesFlippedInputGradient(batch: Int, height: Int, width: Int) -> Bool {
        guard window.strideHeight == 1, window.strideWidth == 1,
              window.kernelHeight % 2 == 1, window.kernelWidth % 2 == 1,
              window.paddingHeight * 2 + 1 == window.kernelHeight, window.paddingWidth * 2 + 1 == window.kernelWidth,
              outputChannels < inputChannels, !usesWinograd else { return false }
        let needed = window.area * outputChannels * (inputChannels + batch * height * width)
        return needed <= workspaceCount(batch: batch, height: height, width: width)
    }

    /// Multiply-adds of one forward pass over `batch` images of `height x width`.
    public func forwardMultiplyAdds(batch: Int, height: Int, width: Int) -> Int {
        let (oh, ow) = outputSize(height: height, width: width)
        return batch * oh * ow * outputChannels * reduction
    }
}
