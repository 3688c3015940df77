/// The per-step figures of a forward pass, averaged over this rank's share of the batch.
public struct Losses: Equatable, Sendable {
    /// `mean((x_hat - x)^2)` in normalised space (whatever `ModelConfiguration.loss` and
    /// `lossWeighting` train).
    public var reconstruction: Double
    /// VQ-VAE: `mean((z - q)^2)`, before the commitment weight (0 for the other models).
    public var commitment: Double
    /// VAE: the KL divergence summed over the latent, divided by the pixel elements `N*H*W*C`,
    /// before `klWeight` (0 for the other models).
    public var kl: Double
    /// The loss that is minimised: the reconstruction term (the mean squared error, or with
    /// `--loss charbonnier` `mean(sqrt((x_hat - x)^2 + eps^2))`; with `--loss-weight damage` the
    /// mean over images of each image's mean times its weight, with `log` of `e log(1 + mean / e)`) + beta * commitment (+ the codebook loss with
    /// `--codebook grad`, which has the same value as the commitment term's mean), or
    /// reconstruction + klWeight * kl for the VAE, or the reconstruction alone for the autoencoder.
    public var total: Double

    public init(reconstruction: Double, commitment: Double, kl: Double = 0, total: Double) {
        self.reconstruction = reconstruction
        self.commitment = commitment
        self.kl = kl
        self.total = total
    }
}

/// The VQ-VAE of spec/model.md on NHWC images `[N, H, W, C]` in normalised space (`v/255 - 0.5`),
/// and its two siblings with the same encoder and decoder (`configuration.model`):
/// - `.vqvae`: `pre_quant` gives `z` `[N, h, w, D]`, the vector quantizer gives `q`;
/// - `.vae`: `pre_quant` gives mean and log-variance `[N, h, w, 2D]`, `q` is a reparameterised
///   sample (the mean in evaluation), with a KL term (`GaussianLatent`);
/// - `.ae`: the decoder reads `z` itself.
///
/// With `configuration.residual` the decoder's output is a correction added to the input,
/// `x_hat = x + dec`, and with `detailLayers` a stack of 3x3 layers at full resolution reads
/// `[x | dec]` per pixel and adds its own correction: `x_hat = x + dec + detail([x | dec])`. The
/// input passes through untouched wherever the corrections are zero; the detail layers give the
/// network a path for per-pixel detail that does not go through the latent.
///
/// With `configuration.skips` (a U-Net with additive skips) the transposed convolution `up{i}`
/// reads `dec_i + w * enc_i` instead of `dec_i`: `enc_i` is the encoder's activation at the same
/// resolution and width (`relu(down{D-1-i})`), `w` the image's skip weight (drawn per training image
/// from the configuration's range, `fidelity` otherwise). Detail then reaches the decoder without
/// passing the latent or the codes; `w = 0` decodes from the latent alone.
///
/// With `configuration.maskChannel` (mask-aware inpainting) every pass also takes a mask
/// `m` `[N, H, W]` (1 = missing, 0 = known; values in between blend): the network reads
/// `[x' | m]`, the image with its missing pixels blanked (`x' = x (1 - m)`, or with
/// `holeFill` `.smooth` or `.plate` filled by `SmoothFill`) and the mask as one more channel (residual models
/// add their correction to `x'`), and the output is
/// `m * y + (1 - m) * x` with `y` the network's: known pixels come back as they went in.
///
/// All trained parameters live in `parameters` (one flat buffer, gradients beside it). Every
/// activation, gradient and workspace buffer is allocated once for `maxBatch` images; a training
/// step allocates nothing.
public final class VQVAE {
    public let configuration: ModelConfiguration
    public let parameters = ParameterStore()
    /// The vector quantizer (`.vqvae` with `--quantizer vq` only).
    public let quantizer: VectorQuantizer?
    /// Finite scalar quantization (`.vqvae` with `--quantizer fsq` only).
    public let scalarQuantizer: FiniteScalarQuantizer?
    public let maxBatch: Int

    let downs: [Conv2d]
    let encoderConv: Conv2d
    let encoderBlocks: [ResidualBlock]
    let preQuant: Conv2d
    /// `--codebook-dim`: 1x1 maps `D -> d` before the quantizer and `d -> D` after it.
    let projectIn: Conv2d?
    let projectOut: Conv2d?
    let decoderConv: Conv2d
    let decoderBlocks: [ResidualBlock]
    let ups: [ConvTranspose2d]
    /// `detail/conv{i}`: 3x3, `2C -> F -> ... -> F -> C`, ReLU between them (residual models only).
    let detail: [Conv2d]

    /// Sizes `(h, w)` at each resolution: index 0 the image, index i after i stride-2 layers.
    let resolutions: [(height: Int, width: Int)]

    // Activations, each `[maxBatch, h, w, channels]` at its resolution.
    let downOutputs: [FloatBuffer]        // relu(conv) of each encoder/down{i}
    let encoderStack: ResidualStackBuffers
    public let latent: FloatBuffer        // z   [N, h, w, D] (VAE: mean | log-variance, [N, h, w, 2D])
    let normalizedLatent: FloatBuffer     // --quantizer cosine: v / |v| per position [N, h, w, d] (v: z, or its projection)
    let projected: FloatBuffer            // --codebook-dim: project_in(z) [N, h, w, d]
    let codeVectors: FloatBuffer          // --codebook-dim: the chosen codebook rows [N, h, w, d]
    public let quantized: FloatBuffer     // q   [N, h, w, D] (unused by the autoencoder)
    let noise: FloatBuffer                // VAE: eps [N, h, w, D] of the last forward
    public let codeIndices: UnsafeMutableBufferPointer<Int32>  // [N, h, w] (residual VQ: [N, h, w, L])
    let decoderStack: ResidualStackBuffers
    let upOutputs: [FloatBuffer]          // relu(convT) between ups; the last is x_hat (residual: dec)
    let skipSums: [FloatBuffer]           // skips: what up{i} reads, dec_i + w * enc_i
    let skipGradients: [FloatBuffer]      // skips: w * dL/d(what up{i} reads), added to enc_i's gradient
    /// Skips: each image's skip weight in the last forward pass.
    let skipWeights: UnsafeMutableBufferPointer<Float>
    /// Residual VQ: the codebooks each latent vector used in the last forward pass.
    let activeLevels: UnsafeMutableBufferPointer<Int32>
    /// Residual VQ: the codebooks evaluation, restoration and encoding use (the first ones; all by
    /// default). Training with `quantizerDropout` draws each image's own instead.
    public var evaluationCodebooks: Int {
        didSet { precondition(evaluationCodebooks >= 1 && evaluationCodebooks <= configuration.codebooks, "1...codebooks") }
    }
    /// Skips: the weight of evaluation and restoration (and of training without a noise key):
    /// 1 trusts the input's detail fully, 0 restores from the latent alone. Starts at the top of
    /// the configuration's training range.
    public var fidelity: Float
    let maskCopy: FloatBuffer             // mask channel: m [N, H, W] of the last forward (0: known)
    private let smoothFill: SmoothFill?   // mask channel with holeFill .smooth or .plate
    let blankedImages: FloatBuffer        // mask channel: x' (x (1 - m), or filled) [N, H, W, C]
    let maskedInput: FloatBuffer          // mask channel: what encoder/down0 reads, [x' | m] [N, H, W, C + 1]
    let detailInput: FloatBuffer          // [x | dec] [N, H, W, 2C] (with detail layers)
    let detailOutputs: [FloatBuffer]      // relu(conv) of each detail layer; the last, [N, H, W, C], without ReLU
    let residualOutput: FloatBuffer       // residual: x_hat [N, H, W, C]
    let residualGradient: FloatBuffer     // with detail layers: dL/dx_hat, kept while the detail layers are differentiated
    let gradientA: FloatBuffer
    let gradientB: FloatBuffer
    /// `--loss-weight damage|log`: each image's weight in the last forward pass's loss gradient.
    let imageWeights: UnsafeMutablePointer<Float>
    let scratch: FloatBuffer
    let workspace: FloatBuffer

