#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which network is trained.
public enum ModelKind: String, Codable, Sendable, CaseIterable {
    case vqvae, vae, ae
}

/// How the VQ-VAE makes its codes.
public enum QuantizerKind: String, Codable, Sendable, CaseIterable {
    /// Nearest codebook row (spec/model.md): `VectorQuantizer`, EMA or gradient codebook.
    case vq
    /// Cosine-similarity codes: `z` and the codebook's rows l2-normalised, the nearest code by
    /// angle (`VectorQuantizer.cosine`); the EMA codebook only.
    case cosine
    /// Finite scalar quantization: each channel rounded to one of a few levels
    /// (`FiniteScalarQuantizer`); no codebook.
    case fsq
}

/// What the reconstruction term of the training loss measures.
public enum ReconstructionLoss: String, Codable, Sendable, CaseIterable {
    /// `mean((x_hat - t)^2)` (spec/model.md).
    case mse
    /// `mean(sqrt((x_hat - t)^2 + eps^2))` with `eps = 1e-3` (in normalised pixels): an L1 loss
    /// smoothed near 0. Its gradient has the same size for a small error as for a large one, so
    /// images with little damage weigh as much as heavily damaged ones.
    case charbonnier

    /// The Charbonnier loss's `eps`.
    public static let charbonnierEpsilon = 1e-3
}

/// How the training loss weighs the images of a batch against each other.
public enum LossWeighting: String, Codable, Sendable, CaseIterable {
    /// Every image alike (spec/model.md).
    case uniform
    /// Each image's reconstruction term times `0.1 / max(r, 0.01)`, `r` the root mean square of its
    /// damage (the model's input minus its target, over the image): lightly damaged images, whose
    /// errors are small, weigh more, so that a model trained on a range of noise levels serves the
    /// low ones as well as the high ones. An image with damage of RMS 0.1 weighs 1.
    case damage
    /// Each image's reconstruction term `t` (its mean) enters as `e log(1 + t / e)`, `e` =
    /// `logScale` (1e-4, an error of 40 dB): `t` itself for small errors, its logarithm for large
    /// ones. Its gradient is `t`'s times `1 / (1 + t / e)`, so every image's relative error counts
    /// alike: the loss follows the mean over images of their PSNR, as restorations are judged,
    /// instead of the images with the largest errors dominating.
    case log

    /// `log`: the error at which the term bends from `t` to its logarithm.
    public static let logScale = 1e-4
    /// `log`: an image's term for its mean error `t`.
    public static func logTerm(_ t: Double) -> Double { logScale * log1p(t / logScale) }
    /// `log`: the derivative of `logTerm` at `t`, the weight on the image's own gradient.
    public static func logWeight(_ t: Double) -> Double { 1 / (1 + t / logScale) }

    /// The RMS damage that weighs 1, and the floor under `r`.
    public static let damageReference = 0.1
    public static let damageFloor = 0.01

    /// The weight of an image whose damage has this root mean square.
    public static func damageWeight(rms: Double) -> Double { damageReference / max(rms, damageFloor) }
}

/// How the decoder doubles the resolution at each level.
public enum UpsamplingKind: String, Codable, Sendable, CaseIterable {
    /// A 4x4 transposed convolution with stride 2 (spec/model.md).
    case transposed
    /// Nearest-neighbour upsampling by 2 followed by a 3x3 convolution (a "resize-convolution"):
    /// every output pixel of a 2x2 block sees the same input taps, so the decoder cannot paint the
    /// period-2 checkerboard that transposed convolutions learn on smooth areas.
    case resize
}

