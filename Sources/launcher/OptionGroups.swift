import ArgumentParser
import Data
import Model
import Training

extension ModelKind: ExpressibleByArgument {}
extension CodebookKind: ExpressibleByArgument {}
extension QuantizerKind: ExpressibleByArgument {}
extension ReconstructionLoss: ExpressibleByArgument {}
extension UpsamplingKind: ExpressibleByArgument {}
extension LossWeighting: ExpressibleByArgument {}
extension HoleFill: ExpressibleByArgument {}
extension EpochTail: ExpressibleByArgument {}
extension Augmentation: ExpressibleByArgument {}
extension TrainingOptions.CodebookStart: ExpressibleByArgument {}
extension TrainingOptions.OptimizerKind: ExpressibleByArgument {}
extension TrainingOptions.AllReduceLayout: ExpressibleByArgument {}
extension LearningRateSchedule.Kind: ExpressibleByArgument {}

/// The defaults of spec/model.md, as `ModelConfiguration` holds them.
private let modelDefaults = ModelConfiguration(height: 0, width: 0, channels: 0)

/// Architecture flags of spec/model.md, shared by every command that builds a model.
struct ArchitectureOptions: ParsableArguments {
    @Option(help: "Model: vqvae (vector-quantised codes), vae (Gaussian latent with a KL term) or ae (plain autoencoder); the same encoder and decoder.")
    var model: ModelKind = modelDefaults.model
    @Option(parsing: .unconditional, help: "Hidden channels H of the encoder and decoder.")
    var hidden = modelDefaults.hidden
    @Option(name: .customLong("res-hidden"), parsing: .unconditional, help: "Hidden channels R inside each residual block.")
    var residualHidden = modelDefaults.residualHidden
    @Option(name: .customLong("res-blocks"), parsing: .unconditional, help: "Residual blocks B in the encoder and in the decoder.")
    var residualBlocks = modelDefaults.residualBlocks
    @Option(parsing: .unconditional, help: "Stride-2 layers: the latent grid is (H/2^down) x (W/2^down).")
    var down = modelDefaults.downsamplings
    @Option(name: .customLong("code-dim"), parsing: .unconditional, help: "Dimension D of each code vector.")
    var codeDimension = modelDefaults.codeDimension
    @Option(parsing: .unconditional, help: "Codebook size K.")
    var codes = modelDefaults.codes
    @Option(parsing: .unconditional, help: "Commitment weight beta.")
    var commitment = modelDefaults.commitment
    @Option(parsing: .unconditional, help: "EMA decay gamma of the codebook statistics.")
    var decay = modelDefaults.decay
    @Option(name: .customLong("ema-eps"), parsing: .unconditional, help: "Laplace smoothing epsilon of the EMA counts.")
    var emaEpsilon = modelDefaults.emaEpsilon
    @Option(help: "Codebook learning: ema (moving averages) or grad (trained with a codebook loss).")
    var codebook: CodebookKind = modelDefaults.codebook
    @Option(help: ArgumentHelp("--model vqvae: how codes are made: vq (nearest codebook row), cosine (nearest unit codebook row to the unit latent, EMA codebook) or fsq (finite scalar quantization: each latent channel rounded to one of --levels values; no codebook).",
                               discussion: "fsq sets the code dimension to the number of levels and the codes to their product; it needs no codebook start, EMA or restart."))
    var quantizer: QuantizerKind = modelDefaults.quantizer
    @Option(help: "--quantizer fsq: the level count of each latent channel, comma-separated (e.g. 8,5,5,5: 4 channels, 1000 codes; 8,5,5,5 is the default).")
    var levels: LevelList?
    @Flag(name: .customLong("rotation-trick"), help: "--quantizer vq: pass the decoder's gradient to the encoder through the rotation and scaling that carry z onto its code (Fifty et al. 2024), instead of straight through.")
    var rotationTrick = modelDefaults.rotationTrick
    @Option(name: .customLong("codebook-dim"), parsing: .unconditional, help: ArgumentHelp(
        "--quantizer vq or cosine: a codebook of this dimension d, reached through a learned linear map D -> d (quantizer/project_in) and left through d -> D (quantizer/project_out), as ViT-VQGAN's low-dimensional codes (0 or D: none).",
        discussion: "Distances, the commitment loss, the EMA, the k-means start and restarts all work in d dimensions."))
    var codebookDimension = modelDefaults.codebookDimension
    @Option(parsing: .unconditional, help: "--quantizer vq: residual VQ with this many codebooks of --codes rows, each quantizing what the ones before it left (a latent position then has one code per codebook); 1: one codebook.")
    var codebooks = modelDefaults.codebooks
    @Flag(name: .customLong("quantizer-dropout"), help: "--codebooks N: each training image uses only its first n codebooks, n drawn from 1...N, so one model decodes at any number of them (eval --codebooks Q).")
    var quantizerDropout = modelDefaults.quantizerDropout
    @Option(help: "The reconstruction term of the training loss: mse, or charbonnier (sqrt((x_hat - x)^2 + 1e-6), a smoothed L1 that weighs lightly damaged images as much as heavily damaged ones).")
    var loss: ReconstructionLoss = modelDefaults.loss
    @Option(name: .customLong("loss-weight"), help: "How the loss weighs a batch's images: uniform, or damage (each image's term times 0.1 / max(r, 0.01), r the RMS of its damage, so lightly damaged images weigh more; for models trained on a range of damage, such as noise:0.02~0.2), or log (each image's mean error t enters as 1e-4 log(1 + t / 1e-4), so every image's relative error counts alike, as the mean PSNR over images does).")
    var lossWeighting: LossWeighting = modelDefaults.lossWeighting
    @Option(name: .customLong("kl-weight"), parsing: .unconditional, help: "--model vae: weight of the KL term; the KL is summed over the latent and divided by the pixel elements N*H*W*C, like the reconstruction mean.")
    var klWeight = modelDefaults.klWeight
    @Flag(help: "Residual restoration: the network's output is added to its (damaged) input, so what needs no repair passes through unchanged.")
    var residual = modelDefaults.residual
    @Option(name: .customLong("detail-layers"), parsing: .unconditional, help: "With --residual: 3x3 layers at full resolution that read the input beside the decoder's output and add a per-pixel correction (0: none).")
    var detailLayers = modelDefaults.detailLayers
    @Option(name: .customLong("detail-channels"), parsing: .unconditional, help: "Channels of the detail layers.")
    var detailChannels = modelDefaults.detailChannels
    @Flag(help: "U-Net skips: each transposed convolution of the decoder also reads the encoder's activation of the same resolution, so detail need not pass the latent or the codes.")
    var skips = modelDefaults.skips
    @Option(name: .customLong("skip-weight"), help: "With --skips: the weight w of the encoder's activations, W or a range LOW..HIGH in [0, 1] from which each training image draws its own (0..1 trains one model for every `restore --fidelity`).")
    var skipWeight = SkipWeight(low: modelDefaults.skipWeightLow, high: modelDefaults.skipWeightHigh)
    @Flag(name: .customLong("mask-channel"), help: ArgumentHelp(
        "Mask-aware inpainting: the model reads the mask of the missing pixels as one more input channel, sees them blanked (or filled, --hole-fill), and keeps every other pixel of its input.",
        discussion: "Training takes the mask from the --corrupt items mask and holes (the only items allowed with it); `vqvae restore --mask MASK.png` takes a user's own."))
    var maskChannel = modelDefaults.maskChannel
    @Option(name: .customLong("hole-fill"), help: "With --mask-channel: what the network sees in the missing pixels (and, with --residual, corrects): zero; smooth (a membrane interpolation of the known pixels, close to harmonic inpainting); or plate (smooth with a thin plate's coarse shape, which carries slopes across large holes).")
    var holeFill: HoleFill = modelDefaults.holeFill
    @Option(help: "How the decoder doubles the resolution: transposed (4x4 transposed convolutions, the spec's) or resize (nearest-neighbour upsampling and a 3x3 convolution, which cannot draw the transposed convolutions' checkerboard on smooth areas).")
    var upsample: UpsamplingKind = modelDefaults.upsampling