    private var lastBatch = 0

    /// Seconds spent in the passes since the last `resetTimes()`: the encoder and decoder
    /// forward (`forward`), the quantizer's search and statistics (`quantizer`), and `backward`.
    public private(set) var times = PassTimes()

    public func resetTimes() { times = PassTimes() }

    public init(configuration: ModelConfiguration, maxBatch: Int) throws {
        try configuration.validate()
        guard maxBatch >= 1 else { throw ModelError("the batch per rank must be at least 1") }
        try configuration.checkFitsInMemory(maxBatch: maxBatch)
        self.configuration = configuration
        self.maxBatch = maxBatch
        let c = configuration
        var sizes = [(height: c.height, width: c.width)]
        for _ in 0..<c.downsamplings { sizes.append((sizes.last!.height / 2, sizes.last!.width / 2)) }
        resolutions = sizes
        let stride2 = Window(kernel: 4, stride: 2, padding: 1)
        let same3 = Window(kernel: 3, stride: 1, padding: 1)

        var downs: [Conv2d] = []
        for i in 0..<c.downsamplings {
            downs.append(Conv2d(name: "encoder/down\(i)", inputChannels: i == 0 ? c.inputChannels : c.downChannels(i - 1),
                                outputChannels: c.downChannels(i), window: stride2, parameters: parameters))
        }
        self.downs = downs
        encoderConv = Conv2d(name: "encoder/conv", inputChannels: c.hidden, outputChannels: c.hidden, window: same3,
                             parameters: parameters)
        let store = parameters
        encoderBlocks = (0..<c.residualBlocks).map {
            ResidualBlock(name: "encoder/res\($0)", channels: c.hidden, residualChannels: c.residualHidden, parameters: store)
        }
        preQuant = Conv2d(name: "pre_quant", inputChannels: c.hidden, outputChannels: c.latentChannels,
                          window: Window(kernel: 1), parameters: parameters)
        scalarQuantizer = c.model == .vqvae && c.quantizer == .fsq ? FiniteScalarQuantizer(levels: c.levels) : nil
        projectIn = !c.hasCodebookProjection ? nil : Conv2d(
            name: "quantizer/project_in", inputChannels: c.codeDimension, outputChannels: c.quantizerDimension,
            window: Window(kernel: 1), parameters: parameters)
        let vectorQuantizer = !c.hasCodebook ? nil : VectorQuantizer(
            codes: c.codes, dimension: c.quantizerDimension, kind: c.codebook, commitment: Float(c.commitment),
            decay: c.decay, epsilon: c.emaEpsilon, parameters: parameters, levels: c.codebooks,
            maxVectors: maxBatch * c.latentHeight * c.latentWidth)
        projectOut = !c.hasCodebookProjection ? nil : Conv2d(
            name: "quantizer/project_out", inputChannels: c.quantizerDimension, outputChannels: c.codeDimension,
            window: Window(kernel: 1), parameters: parameters)
        vectorQuantizer?.rotationTrick = c.rotationTrick
        vectorQuantizer?.cosine = c.quantizer == .cosine
        quantizer = vectorQuantizer
        decoderConv = Conv2d(name: "decoder/conv", inputChannels: c.codeDimension, outputChannels: c.hidden, window: same3,
                             parameters: parameters)
        decoderBlocks = (0..<c.residualBlocks).map {
            ResidualBlock(name: "decoder/res\($0)", channels: c.hidden, residualChannels: c.residualHidden, parameters: store)
        }
        var ups: [ConvTranspose2d] = []
        for i in 0..<c.downsamplings {
            let last = i == c.downsamplings - 1
            ups.append(ConvTranspose2d(name: "decoder/up\(i)", inputChannels: c.hidden >> i,
                                       outputChannels: last ? c.channels : c.hidden >> (i + 1),
                                       window: stride2, resize: c.upsampling == .resize, parameters: parameters))
        }
        self.ups = ups
        let detailWidth = c.detailChannels
        detail = (0..<c.detailLayers).map { i in
            Conv2d(name: "detail/conv\(i)", inputChannels: i == 0 ? 2 * c.channels : detailWidth,
                   outputChannels: i == c.detailLayers - 1 ? c.channels : detailWidth, window: same3, parameters: store)
        }
        parameters.allocate()

        // Buffers.
        let n = maxBatch
        let latentPositions = n * c.latentHeight * c.latentWidth
        downOutputs = (0..<c.downsamplings).map { i in
            FloatBuffer(count: n * sizes[i + 1].height * sizes[i + 1].width * c.downChannels(i))
        }
        encoderStack = ResidualStackBuffers(blocks: encoderBlocks, positions: latentPositions, channels: c.hidden)
        latent = FloatBuffer(count: latentPositions * c.latentChannels)
        normalizedLatent = FloatBuffer(count: c.hasCodebook && c.quantizer == .cosine ? latentPositions * c.quantizerDimension : 0)
        projected = FloatBuffer(count: c.hasCodebookProjection ? latentPositions * c.quantizerDimension : 0)
        codeVectors = FloatBuffer(count: projected.count)
        quantized = FloatBuffer(count: c.model == .ae ? 0 : latentPositions * c.codeDimension)
        noise = FloatBuffer(count: c.model == .vae ? latentPositions * c.codeDimension : 0)
        codeIndices = .allocate(capacity: latentPositions * c.codesPerPosition)
        codeIndices.initialize(repeating: 0)
        decoderStack = ResidualStackBuffers(blocks: decoderBlocks, positions: latentPositions, channels: c.hidden)
        upOutputs = ups.enumerated().map { i, up in
            FloatBuffer(count: n * sizes[c.downsamplings - 1 - i].height * sizes[c.downsamplings - 1 - i].width * up.outputChannels)
        }
        // up{i} reads the resolution D - i, where the encoder's down{D-1-i} has the same width.
        skipSums = ups.enumerated().map { i, up in
            FloatBuffer(count: c.skips ? n * sizes[c.downsamplings - i].height * sizes[c.downsamplings - i].width * up.inputChannels : 0)
        }
        skipGradients = skipSums.map { FloatBuffer(count: $0.count) }
        skipWeights = .allocate(capacity: n)
        activeLevels = .allocate(capacity: c.hasCodebook && c.codebooks > 1 ? latentPositions : 0)
        activeLevels.initialize(repeating: Int32(c.codebooks))
        evaluationCodebooks = c.codebooks
        fidelity = Float(c.skipWeightHigh)
        skipWeights.initialize(repeating: fidelity)
        let pixels = n * c.height * c.width
        maskCopy = FloatBuffer(count: c.maskChannel ? pixels : 0)
        smoothFill = c.maskChannel ? SmoothFill(c.holeFill) : nil
        imageWeights = .allocate(capacity: n)
        imageWeights.initialize(repeating: 1, count: n)
        blankedImages = FloatBuffer(count: c.maskChannel ? pixels * c.channels : 0)
        maskedInput = FloatBuffer(count: c.maskChannel ? pixels * c.inputChannels : 0)
        detailInput = FloatBuffer(count: detail.isEmpty ? 0 : pixels * 2 * c.channels)
        detailOutputs = detail.map { FloatBuffer(count: pixels * $0.outputChannels) }
        residualOutput = FloatBuffer(count: c.residual ? pixels * c.channels : 0)
        residualGradient = FloatBuffer(count: detail.isEmpty ? 0 : pixels * c.channels)
        var largest = pixels * c.channels
        for buffer in downOutputs + upOutputs + skipSums + [detailInput] + detailOutputs { largest = max(largest, buffer.count) }
        largest = max(largest, latentPositions * max(c.hidden, c.latentChannels, c.quantizerDimension))
        gradientA = FloatBuffer(count: largest)
        gradientB = FloatBuffer(count: largest)
        scratch = FloatBuffer(count: latentPositions * c.residualHidden)

        var work = quantizer?.workspaceCount(vectors: latentPositions) ?? 0
        for (i, conv) in downs.enumerated() {
            work = max(work, conv.workspaceCount(batch: n, height: sizes[i].height, width: sizes[i].width))
        }
        let (lh, lw) = (c.latentHeight, c.latentWidth)
        work = max(work, encoderConv.workspaceCount(batch: n, height: lh, width: lw))
        for conv in [projectIn, projectOut].compactMap({ $0 }) { work = max(work, conv.workspaceCount(batch: n, height: lh, width: lw)) }
        work = max(work, decoderConv.workspaceCount(batch: n, height: lh, width: lw))
        for block in encoderBlocks + decoderBlocks { work = max(work, block.workspaceCount(batch: n, height: lh, width: lw)) }
        for (i, up) in ups.enumerated() {
            let size = sizes[c.downsamplings - i]
            work = max(work, up.workspaceCount(batch: n, height: size.height, width: size.width))
        }
        for conv in detail { work = max(work, conv.workspaceCount(batch: n, height: c.height, width: c.width)) }
        workspace = FloatBuffer(count: work)
    }

