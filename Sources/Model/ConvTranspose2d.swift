/// A 2-D transposed convolution over NHWC activations: `[N, H, W, inputChannels]` ->
/// `[N, Ho, Wo, outputChannels]` with `Ho = (H - 1)*strideH - 2*padH + kh` (PyTorch's
/// `ConvTranspose2d` without output padding or dilation).
///
/// Weight stored `[in, kh, kw, out]` (checkpoints use PyTorch's `[in, out, kh, kw]`), bias `[out]`.
/// The forward pass is one GEMM `input[N*H*W, in] * W[in, kh*kw*out]` followed by `col2im`, so
/// no zero-stuffed input is ever built; the backward pass lowers `dL/doutput` with `im2col`.
///
/// With `resize` the layer is instead nearest-neighbour upsampling by 2 followed by a 3x3
/// convolution with padding 1 (PyTorch's `nn.Upsample(scale_factor=2)` then
/// `nn.Conv2d(in, out, 3, padding=1)`), whose weight it stores as `Conv2d` does (`[out, 3, 3, in]`;
/// checkpoints `[out, in, 3, 3]`). That composition IS a 4x4 transposed convolution with stride 2
/// and padding 1 whose kernel is tied to the 3x3 one: along each axis, output `2i + k - 1` reads
/// input `i` through the 3x3 taps `t` with `floor((k + t - 2) / 2) = 0`, so
/// `K[0] = W[2]`, `K[1] = W[1] + W[2]`, `K[2] = W[0] + W[1]`, `K[3] = W[0]` (and the product of
/// two such sums in 2-D). The layer builds that kernel in its workspace and runs the transposed
/// convolution's fast paths with it; the kernel's gradient folds back onto the 3x3 taps the same
/// way. The cost is the transposed convolution's, 4/9 of an upsampled 3x3 convolution's.
public struct ConvTranspose2d {
    public let inputChannels: Int
    public let outputChannels: Int
    public let window: Window
    public let weight: ParameterSlot
    public let bias: ParameterSlot
    /// Nearest-neighbour upsampling and a 3x3 convolution (above); `window` is then 4x4, stride 2, padding 1.
    public let resize: Bool