    /// The configuration for images of `height x width x channels`.
    func configuration(height: Int, width: Int, channels: Int) -> ModelConfiguration {
        var c = ModelConfiguration(height: height, width: width, channels: channels)
        c.model = model
        c.hidden = hidden
        c.residualHidden = residualHidden
        c.residualBlocks = residualBlocks
        c.downsamplings = down
        c.codeDimension = codeDimension
        c.codes = codes
        c.commitment = commitment
        c.decay = decay
        c.emaEpsilon = emaEpsilon
        c.codebook = codebook
        c.klWeight = klWeight
        c.residual = residual
        c.detailLayers = detailLayers
        c.detailChannels = detailChannels
        c.skips = skips
        c.skipWeightLow = skipWeight.low
        c.skipWeightHigh = skipWeight.high
        c.maskChannel = maskChannel
        c.holeFill = holeFill
        c.quantizer = quantizer
        c.rotationTrick = rotationTrick
        c.codebookDimension = codebookDimension
        c.loss = loss
        c.lossWeighting = lossWeighting
        c.codebooks = codebooks
        c.quantizerDropout = quantizerDropout
        c.upsampling = upsample
        if quantizer == .fsq { c.useFiniteScalarQuantizer(levels: levels?.values ?? [8, 5, 5, 5]) } else { c.levels = levels?.values ?? [] }
        return c
    }
}