    deinit {
        codeIndices.deallocate()
        skipWeights.deallocate()
        activeLevels.deallocate()
        imageWeights.deallocate()
    }

    /// Floats the model holds: parameters and their gradients, then every activation, gradient
    /// and workspace buffer (what `ModelConfiguration.trainingBytesEstimate` over-estimates).
    public var allocatedFloatCount: Int {
        var buffers = downOutputs + upOutputs + skipSums + skipGradients + [latent, quantized, noise, gradientA, gradientB, scratch, workspace]
        buffers += [detailInput, residualOutput, residualGradient, maskCopy, blankedImages, maskedInput, normalizedLatent, projected, codeVectors]
        buffers += detailOutputs
        for stack in [encoderStack, decoderStack] { buffers += [stack.input, stack.output] + stack.blockOutputs + stack.saved }
        return buffers.reduce(2 * parameters.count) { $0 + $1.count } + codeIndices.count + skipWeights.count + activeLevels.count
            + (quantizer?.allocatedFloatCount ?? 0) + (smoothFill?.allocatedFloatCount ?? 0)
    }

    /// Fresh weights from `seed`: PyTorch's default initialisation, a standard-normal codebook,
    /// `N = 0`, `M = E`. The same seed always gives the same model.
    public func initialize(seed: UInt64) {
        parameters.initialize(seed: seed)
        quantizer?.initializeEMA(seed: seed)
    }

    /// What the decoder reads: `q` `[N, h, w, D]`, or `z` itself for the autoencoder.
    public var decoderInput: UnsafeMutablePointer<Float> {
        configuration.model == .ae ? latent.pointer : quantized.pointer
    }

    /// The reconstruction `x_hat` `[N, H, W, C]` of the last forward pass.
    public var reconstruction: FloatBuffer { configuration.residual ? residualOutput : upOutputs.last! }

    public var imageCount: Int { configuration.height * configuration.width * configuration.channels }
    public var latentCount: Int { configuration.latentHeight * configuration.latentWidth }