/// A configuration that cannot be built, with a message for the user.
public struct ModelError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The architecture and loss settings of spec/model.md, with its defaults.
public struct ModelConfiguration: Codable, Equatable, Sendable {
    public var model: ModelKind = .vqvae
    /// Input image size `H x W x C`.
    public var height: Int
    public var width: Int
    public var channels: Int
    public var hidden = 128
    public var residualHidden = 32
    public var residualBlocks = 2
    public var downsamplings = 2
    public var codeDimension = 64
    public var codes = 512
    public var commitment: Double = 0.25
    public var decay: Double = 0.99
    public var emaEpsilon: Double = 1e-5
    public var codebook: CodebookKind = .ema
    /// `--model vqvae`: how codes are made. With `.fsq` the code dimension is `levels.count` and
    /// the number of codes the product of `levels`.
    public var quantizer: QuantizerKind = .vq
    /// `.fsq`: the level count of each latent channel (e.g. 8,5,5,5); empty otherwise.
    public var levels: [Int] = []
    /// `.vq`: the rotation trick instead of the straight-through gradient (`VectorQuantizer.backward`).
    public var rotationTrick = false
    /// A codebook of lower (or other) dimension than the latent, as in ViT-VQGAN and
    /// `vector_quantize_pytorch`'s `codebook_dim`: a linear map `quantizer/project_in` (`D -> d`,
    /// with bias) carries `z` to the codebook's space, the quantizer works there (its distances,
    /// commitment loss, EMA, k-means and restarts all in `d` dimensions), and `quantizer/project_out`
    /// (`d -> D`) carries the chosen row back for the decoder. 0, or `d == D`: no projection.
    public var codebookDimension = 0
    /// Residual VQ (`vector_quantize_pytorch.ResidualVQ`): this many codebooks of `codes` rows,
    /// each quantizing what the ones before it left (`VectorQuantizer.levels`); a latent position
    /// then has one code per codebook. 1: the plain quantizer.
    public var codebooks = 1
    /// Residual VQ's quantizer dropout (SoundStream): in training each image uses only its first
    /// `n` codebooks, `n` drawn uniformly from 1...`codebooks` per image (keyed like the skip
    /// weights, so independent of the ranks), so that one model decodes at any number of them.
    public var quantizerDropout = false
    /// The reconstruction term the training loss minimises (what `Losses.reconstruction` reports
    /// stays the mean squared error).
    public var loss: ReconstructionLoss = .mse
    /// How the reconstruction term weighs the images of a batch (`Losses.reconstruction` stays the
    /// plain mean). Older checkpoints, without the key, are `.uniform`.
    public var lossWeighting: LossWeighting = .uniform
    /// `--model vae`: weight of the KL term (see `GaussianLatent` for its normalisation).
    public var klWeight: Double = 0.001
    /// Residual restoration: the output is the input plus what the network predicts,
    /// `x_hat = x + decoder(...) (+ detail(x, decoder(...)))`, so whatever needs no repair passes
    /// through unchanged. Older checkpoints, without the key, are not residual.
    public var residual = false
    /// With `residual`: 3x3 layers at full resolution that read the input beside the decoder's
    /// output and add their own per-pixel correction (0: none).
    public var detailLayers = 0
    /// Channels of the detail layers' hidden activations.
    public var detailChannels = 32
    /// U-Net skips: at every resolution below the image, the decoder's activation is summed with
    /// `w` times the encoder's activation of the same resolution and width before the next
    /// transposed convolution reads it (`w` the skip weight), so detail reaches the decoder without
    /// passing the latent (and, for the VQ-VAE, the codes). `w = 0` is the plain model.
    public var skips = false
    /// With `skips`: each training image draws its skip weight uniformly from
    /// `skipWeightLow...skipWeightHigh` (equal ends: that weight), so one model learns to restore
    /// from the codes alone (`w = 0`) through to trusting the input fully (`w = 1`); evaluation and
    /// restoration use `skipWeightHigh` unless a fidelity is given.
    public var skipWeightLow = 1.0
    public var skipWeightHigh = 1.0
    /// Mask-aware inpainting: the model reads, beside the image, a mask `m` `[N, H, W]` (1 = the
    /// pixel is missing, 0 = known) as one more input channel. Missing pixels are blanked (set to 0,
    /// mid-grey) before the network reads them, whatever the damaged image holds there, and the
    /// output is `m * y + (1 - m) * x`: every known pixel is the input's own (pasted back), the
    /// network's output `y` fills the missing ones. Older checkpoints, without the key, have none.
    public var maskChannel = false
    /// With `maskChannel`: what the network sees in the missing pixels, and (with `residual`) what
    /// its correction is added to there. Older checkpoints, without the key, are `.zero`.
    public var holeFill: HoleFill = .zero
    /// How `decoder/up{i}` doubles the resolution. Older checkpoints, without the key, are `.transposed`.
    public var upsampling: UpsamplingKind = .transposed
    /// The skip weights as `--skip-weight` takes them: `W`, or `LOW..HIGH`.
    public var skipWeightDescription: String {
        skipWeightLow == skipWeightHigh ? "\(skipWeightLow)" : "\(skipWeightLow)..\(skipWeightHigh)"
    }