/// `--levels 8,5,5,5`: positive integers separated by commas (checked by the model's validation).
struct LevelList: ExpressibleByArgument, CustomStringConvertible {
    var values: [Int]

    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false).map { String($0.filter { !$0.isWhitespace }) }
        let values = parts.compactMap { Int($0) }
        guard !parts.isEmpty, values.count == parts.count else { return nil }
        self.values = values
    }

    var description: String { values.map(String.init).joined(separator: ",") }
}

/// `--skip-weight W` or `LOW..HIGH` (checked against [0, 1] by the model's validation).
struct SkipWeight: ExpressibleByArgument, CustomStringConvertible {
    var low: Double
    var high: Double

    init(low: Double, high: Double) {
        (self.low, self.high) = (low, high)
    }

    init?(argument: String) {
        if let dots = argument.firstRange(of: "..") {
            guard let low = Double(argument[..<dots.lowerBound]), let high = Double(argument[dots.upperBound...]) else { return nil }
            (self.low, self.high) = (low, high)
        } else {
            guard let value = Double(argument) else { return nil }
            (self.low, self.high) = (value, value)
        }
    }

    var description: String { low == high ? "\(low)" : "\(low)..\(high)" }
    var defaultValueDescription: String { description }
}

/// `--images-key`.
struct ImagesKeyOption: ParsableArguments {
    @Option(name: .customLong("images-key"), help: "Name of the images dataset in each HDF5 file.")
    var imagesKey = "images"
}

/// `--data FILE...` and `--images-key`.
struct DatasetOptions: ParsableArguments {
    @Option(name: .long, parsing: .upToNextOption, help: "HDF5 dataset file(s), concatenated in order.")
    var data: [String] = []
    @OptionGroup var key: ImagesKeyOption

    var imagesKey: String { key.imagesKey }
}

/// `--checkpoint`, the trained model a command applies, and `--raw-weights`.
struct CheckpointOption: ParsableArguments {
    @Option(help: "Checkpoint (HDF5) of the trained model: see the command's overview for what it needs.")
    var checkpoint: String
    @Flag(name: .customLong("raw-weights"), help: "Use the checkpoint's trained weights even when it holds their moving average (train --weight-ema), which is used by default.")
    var rawWeights = false
}

/// `--force`, shared by the commands that write files.
struct ForceOption: ParsableArguments {
    @Flag(help: "Replace outputs that exist already (each file is replaced atomically). An output that is one of the inputs is refused even so.")
    var force = false
}

/// `--threads`.
struct ThreadOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "BLAS threads per rank.")
    var threads = 1
}