    /// The encoder alone: fills `latent` (`z`, `[N, h, w, D]`; for the VAE the mean and
    /// log-variance, `[N, h, w, 2D]`) for `batch` images `[N, H, W, C]`. With the mask channel,
    /// `masks` `[N, H, W]` marks the missing pixels (nil: none is missing).
    public func encode(images: UnsafePointer<Float>, masks: UnsafePointer<Float>? = nil, batch: Int) {
        precondition(batch >= 1 && batch <= maxBatch, "batch \(batch) exceeds the allocated \(maxBatch)")
        lastBatch = batch
        let c = configuration
        let p = UnsafePointer(parameters.values.pointer)
        let work = workspace.pointer
        var input = images
        if c.maskChannel {
            prepareMaskedInput(images: images, masks: masks, batch: batch)
            input = UnsafePointer(maskedInput.pointer)
        }
        for (i, conv) in downs.enumerated() {
            conv.forward(output: downOutputs[i].pointer, input: input, batch: batch,
                         height: resolutions[i].height, width: resolutions[i].width, relu: true,
                         parameters: p, workspace: work)
            input = UnsafePointer(downOutputs[i].pointer)
        }
        let (lh, lw) = (c.latentHeight, c.latentWidth)
        encoderConv.forward(output: encoderStack.input.pointer, input: input, batch: batch, height: lh, width: lw,
                            parameters: p, workspace: work)
        encoderStack.forward(blocks: encoderBlocks, batch: batch, height: lh, width: lw, parameters: p, workspace: work)
        preQuant.forward(output: latent.pointer, input: encoderStack.output.pointer, batch: batch, height: lh, width: lw,
                         parameters: p, workspace: work)
        if let projectIn {
            projectIn.forward(output: projected.pointer, input: latent.pointer, batch: batch, height: lh, width: lw,
                              parameters: p, workspace: work)
        }
        if normalizedLatent.count > 0 {
            let d = c.quantizerDimension
            normalizedLatent.pointer.update(from: unnormalizedQuantizerInput, count: batch * lh * lw * d)
            VectorQuantizer.normalizeRows(normalizedLatent.pointer, rows: batch * lh * lw, dimension: d)
        }
    }

    /// `z`, or its projection with `--codebook-dim` (after `encode`).
    private var unnormalizedQuantizerInput: UnsafeMutablePointer<Float> {
        projected.count > 0 ? projected.pointer : latent.pointer
    }

    /// What the vector quantizer reads, `[N, h, w, d]` (after `encode`): `z`, or with
    /// `--codebook-dim` its projection `v = project_in(z)`; with `--quantizer cosine` `v / |v|`.
    public var quantizerInput: UnsafeMutablePointer<Float> {
        normalizedLatent.count > 0 ? normalizedLatent.pointer : unnormalizedQuantizerInput
    }

    /// Where the vector quantizer writes the chosen rows: `q` itself, or with `--codebook-dim` the
    /// rows in the codebook's space, which `project_out` then carries to `q`.
    var quantizerOutput: UnsafeMutablePointer<Float> {
        codeVectors.count > 0 ? codeVectors.pointer : quantized.pointer
    }

    /// `--quantizer cosine`: from `dL/dv_hat` to `dL/dv` in place, through `v_hat = v / max(|v|, 1e-6)`:
    /// `(g - v_hat (v_hat . g)) / |v|`, or `g / 1e-6` where `|v|` is below the floor.
    private func normalizationBackward(_ gradient: UnsafeMutablePointer<Float>, count: Int) {
        let d = configuration.quantizerDimension, z = unnormalizedQuantizerInput, zHat = normalizedLatent.pointer
        for p in 0..<count {
            let row = p * d
            var norm: Float = 0, dot: Float = 0
            for j in 0..<d { norm += z[row + j] * z[row + j]; dot += zHat[row + j] * gradient[row + j] }
            norm = norm.squareRoot()
            if norm > 1e-6 {
                for j in 0..<d { gradient[row + j] = (gradient[row + j] - zHat[row + j] * dot) / norm }
            } else {
                for j in 0..<d { gradient[row + j] /= 1e-6 }
            }
        }
    }

    /// Mask channel: keeps `m` (zeros without `masks`), and writes `x (1 - m)` and `[x (1 - m) | m]`.
    private func prepareMaskedInput(images: UnsafePointer<Float>, masks: UnsafePointer<Float>?, batch: Int) {
        let channels = configuration.channels, pixels = batch * configuration.height * configuration.width
        let m = maskCopy.pointer, blanked = blankedImages.pointer, joined = maskedInput.pointer
        if let masks { m.update(from: masks, count: pixels) } else { m.update(repeating: 0, count: pixels) }
        switch configuration.holeFill {
        case .zero:
            for q in 0..<pixels {
                let keep = 1 - m[q]
                for k in 0..<channels { blanked[q * channels + k] = images[q * channels + k] * keep }
            }
        case .smooth, .plate:
            blanked.update(from: images, count: pixels * channels)
            let perImage = configuration.height * configuration.width
            for n in 0..<batch {
                smoothFill!.fill(blanked + n * perImage * channels, missing: UnsafePointer(m + n * perImage),
                                height: configuration.height, width: configuration.width, channels: channels)
            }
        }
        for q in 0..<pixels {
            for k in 0..<channels { joined[q * (channels + 1) + k] = blanked[q * channels + k] }
            joined[q * (channels + 1) + channels] = m[q]
        }
    }

    /// Mask channel: `out = m * out + (1 - m) * x` in place, every known pixel the input's own.
    private func pasteKnownPixels(_ output: UnsafeMutablePointer<Float>, images: UnsafePointer<Float>, batch: Int) {
        let channels = configuration.channels, pixels = batch * configuration.height * configuration.width
        let m = maskCopy.pointer
        for q in 0..<pixels {
            let w = m[q]
            for k in 0..<channels {
                let i = q * channels + k
                output[i] = w == 1 ? output[i] : (w == 0 ? images[i] : w * output[i] + (1 - w) * images[i])
            }
        }
    }