    public init(height: Int, width: Int, channels: Int) {
        self.height = height
        self.width = width
        self.channels = channels
    }

    private enum CodingKeys: String, CodingKey {
        case model, height, width, channels, hidden, residualHidden, residualBlocks, downsamplings
        case codeDimension, codes, commitment, decay, emaEpsilon, codebook, klWeight
        case residual, detailLayers, detailChannels, skips, skipWeightLow, skipWeightHigh, maskChannel, holeFill, quantizer, levels, rotationTrick
        case codebookDimension, loss, codebooks, quantizerDropout, upsampling, lossWeighting
    }

    /// Decodes a configuration; keys added after the first version (`klWeight`, `residual`,
    /// `detailLayers`, `detailChannels`, `skips`, `skipWeightLow`, `skipWeightHigh`, `maskChannel`, `holeFill`, `quantizer`, `levels`, `rotationTrick`, `codebookDimension`, `loss`, `codebooks`, `quantizerDropout`, `upsampling`, `lossWeighting`) take their
    /// defaults when absent, so older checkpoints still load.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(ModelKind.self, forKey: .model) ?? .vqvae
        height = try c.decode(Int.self, forKey: .height)
        width = try c.decode(Int.self, forKey: .width)
        channels = try c.decode(Int.self, forKey: .channels)
        hidden = try c.decode(Int.self, forKey: .hidden)
        residualHidden = try c.decode(Int.self, forKey: .residualHidden)
        residualBlocks = try c.decode(Int.self, forKey: .residualBlocks)
        downsamplings = try c.decode(Int.self, forKey: .downsamplings)
        codeDimension = try c.decode(Int.self, forKey: .codeDimension)
        codes = try c.decode(Int.self, forKey: .codes)
        commitment = try c.decode(Double.self, forKey: .commitment)
        decay = try c.decode(Double.self, forKey: .decay)
        emaEpsilon = try c.decode(Double.self, forKey: .emaEpsilon)
        codebook = try c.decode(CodebookKind.self, forKey: .codebook)
        klWeight = try c.decodeIfPresent(Double.self, forKey: .klWeight) ?? 0.001
        residual = try c.decodeIfPresent(Bool.self, forKey: .residual) ?? false
        detailLayers = try c.decodeIfPresent(Int.self, forKey: .detailLayers) ?? 0
        detailChannels = try c.decodeIfPresent(Int.self, forKey: .detailChannels) ?? 32
        skips = try c.decodeIfPresent(Bool.self, forKey: .skips) ?? false
        skipWeightLow = try c.decodeIfPresent(Double.self, forKey: .skipWeightLow) ?? 1
        skipWeightHigh = try c.decodeIfPresent(Double.self, forKey: .skipWeightHigh) ?? 1
        maskChannel = try c.decodeIfPresent(Bool.self, forKey: .maskChannel) ?? false
        holeFill = try c.decodeIfPresent(HoleFill.self, forKey: .holeFill) ?? .zero
        quantizer = try c.decodeIfPresent(QuantizerKind.self, forKey: .quantizer) ?? .vq
        levels = try c.decodeIfPresent([Int].self, forKey: .levels) ?? []
        rotationTrick = try c.decodeIfPresent(Bool.self, forKey: .rotationTrick) ?? false
        codebookDimension = try c.decodeIfPresent(Int.self, forKey: .codebookDimension) ?? 0
        loss = try c.decodeIfPresent(ReconstructionLoss.self, forKey: .loss) ?? .mse
        codebooks = try c.decodeIfPresent(Int.self, forKey: .codebooks) ?? 1
        quantizerDropout = try c.decodeIfPresent(Bool.self, forKey: .quantizerDropout) ?? false
        upsampling = try c.decodeIfPresent(UpsamplingKind.self, forKey: .upsampling) ?? .transposed
        lossWeighting = try c.decodeIfPresent(LossWeighting.self, forKey: .lossWeighting) ?? .uniform
    }

    /// Whether the model has a codebook (the VQ-VAE with `--quantizer vq`): EMA statistics,
    /// the k-means start and dead-code restart apply to it alone.
    public var hasCodebook: Bool { model == .vqvae && quantizer != .fsq }

    /// Whether the codebook lives in a space of its own (`codebookDimension`), reached through
    /// `quantizer/project_in` and left through `quantizer/project_out`.
    public var hasCodebookProjection: Bool {
        hasCodebook && codebookDimension > 0 && codebookDimension != codeDimension
    }

    /// The dimension of the vectors the quantizer searches, of its codebook's rows and its EMA sums:
    /// `codebookDimension` with a projection, `D` otherwise.
    public var quantizerDimension: Int { hasCodebookProjection ? codebookDimension : codeDimension }

    /// Codes per latent position: one per codebook of residual VQ, otherwise 1.
    public var codesPerPosition: Int { hasCodebook ? codebooks : 1 }

    /// Sets `.fsq` with `levels`, and the code dimension and count they imply.
    public mutating func useFiniteScalarQuantizer(levels: [Int]) {
        quantizer = .fsq
        self.levels = levels
        codeDimension = levels.count
        codes = levels.reduce(1) { $0 &* $1 }
    }

    /// Channels the encoder's first layer reads: the image's, and the mask with `maskChannel`.
    public var inputChannels: Int { channels + (maskChannel ? 1 : 0) }

    /// Channels of `pre_quant`'s output: `D`, or `2D` for the VAE (mean and log-variance).
    public var latentChannels: Int { model == .vae ? 2 * codeDimension : codeDimension }

    /// Latent grid `h x w` after the stride-2 layers.
    public var latentHeight: Int { height >> downsamplings }
    public var latentWidth: Int { width >> downsamplings }

    /// Output channels of `encoder/down{i}`: `hidden / 2^(down-1-i)`.
    public func downChannels(_ i: Int) -> Int { hidden >> (downsamplings - 1 - i) }

    /// Checks that the network can be built for these images; throws a message naming the problem.
    public func validate() throws {
        guard channels == 1 || channels == 3 else {
            throw ModelError("images have \(channels) channels; 1 or 3 are supported")
        }
        guard downsamplings >= 1 && downsamplings <= 6 else {
            throw ModelError("--down must be between 1 and 6 (got \(downsamplings))")
        }
        for (name, value) in [("--hidden", hidden), ("--res-hidden", residualHidden), ("--code-dim", codeDimension), ("--codes", codes)] where value < 1 {
            throw ModelError("\(name) must be at least 1 (got \(value))")
        }
        for (name, value) in [("--hidden", hidden), ("--res-hidden", residualHidden), ("--code-dim", codeDimension), ("--codes", codes)] where value > Self.largestWidth {
            throw ModelError("\(name) must be at most \(Self.largestWidth) (got \(value))")
        }
        guard residualBlocks >= 0, residualBlocks <= 1000 else { throw ModelError("--res-blocks must be between 0 and 1000 (got \(residualBlocks))") }
        guard height <= Self.largestSide, width <= Self.largestSide else {
            throw ModelError("images of \(height)x\(width) are larger than the \(Self.largestSide)-pixel side this trainer supports")
        }
        guard hidden % (1 << (downsamplings - 1)) == 0 else {
            throw ModelError("--hidden \(hidden) must be divisible by 2^(down-1) = \(1 << (downsamplings - 1))")
        }
        let factor = 1 << downsamplings
        guard height > 0, width > 0, height % factor == 0, width % factor == 0 else {
            throw ModelError("image size \(height)x\(width) is not divisible by 2^down = \(factor); crop the images or change --down")
        }
        guard commitment >= 0 else { throw ModelError("--commitment must not be negative") }
        guard decay > 0 && decay < 1 else { throw ModelError("--decay must be in (0, 1) (got \(decay))") }
        guard emaEpsilon > 0 else { throw ModelError("--ema-eps must be positive") }
        guard klWeight >= 0, klWeight.isFinite else { throw ModelError("--kl-weight must be a finite number >= 0 (got \(klWeight))") }
        if holeFill != .zero && !maskChannel {
            throw ModelError("--hole-fill \(holeFill.rawValue) fills the pixels a mask marks missing; it needs --mask-channel")
        }
        guard detailLayers >= 0, detailLayers <= 100 else { throw ModelError("--detail-layers must be between 0 and 100 (got \(detailLayers))") }
        guard detailChannels >= 1, detailChannels <= Self.largestWidth else {
            throw ModelError("--detail-channels must be between 1 and \(Self.largestWidth) (got \(detailChannels))")
        }
        guard skipWeightLow >= 0, skipWeightLow <= skipWeightHigh, skipWeightHigh <= 1 else {
            throw ModelError("--skip-weight must be a value or a range LOW..HIGH with 0 <= LOW <= HIGH <= 1 (got \(skipWeightLow)..\(skipWeightHigh))")
        }
        guard !rotationTrick || hasCodebook else {
            throw ModelError("--rotation-trick shapes the gradient through a codebook; it needs --model vqvae --quantizer vq")
        }
        switch quantizer {
        case .vq, .cosine:
            guard levels.isEmpty else { throw ModelError("--levels is for --quantizer fsq") }
            guard quantizer == .vq || model != .vqvae || codebook == .ema else {
                throw ModelError("--quantizer cosine keeps its codebook on the unit sphere by EMA; use --codebook ema")
            }
        case .fsq:
            guard model == .vqvae else { throw ModelError("--quantizer fsq makes the codes of --model vqvae; --model \(model.rawValue) has none") }
            try FiniteScalarQuantizer.validate(levels: levels)
            guard codeDimension == levels.count, codes == levels.reduce(1, *) else {
                throw ModelError("--quantizer fsq: --levels \(levels.map(String.init).joined(separator: ",")) sets the code dimension to \(levels.count) and the codes to \(levels.reduce(1, *)); leave out --code-dim and --codes")
            }
        }
        if codebooks != 1 {
            guard hasCodebook, quantizer == .vq else {
                throw ModelError("--codebooks \(codebooks) makes residual VQ of codebooks; it needs --model vqvae --quantizer vq")
            }
            guard codebooks >= 1, codebooks <= 64 else { throw ModelError("--codebooks must be between 1 and 64 (got \(codebooks))") }
        }
        guard !quantizerDropout || (hasCodebook && codebooks > 1) else {
            throw ModelError("--quantizer-dropout drops residual VQ's later codebooks; it needs --codebooks 2 or more")
        }
        if codebookDimension != 0 {
            guard hasCodebook else {
                throw ModelError("--codebook-dim sets the dimension of a codebook; it needs --model vqvae with --quantizer vq or cosine")
            }
            guard codebookDimension >= 1, codebookDimension <= Self.largestWidth else {
                throw ModelError("--codebook-dim must be between 1 and \(Self.largestWidth) (got \(codebookDimension))")
            }
        }
        guard detailLayers == 0 || residual else {
            throw ModelError("--detail-layers needs --residual (the detail layers add a correction to the input)")
        }
    }
}