    init(name: String, inputChannels: Int, outputChannels: Int, window: Window, resize: Bool = false,
         parameters: ParameterStore) {
        precondition(!resize || window == Window(kernel: 4, stride: 2, padding: 1), "a resize layer runs as a 4x4 stride-2 transposed convolution")
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.window = window
        self.resize = resize
        if resize {
            // PyTorch's Conv2d: fan_in = in * 3 * 3.
            let bound = 1 / Float(inputChannels * 9).squareRoot()
            weight = parameters.add(
                name: "\(name)/weight", shape: [outputChannels, inputChannels, 3, 3],
                layout: .convolution(output: outputChannels, input: inputChannels, kernelHeight: 3, kernelWidth: 3),
                uniformBound: bound)
            bias = parameters.add(name: "\(name)/bias", shape: [outputChannels], uniformBound: bound)
            return
        }
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

    /// Floats of the 4x4 kernel `[in, 4, 4, out]` a resize layer builds (and of its gradient).
    var tiedKernelCount: Int { resize ? inputChannels * 16 * outputChannels : 0 }

    /// The 3x3 taps (along one axis) that the 4x4 kernel's tap `k` sums.
    static let tiedTaps: [[Int]] = [[2], [1, 2], [0, 1], [0]]

    /// Where a resize layer's tied kernel lies in `workspace`: after what the passes use; its
    /// gradient follows it.
    func tiedKernel(_ workspace: UnsafeMutablePointer<Float>, batch: Int, height: Int, width: Int) -> UnsafeMutablePointer<Float> {
        workspace + passWorkspaceCount(batch: batch, height: height, width: width)
    }

    /// Writes the 4x4 kernel `[in, 4, 4, out]` tied to the 3x3 weight `[out, 3, 3, in]`.
    func buildTiedKernel(_ kernel: UnsafeMutablePointer<Float>, from weight: UnsafePointer<Float>) {
        let (inputs, outputs) = (inputChannels, outputChannels)
        for ky in 0..<4 {
            for kx in 0..<4 {
                for i in 0..<inputs {
                    let row = kernel + ((i * 4 + ky) * 4 + kx) * outputs
                    for o in 0..<outputs {
                        var sum: Float = 0
                        for ty in Self.tiedTaps[ky] {
                            for tx in Self.tiedTaps[kx] { sum += weight[((o * 3 + ty) * 3 + tx) * inputs + i] }
                        }
                        row[o] = sum
                    }
                }
            }
        }
    }

    /// Adds the 4x4 kernel's gradient `[in, 4, 4, out]` onto the 3x3 weight's `[out, 3, 3, in]`.
    func foldTiedKernelGradient(_ kernelGradient: UnsafePointer<Float>, into gradient: UnsafeMutablePointer<Float>) {
        let (inputs, outputs) = (inputChannels, outputChannels)
        for ky in 0..<4 {
            for kx in 0..<4 {
                for ty in Self.tiedTaps[ky] {
                    for tx in Self.tiedTaps[kx] {
                        for o in 0..<outputs {
                            let row = gradient + ((o * 3 + ty) * 3 + tx) * inputs
                            for i in 0..<inputs { row[i] += kernelGradient[((i * 4 + ky) * 4 + kx) * outputs + o] }
                        }
                    }
                }
            }
        }
    }

    public var name: String { String(weight.name.dropLast("/weight".count)) }

    /// Columns of one expanded input row: `kh * kw * outputChannels`.
    var expansion: Int { window.area * outputChannels }

    public func outputSize(height: Int, width: Int) -> (height: Int, width: Int) {
        window.transposedOutput(height: height, width: width)
    }

    public func workspaceCount(batch: Int, height: Int, width: Int) -> Int {
        passWorkspaceCount(batch: batch, height: height, width: width) + 2 * tiedKernelCount
    }

    /// What the passes themselves use, from the workspace's start; a resize layer's kernel and its
    /// gradient follow.
    func passWorkspaceCount(batch: Int, height: Int, width: Int) -> Int {
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
        var kernel = parameters + weight.offset
        if resize {
            let tied = tiedKernel(workspace, batch: batch, height: height, width: width)
            buildTiedKernel(tied, from: kernel)
            kernel = UnsafePointer(tied)
        }
        if usesStridedWinograd {
            StridedWinograd.inputGradient(
                output, outputGradient: input, weight: kernel,
                batch: batch, height: oh, width: ow, outputHeight: height, outputWidth: width,
                inputChannels: outputChannels, outputChannels: inputChannels, workspace: workspace)
            addBias(output, bias: parameters + bias.offset, rows: batch * oh * ow, channels: outputChannels, relu: relu)
            return
        }
        gemm(transposeA: false, transposeB: false, m: rows, n: expansion, k: inputChannels,
             a: input, lda: inputChannels, b: kernel, ldb: expansion,
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
        accumulateBiasGradient(gradients + bias.offset, dy: outputGradient, rows: batch * oh * ow, channels: outputChannels)
        var kernel = parameters + weight.offset, kernelGradient = gradients + weight.offset
        if resize {
            // dK of the tied kernel, folded onto the 3x3 taps below.
            let tied = tiedKernel(workspace, batch: batch, height: height, width: width)
            buildTiedKernel(tied, from: kernel)
            kernel = UnsafePointer(tied)
            kernelGradient = tied + tiedKernelCount
            kernelGradient.update(repeating: 0, count: tiedKernelCount)
        }
        let rows = batch * height * width
        if usesStridedWinograd {
            // dW and dx of the adjoint convolution from the output [Ho, Wo, out] to the input.
            StridedWinograd.transposedBackward(
                weightGradient: kernelGradient, output: inputGradient, input: outputGradient,
                outputGradient: input, weight: kernel, batch: batch, height: oh, width: ow,
                outputHeight: height, outputWidth: width, inputChannels: outputChannels, outputChannels: inputChannels,
                workspace: workspace)
        } else {
            im2col(columns: workspace, image: outputGradient, batch: batch, height: oh, width: ow,
                   channels: outputChannels, window: window)
            // dW[in, E] += x^T[in, rows] * dColumns[rows, E]
            gemm(transposeA: true, transposeB: false, m: inputChannels, n: expansion, k: rows,
                 a: input, lda: inputChannels, b: workspace, ldb: expansion,
                 beta: 1, c: kernelGradient, ldc: expansion)
            if let inputGradient {
                // dx[rows, in] = dColumns[rows, E] * W^T[E, in]
                gemm(transposeA: false, transposeB: true, m: rows, n: inputChannels, k: expansion,
                     a: workspace, lda: expansion, b: kernel, ldb: expansion,
                     beta: 0, c: inputGradient, ldc: inputChannels)
            }
        }
        if resize { foldTiedKernelGradient(kernelGradient, into: gradients + weight.offset) }
    }

    public func forwardMultiplyAdds(batch: Int, height: Int, width: Int) -> Int {
        batch * height * width * inputChannels * expansion
    }
}