    /// Forward pass over `batch` images `[N, H, W, C]`; the reconstruction loss compares `x_hat`
    /// with `targets` (the clean images when `images` are corrupted for restoration training), or
    /// with `images` themselves. With `training`, the quantizer also collects this share's EMA
    /// statistics (`quantizer.batchStatistics`). The VAE samples its latent when `noise` is given
    /// (training) and decodes the mean otherwise.
    ///
    /// With the mask channel, `masks` `[N, H, W]` marks the missing pixels (nil: none).
    @discardableResult
    public func forward(images: UnsafePointer<Float>, masks: UnsafePointer<Float>? = nil, targets: UnsafePointer<Float>? = nil,
                        batch: Int, training: Bool, noise noiseKey: NoiseKey? = nil) -> Losses {
        let start = monotonicNanoseconds()
        encode(images: images, masks: masks, batch: batch)
        let encoded = monotonicNanoseconds()
        let targets = targets ?? images
        let c = configuration
        let work = workspace.pointer
        let (lh, lw) = (c.latentHeight, c.latentWidth)
        let vectors = batch * lh * lw
        var commitment: Double = 0, klSum: Double = 0
        switch c.model {
        case .vqvae:
            if let scalarQuantizer {
                scalarQuantizer.forward(quantized: quantized.pointer, indices: codeIndices.baseAddress!, vectors: latent.pointer, count: vectors)
                break
            }
            let quantizer = quantizer!
            var levelsInUse: UnsafePointer<Int32>?
            if quantizer.levels > 1 {
                drawActiveLevels(batch: batch, key: training && c.quantizerDropout ? noiseKey : nil)
                levelsInUse = UnsafePointer(activeLevels.baseAddress!)
            }
            commitment = quantizer.forwardLevels(
                quantized: quantizerOutput, indices: codeIndices.baseAddress!, vectors: quantizerInput, count: vectors,
                parameters: parameters, collectStatistics: training, workspace: work, activeLevels: levelsInUse)
            projectOut?.forward(output: quantized.pointer, input: codeVectors.pointer, batch: batch, height: lh, width: lw,
                                parameters: UnsafePointer(parameters.values.pointer), workspace: work)
        case .vae:
            klSum = GaussianLatent.forward(sample: quantized.pointer, noise: noise.pointer, moments: latent.pointer,
                                           dimension: c.codeDimension, images: batch, positionsPerImage: lh * lw,
                                           key: noiseKey)
        case .ae:
            break
        }
        let afterQuantizer = monotonicNanoseconds()
        times.quantizer += Double(afterQuantizer - encoded) * 1e-9
        defer { times.forward += Double(monotonicNanoseconds() - afterQuantizer + encoded - start) * 1e-9 }
        if c.skips { drawSkipWeights(batch: batch, key: training ? noiseKey : nil) }
        runDecoder(batch: batch)
        if c.residual { runResidual(images: c.maskChannel ? UnsafePointer(blankedImages.pointer) : images, batch: batch) }
        if c.maskChannel { pasteKnownPixels(reconstruction.pointer, images: images, batch: batch) }
        // Reconstruction loss in double precision.
        let count = batch * imageCount
        let xHat = reconstruction.pointer
        var sum: Double = 0
        for i in 0..<count {
            let diff = Double(xHat[i] - targets[i])
            sum += diff * diff
        }
        let mse = sum / Double(count)
        var fit = mse
        if c.loss == .charbonnier || c.lossWeighting != .uniform {
            // Image by image: each image's mean, times its weight (or through the log), averaged.
            let perImage = imageCount
            let epsilon = ReconstructionLoss.charbonnierEpsilon
            var total: Double = 0
            for n in 0..<batch {
                var term: Double = 0, damage: Double = 0
                for i in (n * perImage)..<((n + 1) * perImage) {
                    let diff = Double(xHat[i] - targets[i])
                    term += c.loss == .charbonnier ? (diff * diff + epsilon * epsilon).squareRoot() : diff * diff
                    let d = Double(images[i] - targets[i])
                    damage += d * d
                }
                let mean = term / Double(perImage)
                switch c.lossWeighting {
                case .uniform:
                    imageWeights[n] = 1
                    total += mean
                case .damage:
                    let weight = LossWeighting.damageWeight(rms: (damage / Double(perImage)).squareRoot())
                    imageWeights[n] = Float(weight)
                    total += weight * mean
                case .log:
                    imageWeights[n] = Float(LossWeighting.logWeight(mean))
                    total += LossWeighting.logTerm(mean)
                }
            }
            fit = total / Double(batch)
        }
        switch c.model {
        case .vqvae:
            var total = fit + c.commitment * commitment
            if c.codebook == .grad { total += commitment }
            return Losses(reconstruction: mse, commitment: commitment, total: total)
        case .vae:
            let kl = klSum / Double(count)
            return Losses(reconstruction: mse, commitment: 0, kl: kl, total: fit + c.klWeight * kl)
        case .ae:
            return Losses(reconstruction: mse, commitment: 0, total: fit)
        }
    }

    /// Residual VQ: each latent vector's codebooks in use, `activeLevels`: with a key (training
    /// with quantizer dropout) image `firstImage + n` of the global batch draws `1...L` uniformly
    /// from its own stream keyed by `(seed, step, firstImage + n)`, independent of how the batch is
    /// split over ranks; without one, `evaluationCodebooks`.
    func drawActiveLevels(batch: Int, key: NoiseKey?) {
        let levels = configuration.codebooks, perImage = latentCount
        for n in 0..<batch {
            var value = Int32(evaluationCodebooks)
            if let key {
                var random = SplitMix64(seed: key.seed &+ SplitMix64.mix(key.step ^ 0x5144_524F_50), stream: UInt64(key.firstImage + n))
                value = Int32(1 + random.below(levels))
            }
            (activeLevels.baseAddress! + n * perImage).update(repeating: value, count: perImage)
        }
    }

    /// Skips: each image's weight, `skipWeights[n]`. With a key (training), image `firstImage + n`
    /// of the global batch draws it uniformly from the configuration's range, from its own stream
    /// keyed by `(seed, step, firstImage + n)`, so it does not depend on how the batch is split over
    /// ranks; a range with equal ends is that weight, drawn or not. Without a key: `fidelity`.
    func drawSkipWeights(batch: Int, key: NoiseKey?) {
        let c = configuration
        guard let key else {
            for n in 0..<batch { skipWeights[n] = fidelity }
            return
        }
        let (low, high) = (Float(c.skipWeightLow), Float(c.skipWeightHigh))
        for n in 0..<batch {
            guard low < high else { skipWeights[n] = low; continue }
            var random = SplitMix64(seed: key.seed &+ SplitMix64.mix(key.step ^ 0x534B_4950), stream: UInt64(key.firstImage + n))
            skipWeights[n] = min(random.uniform(low, high), high)
        }
    }

    /// Skips: `sum = dec + w_n * enc` image by image (`perImage` floats each); a zero weight copies
    /// `dec`, whatever `enc` holds.
    private func addSkip(sum: UnsafeMutablePointer<Float>, decoded: UnsafePointer<Float>, encoded: UnsafePointer<Float>,
                         batch: Int, perImage: Int) {
        for n in 0..<batch {
            let w = skipWeights[n], base = n * perImage
            if w == 0 {
                (sum + base).update(from: decoded + base, count: perImage)
            } else {
                for j in base..<(base + perImage) { sum[j] = decoded[j] + w * encoded[j] }
            }
        }
    }

    /// The decoder alone, from `decoderInput` to `reconstruction`.
    func runDecoder(batch: Int) {
        let c = configuration
        let p = UnsafePointer(parameters.values.pointer)
        let work = workspace.pointer
        let (lh, lw) = (c.latentHeight, c.latentWidth)
        decoderConv.forward(output: decoderStack.input.pointer, input: decoderInput, batch: batch, height: lh, width: lw,
                            parameters: p, workspace: work)
        decoderStack.forward(blocks: decoderBlocks, batch: batch, height: lh, width: lw, parameters: p, workspace: work)
        var input = UnsafePointer(decoderStack.output.pointer)
        for (i, up) in ups.enumerated() {
            let size = resolutions[c.downsamplings - i]
            if c.skips {
                addSkip(sum: skipSums[i].pointer, decoded: input, encoded: downOutputs[c.downsamplings - 1 - i].pointer,
                        batch: batch, perImage: size.height * size.width * up.inputChannels)
                input = UnsafePointer(skipSums[i].pointer)
            }
            up.forward(output: upOutputs[i].pointer, input: input, batch: batch, height: size.height, width: size.width,
                       relu: i < ups.count - 1, parameters: p, workspace: work)
            input = UnsafePointer(upOutputs[i].pointer)
        }
    }

    /// Residual models: `x_hat = x + dec (+ detail([x | dec]))` from the decoder's output.
    func runResidual(images: UnsafePointer<Float>, batch: Int) {
        let c = configuration
        let pixels = batch * c.height * c.width, channels = c.channels, count = pixels * channels
        let decoded = UnsafePointer(upOutputs.last!.pointer), output = residualOutput.pointer
        for i in 0..<count { output[i] = images[i] + decoded[i] }
        guard !detail.isEmpty else { return }
        let joined = detailInput.pointer
        for p in 0..<pixels {
            (joined + 2 * p * channels).update(from: images + p * channels, count: channels)
            (joined + (2 * p + 1) * channels).update(from: decoded + p * channels, count: channels)
        }
        let p = UnsafePointer(parameters.values.pointer)
        var input = UnsafePointer(joined)
        for (i, conv) in detail.enumerated() {
            conv.forward(output: detailOutputs[i].pointer, input: input, batch: batch, height: c.height, width: c.width,
                         relu: i < detail.count - 1, parameters: p, workspace: workspace.pointer)
            input = UnsafePointer(detailOutputs[i].pointer)
        }
        add(output, input, count: count)
    }

    /// VQ-VAE: decodes code indices `[N, h, w]` (each in `0..<K`) into `reconstruction`: `q` is
    /// the codebook's rows, exactly as the forward pass takes them, so decoding the indices of a
    /// forward pass reproduces its reconstruction bit for bit.
    public func decode(codes: UnsafePointer<Int32>, batch: Int) {
        precondition(batch >= 1 && batch <= maxBatch, "batch \(batch) exceeds the allocated \(maxBatch)")
        precondition(configuration.model == .vqvae, "decode(codes:) needs the VQ-VAE")
        precondition(!configuration.residual, "a residual model's output needs its input, not only codes")
        let d = configuration.quantizerDimension, rows = quantizerOutput
        if let quantizer, quantizer.levels > 1 {
            quantizer.decodeLevels(codes: codes, count: batch * latentCount, into: rows, parameters: parameters)
        } else {
            for p in 0..<(batch * latentCount) {
                let k = Int(codes[p])
                precondition(k >= 0 && k < configuration.codes, "code \(k) is outside the codebook")
                if let scalarQuantizer {
                    scalarQuantizer.vector(of: k, into: quantized.pointer + p * d)
                } else {
                    (rows + p * d).update(from: quantizer!.codebook(parameters: parameters) + k * d, count: d)
                }
            }
        }
        projectOut?.forward(output: quantized.pointer, input: codeVectors.pointer, batch: batch, height: configuration.latentHeight,
                            width: configuration.latentWidth, parameters: UnsafePointer(parameters.values.pointer), workspace: workspace.pointer)
        lastBatch = batch
        // Skips: codes alone carry no encoder activations; decode from the latent only.
        for n in 0..<batch { skipWeights[n] = 0 }
        runDecoder(batch: batch)
    }

    /// Residual VQ: quantizes `rows` `[N, h, w, d]` (vectors in the codebooks' space, as the
    /// quantizer reads them) into `codeIndices` `[N, h, w, L]` as the forward pass does, each
    /// position with its own first `levels[p]` codebooks (nil: `evaluationCodebooks`); the codes
    /// a position skips are -1. Touches no statistics. `decode(codes: codeIndices...)` then
    /// decodes them.
    public func quantize(rows: UnsafePointer<Float>, batch: Int, levels: UnsafePointer<Int32>? = nil) {
        precondition(batch >= 1 && batch <= maxBatch, "batch \(batch) exceeds the allocated \(maxBatch)")
        guard let quantizer, scalarQuantizer == nil else { preconditionFailure("quantize(rows:) needs a vector quantizer") }
        let count = batch * latentCount
        var active = levels
        if active == nil, quantizer.levels > 1 {
            for p in 0..<count { activeLevels[p] = Int32(evaluationCodebooks) }
            active = UnsafePointer(activeLevels.baseAddress!)
        }
        _ = quantizer.forwardLevels(quantized: quantizerOutput, indices: codeIndices.baseAddress!, vectors: rows, count: count,
                                    parameters: parameters, collectStatistics: false, workspace: workspace.pointer,
                                    activeLevels: active)
    }

    /// After `decode(codes:batch:)` of a VQ-VAE without skips: the gradient of a loss with respect
    /// to the code rows the decoder read (`[N, h, w, d]`, in the codebooks' space: before
    /// `project_out` with `--codebook-dim`), from `reconstructionGradient` (`dL/dx_hat`, `[N, H, W, C]`) back through the
    /// decoder (and `project_out`). The parameter gradients computed on the way are cleared.
    public func codeRowGradient(reconstructionGradient: UnsafePointer<Float>) -> UnsafePointer<Float> {
        let c = configuration
        precondition(c.model == .vqvae && !c.skips && !c.residual, "codeRowGradient needs a VQ-VAE without skips")
        let batch = lastBatch
        var current = gradientA.pointer, other = gradientB.pointer
        current.update(from: reconstructionGradient, count: batch * imageCount)
        backwardThroughDecoder(current: &current, other: &other, batch: batch, gradientsReady: { _ in })
        if let projectOut {
            projectOut.backward(inputGradient: other, outputGradient: current, input: codeVectors.pointer, batch: batch,
                                height: c.latentHeight, width: c.latentWidth, parameters: UnsafePointer(parameters.values.pointer),
                                gradients: parameters.gradients.pointer, workspace: workspace.pointer)
            swap(&current, &other)
        }
        parameters.zeroGradients()
        return UnsafePointer(current)
    }

    /// Backward pass of the last `forward(images:...)` over the same `images` and `targets`: ACCUMULATES every
    /// parameter's gradient of this share's mean loss into `parameters.gradients`.
    ///
    /// `gradientsReady(offset)` is called as layers finish: from then on every gradient at a flat
    /// offset `>= offset` is final (parameters are laid out in forward order, and the backward pass
    /// runs in reverse), so a caller can start reducing them while the rest is computed.
    public func backward(images: UnsafePointer<Float>, targets: UnsafePointer<Float>? = nil,
                         gradientsReady: (Int) -> Void = { _ in }) {
        let targets = targets ?? images
        let start = monotonicNanoseconds()
        defer { times.backward += Double(monotonicNanoseconds() - start) * 1e-9 }
        let batch = lastBatch
        precondition(batch > 0, "backward before forward")
        let c = configuration
        let p = UnsafePointer(parameters.values.pointer)
        let g = parameters.gradients.pointer
        let work = workspace.pointer
        var current = gradientA.pointer, other = gradientB.pointer

        // d/dx_hat of mean((x_hat - x)^2), or of mean(sqrt((x_hat - x)^2 + eps^2)).
        let count = batch * imageCount
        let xHat = reconstruction.pointer
        if c.loss == .charbonnier {
            let epsilonSquared = Float(ReconstructionLoss.charbonnierEpsilon * ReconstructionLoss.charbonnierEpsilon)
            let scale = 1 / Float(count)
            for i in 0..<count {
                let diff = xHat[i] - targets[i]
                current[i] = scale * diff / (diff * diff + epsilonSquared).squareRoot()
            }
        } else {
            scaledDifference(current, xHat, targets, scale: 2 / Float(count), count: count)
        }
        if c.lossWeighting != .uniform {
            // Each image's share times the weight its forward pass gave it (for `log`, the
            // derivative of its term).
            let perImage = imageCount
            for n in 0..<batch {
                let weight = imageWeights[n]
                for i in (n * perImage)..<((n + 1) * perImage) { current[i] *= weight }
            }
        }
        if c.maskChannel {
            // d(m y + (1 - m) x)/dy = m: known pixels pass no gradient to the network.
            let channels = c.channels, m = maskCopy.pointer
            for q in 0..<(batch * c.height * c.width) { for k in 0..<channels { current[q * channels + k] *= m[q] } }
        }

        if !detail.isEmpty {
            // x_hat = x + dec + detail([x | dec]): dL/ddec = dL/dx_hat + the dec half of dL/d[x | dec].
            let pixels = batch * c.height * c.width, channels = c.channels
            residualGradient.pointer.update(from: current, count: count)
            for i in stride(from: detail.count - 1, through: 0, by: -1) {
                let input = i == 0 ? detailInput.pointer : detailOutputs[i - 1].pointer
                detail[i].backward(inputGradient: other, outputGradient: current, input: input, batch: batch,
                                   height: c.height, width: c.width, parameters: p, gradients: g, workspace: work)
                gradientsReady(detail[i].weight.offset)
                swap(&current, &other)
                if i > 0 { reluBackward(current, current, output: input, count: pixels * detail[i].inputChannels) }
            }
            let direct = residualGradient.pointer
            for q in 0..<pixels {
                for k in 0..<channels { other[q * channels + k] = direct[q * channels + k] + current[(2 * q + 1) * channels + k] }
            }
            swap(&current, &other)
        }
        // (residual without detail layers: dL/ddec = dL/dx_hat)

        backwardThroughDecoder(current: &current, other: &other, batch: batch, gradientsReady: gradientsReady)
        let (lh, lw) = (c.latentHeight, c.latentWidth)
        let vectors = batch * lh * lw
        switch c.model {
        case .vqvae:
            if let scalarQuantizer {
                scalarQuantizer.backward(vectorGradient: other, quantizedGradient: current, vectors: latent.pointer, count: vectors)
                swap(&current, &other)
                break
            }
            let quantizer = quantizer!
            if let projectOut {
                projectOut.backward(inputGradient: other, outputGradient: current, input: codeVectors.pointer, batch: batch,
                                    height: lh, width: lw, parameters: p, gradients: g, workspace: work)
                gradientsReady(projectOut.weight.offset)
                swap(&current, &other)
            }
            quantizer.backwardLevels(vectorGradient: other, quantizedGradient: current, vectors: quantizerInput,
                                     quantized: quantizerOutput, indices: codeIndices.baseAddress!, count: vectors, gradients: g)
            if let slot = quantizer.codebookSlot { gradientsReady(slot.offset) }
            if quantizer.cosine { normalizationBackward(other, count: vectors) }
            swap(&current, &other)
            if let projectIn {
                projectIn.backward(inputGradient: other, outputGradient: current, input: latent.pointer, batch: batch,
                                   height: lh, width: lw, parameters: p, gradients: g, workspace: work)
                gradientsReady(projectIn.weight.offset)
                swap(&current, &other)
            }
        case .vae:
            GaussianLatent.backward(momentsGradient: other, sampleGradient: current, moments: latent.pointer,
                                    noise: noise.pointer, dimension: c.codeDimension, positions: vectors,
                                    klScale: Float(c.klWeight / Double(count)))
            swap(&current, &other)
        case .ae:
            break  // the decoder's input gradient is the latent's
        }
        preQuant.backward(inputGradient: other, outputGradient: current, input: encoderStack.output.pointer, batch: batch,
                          height: lh, width: lw, parameters: p, gradients: g, workspace: work)
        gradientsReady(preQuant.weight.offset)
        swap(&current, &other)
        reluBackward(current, current, output: encoderStack.output.pointer, count: vectors * c.hidden)
        encoderStack.backward(blocks: encoderBlocks, gradient: &current, other: &other, batch: batch, height: lh, width: lw,
                              parameters: p, gradients: g, workspace: work, scratch: scratch.pointer,
                              gradientsReady: gradientsReady)
        let last = downs.count - 1
        encoderConv.backward(inputGradient: other, outputGradient: current, input: downOutputs[last].pointer, batch: batch,
                             height: lh, width: lw, parameters: p, gradients: g, workspace: work)
        gradientsReady(encoderConv.weight.offset)
        swap(&current, &other)
        for i in stride(from: last, through: 0, by: -1) {
            let size = resolutions[i]
            // Skips: relu(down{i}) also fed up{D-1-i}.
            if c.skips { add(current, skipGradients[last - i].pointer, count: skipGradients[last - i].count / maxBatch * batch) }
            reluBackward(current, current, output: downOutputs[i].pointer,
                         count: batch * resolutions[i + 1].height * resolutions[i + 1].width * downs[i].outputChannels)
            let input = i == 0 ? (c.maskChannel ? UnsafePointer(maskedInput.pointer) : images) : UnsafePointer(downOutputs[i - 1].pointer)
            downs[i].backward(inputGradient: i == 0 ? nil : other, outputGradient: current, input: input, batch: batch,
                              height: size.height, width: size.width, parameters: p, gradients: g, workspace: work)
            gradientsReady(downs[i].weight.offset)
            swap(&current, &other)
        }
    }

    /// From `dL/dx_hat` of the decoder's output in `current` (residual models: of `dec`) to
    /// `dL/d(decoderInput)` in `current`, accumulating the decoder's parameter gradients (and, with
    /// skips, saving the encoder's share of each skip's gradient in `skipGradients`).
    private func backwardThroughDecoder(current: inout UnsafeMutablePointer<Float>, other: inout UnsafeMutablePointer<Float>,
                                        batch: Int, gradientsReady: (Int) -> Void) {
        let c = configuration
        let p = UnsafePointer(parameters.values.pointer)
        let g = parameters.gradients.pointer
        let work = workspace.pointer
        for i in stride(from: ups.count - 1, through: 0, by: -1) {
            let size = resolutions[c.downsamplings - i]
            let input = i == 0 ? decoderStack.output.pointer : upOutputs[i - 1].pointer
            ups[i].backward(inputGradient: other, outputGradient: current, input: c.skips ? skipSums[i].pointer : input, batch: batch,
                            height: size.height, width: size.width, parameters: p, gradients: g, workspace: work)
            gradientsReady(ups[i].weight.offset)
            swap(&current, &other)
            if c.skips {
                // d(dec_i + w enc_i): the encoder's share, w times the gradient, waits for the encoder's backward.
                let perImage = size.height * size.width * ups[i].inputChannels
                let saved = skipGradients[i].pointer
                for n in 0..<batch {
                    let w = skipWeights[n], base = n * perImage
                    for j in base..<(base + perImage) { saved[j] = w * current[j] }
                }
            }
            // ReLU between ups (and the stack's final ReLU for i == 0).
            reluBackward(current, current, output: input, count: batch * size.height * size.width * ups[i].inputChannels)
        }
        let (lh, lw) = (c.latentHeight, c.latentWidth)
        decoderStack.backward(blocks: decoderBlocks, gradient: &current, other: &other, batch: batch, height: lh, width: lw,
                              parameters: p, gradients: g, workspace: work, scratch: scratch.pointer, gradientsReady: gradientsReady)
        decoderConv.backward(inputGradient: other, outputGradient: current, input: decoderInput, batch: batch,
                             height: lh, width: lw, parameters: p, gradients: g, workspace: work)
        gradientsReady(decoderConv.weight.offset)
        swap(&current, &other)
    }

    /// Multiply-adds of one training step per image: every layer's forward, weight gradient and
    /// input gradient (none for the first layer, whose input is the data), and the quantizer's
    /// distance GEMM.
    public var trainingMultiplyAddsPerImage: Int {
        let c = configuration
        let quantizerMACs = c.hasCodebook ? c.latentHeight * c.latentWidth * c.codes * c.quantizerDimension * c.codebooks : 0
        let layers = forwardMultiplyAddsPerImage - quantizerMACs
        let first = downs[0].forwardMultiplyAdds(batch: 1, height: resolutions[0].height, width: resolutions[0].width)
        return 3 * layers - first + quantizerMACs
    }

    /// Multiply-adds of one forward pass per image (convolutions and the quantizer's distances).
    public var forwardMultiplyAddsPerImage: Int {
        let c = configuration
        var total = 0
        for (i, conv) in downs.enumerated() {
            total += conv.forwardMultiplyAdds(batch: 1, height: resolutions[i].height, width: resolutions[i].width)
        }
        let (lh, lw) = (c.latentHeight, c.latentWidth)
        for conv in [encoderConv, preQuant, decoderConv] + [projectIn, projectOut].compactMap({ $0 }) + (encoderBlocks + decoderBlocks).flatMap({ [$0.conv3x3, $0.conv1x1] }) {
            total += conv.forwardMultiplyAdds(batch: 1, height: lh, width: lw)
        }
        for conv in detail { total += conv.forwardMultiplyAdds(batch: 1, height: c.height, width: c.width) }
        for (i, up) in ups.enumerated() {
            let size = resolutions[c.downsamplings - i]
            total += up.forwardMultiplyAdds(batch: 1, height: size.height, width: size.width)
        }
        if c.hasCodebook { total += lh * lw * c.codes * c.quantizerDimension * c.codebooks }
        return total
    }
}

/// Activations of a residual stack at the latent resolution: its input, each block's output and
/// saved tensors, and the final `relu` (`output`).
final class ResidualStackBuffers {
    let input: FloatBuffer
    let blockOutputs: [FloatBuffer]
    let saved: [FloatBuffer]
    let output: FloatBuffer
    let channels: Int

    init(blocks: [ResidualBlock], positions: Int, channels: Int) {
        self.channels = channels
        input = FloatBuffer(count: positions * channels)
        blockOutputs = blocks.map { _ in FloatBuffer(count: positions * channels) }
        saved = blocks.map { FloatBuffer(count: $0.savedCount(positions: positions)) }
        output = FloatBuffer(count: positions * channels)
    }

    /// `output = relu(blocks(input))`.
    func forward(blocks: [ResidualBlock], batch: Int, height: Int, width: Int,
                 parameters: UnsafePointer<Float>, workspace: UnsafeMutablePointer<Float>) {
        var x = UnsafePointer(input.pointer)
        for (j, block) in blocks.enumerated() {
            block.forward(output: blockOutputs[j].pointer, input: x, saved: saved[j].pointer, batch: batch,
                          height: height, width: width, parameters: parameters, workspace: workspace)
            x = UnsafePointer(blockOutputs[j].pointer)
        }
        relu(output.pointer, x, count: batch * height * width * channels)
    }

    /// From `dL/d(last block's output)` in `gradient` to `dL/dinput` in `gradient` (the two pointers
    /// are swapped as the blocks ping-pong between them). The caller applies the final ReLU's
    /// backward first: the layer after the stack reads its output, so the mask is at hand there.
    func backward(blocks: [ResidualBlock], gradient: inout UnsafeMutablePointer<Float>, other: inout UnsafeMutablePointer<Float>,
                  batch: Int, height: Int, width: Int, parameters: UnsafePointer<Float>, gradients: UnsafeMutablePointer<Float>,
                  workspace: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
                  gradientsReady: (Int) -> Void) {
        for j in stride(from: blocks.count - 1, through: 0, by: -1) {
            blocks[j].backward(inputGradient: other, outputGradient: gradient, saved: saved[j].pointer, batch: batch,
                               height: height, width: width, parameters: parameters, gradients: gradients,
                               workspace: workspace, scratch: scratch)
            gradientsReady(blocks[j].conv3x3.weight.offset)
            swap(&gradient, &other)
        }
    }
}

/// Accumulated seconds of the model's passes.
public struct PassTimes: Sendable {
    public var forward: Double = 0
    public var quantizer: Double = 0
    public var backward: Double = 0
}

/// Nanoseconds on a monotonic clock.
@inline(__always)
public func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

#if canImport(Glibc)
import Glibc
#endif
