import Data
import Model

/// Everything `vqvae train` can be told, as a plain value: the library's input, filled by the
/// command line or by Swift code. Defaults are the command's defaults.
public struct TrainingOptions: Sendable {
    public enum OptimizerKind: String, Sendable, CaseIterable {
        case adam, adamw
    }
    /// How the gradient buckets are summed over the ranks (`--allreduce`): one all-reduce over
    /// every rank, or within each node, among the nodes and back (`hierarchical`); `auto` takes
    /// the hierarchical form when the ranks span several nodes, some node has more than one and
    /// the nodes do not hold consecutive ranks (the flat form is as fast when they do).
    public enum AllReduceLayout: String, Sendable, CaseIterable {
        case auto, flat, hierarchical
    }
    /// The codebook start (`--codebook-init`).
    public enum CodebookStart: String, Sendable, CaseIterable {
        case kmeans, sonnet
    }

    /// HDF5 dataset files (shell patterns allowed), concatenated in order.
    public var data: [String] = []
    public var imagesKey = "images"
    /// Output folder for checkpoints, metrics and samples.
    public var out = ""
    /// The total number of optimiser steps of the run.
    public var steps = 1000
    public var globalBatchSize = 32
    /// `--accumulate N`: micro-batches per rank and step; each rank's `G/W` images are run as `N`
    /// micro-batches of `G/(W N)` and their gradients summed before the one all-reduce of the
    /// step, so the model's buffers hold `G/(W N)` images.
    public var accumulate = 1
    public var lr: Float = 3e-4
    public var beta1 = 0.9
    public var beta2 = 0.999
    public var adamEpsilon = 1e-8
    public var weightDecay = 0.0
    /// `adam` (weight decay as L2 on the gradient) or `adamw` (decoupled weight decay).
    public var optimizer: OptimizerKind = .adam
    /// Learning-rate schedule (`LearningRateSchedule`): linear warmup over `warmupSteps`, then
    /// `lrSchedule`; `lrDecaySteps` nil means the run's `steps`.
    public var warmupSteps = 0
    public var lrSchedule: LearningRateSchedule.Kind = .constant
    public var lrMin: Float = 0
    public var lrDecaySteps: Int?
    public var lrStepEvery = 0
    public var lrStepFactor = 0.1
    /// Global gradient-norm clipping of the averaged gradient (0: off).
    public var clipGradNorm = 0.0
    /// Corruption spec applied to the inputs (`Corruption.swift`), e.g. `noise:0.1,mask:0.25`.
    public var corrupt = ""
    /// Train on random `crop x crop` crops of the images (`CroppedImages`); needed for images of
    /// different sizes. Nil: whole images.
    public var crop: Int?
    /// What is done to each training crop (`--augment`): nothing, random mirrors, or the 8
    /// symmetries of the square.
    public var augment: Augmentation = .none
    /// With `crop`: crops of every image per epoch (`--crops-per-image`).
    public var cropsPerImage = 1
    /// Batches prepared ahead on a background thread (0: read on the training thread).
    public var prefetch = 2
    public var tail: EpochTail = .drop
    public var seed: UInt64 = 0
    public var shuffle = true
    /// The architecture; its height, width and channels are taken from the data.
    public var architecture = ModelConfiguration(height: 0, width: 0, channels: 0)
    /// How the VQ-VAE's codebook starts: k-means centres of the first global batch's encoder
    /// outputs (the default), or spec/model.md's Sonnet start for exact comparison with reference
    /// implementations. Models without a codebook ignore it.
    public var codebookInit: CodebookStart = .kmeans
    /// `codebookInit == .kmeans`, for callers that think of the start as on or off.
    public var kmeansInit: Bool {
        get { codebookInit == .kmeans }
        set { codebookInit = newValue ? .kmeans : .sonnet }
    }
    public var kmeansIterations = 10
    /// Dead-code restart threshold on the EMA count `N_k`; nil takes the default:
    /// `defaultDeadCodeThreshold` with the k-means start of a VQ-VAE with the EMA codebook, 0 (off)
    /// otherwise (the Sonnet start re-seeds nothing).
    public var deadCodeThreshold: Double?
    /// The default dead-code threshold: a code whose moving-average count is below one vector per
    /// global batch is re-seeded. With the default global batch (32 images of 8x8 latents, 2,048
    /// vectors for 512 codes, 4 per code on average) that is a quarter of a fair share: rare codes
    /// stay, codes that stopped being chosen (`N_k` halves in 69 steps at decay 0.99) come back.
    public static let defaultDeadCodeThreshold = 1.0
    public var timeBudget = 0.0
    public var logEvery = 50
    public var validationData: String?
    public var validationEvery = 500
    public var validationLimit = 1000
    public var sampleEvery = 0
    public var checkpointEvery = 500
    /// `auto` or a checkpoint's path; nil for a fresh run.
    public var resume: String?
    /// On resume, continue although the data differs from what the checkpoint records.
    public var allowOtherData = false
    public var keep = 0
    /// `--keep-best METRIC` (`val_psnr`, `val_ssim`, `val_mse`): keep `<out>/checkpoints/best.h5`,
    /// the checkpoint of the best validation score so far (nil: off).
    public var keepBest: String?
    /// `--weight-ema DECAY`: keep a moving average of the parameters (nil: off).
    public var weightEMA: Double?
    /// `--tensorboard`: also write the records of `metrics.jsonl` to a TensorBoard event file.
    public var tensorboard = false
    public var threads = 1
    public var bucketMegabytes = 1.0
    public var allReduce = AllReduceLayout.auto
    /// `--ranks-per-node N`: nodes of N consecutive ranks for `--allreduce`, instead of the ranks
    /// that share memory as the launcher placed them (nil).
    public var ranksPerNode: Int?
    public var syncCheckEvery = 100
    public var skipNonFinite = false
    public var watchdog = 300.0
    /// The command-line names (`--lr`, `--no-shuffle`, ...) of the settings the user gave, as
    /// opposed to defaults: on resume, a given setting that contradicts the checkpoint is refused
    /// and a given `--lr` replaces the stored one.
    public var givenFlags: Set<String> = []

    public init() {}

    /// Refuses impossible values, naming the flag.
    public func validate() throws {
        func check(_ condition: Bool, _ message: String) throws {
            if !condition { throw TrainingError(message) }
        }
        try check(!data.isEmpty, "give at least one dataset with --data FILE")
        try check(!out.isEmpty, "give an output folder with --out DIR")
        try check(steps >= 0, "--steps must not be negative")
        try check(globalBatchSize >= 1, "--global-batch-size must be at least 1")
        try check(accumulate >= 1, "--accumulate must be at least 1 (got \(accumulate))")
        if let weightEMA {
            try check(weightEMA > 0 && weightEMA < 1, "--weight-ema must be a decay in (0, 1), e.g. 0.999 (got \(weightEMA))")
        }
        if let keepBest {
            try check(BestMetric(rawValue: keepBest) != nil,
                      "--keep-best takes \(BestMetric.allCases.map(\.rawValue).joined(separator: ", ")) (got '\(keepBest)')")
            try check(validationData != nil, "--keep-best \(keepBest) needs --val FILE: it keeps the checkpoint of the best validation score")
        }
        try check(lr > 0 && lr.isFinite, "--lr must be a positive number")
        try check(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "--beta1 and --beta2 must be in [0, 1)")
        try check(adamEpsilon > 0, "--adam-eps must be positive")
        try check(weightDecay >= 0 && weightDecay.isFinite, "--weight-decay must not be negative")
        try check(warmupSteps >= 0, "--warmup-steps must not be negative")
        try check(lrMin >= 0 && lrMin.isFinite && lrMin <= lr, "--lr-min must be between 0 and --lr")
        if let lrDecaySteps { try check(lrDecaySteps >= 1, "--lr-decay-steps must be at least 1") }
        try check(lrSchedule != .step || lrStepEvery >= 1, "--lr-schedule step needs --lr-step-every N with N at least 1")
        try check(lrStepEvery >= 0, "--lr-step-every must be at least 1")
        try check(lrStepFactor > 0 && lrStepFactor <= 1, "--lr-step-factor must be in (0, 1]")
        for (flag, schedule) in [("--lr-min", LearningRateSchedule.Kind.cosine), ("--lr-decay-steps", .cosine),
                                 ("--lr-step-every", .step), ("--lr-step-factor", .step)]
        where given(flag) && (resume == nil || given("--lr-schedule")) {
            try check(lrSchedule == schedule, "\(flag) applies to --lr-schedule \(schedule.rawValue), not \(lrSchedule.rawValue)")
        }
        if let crop { try check(crop >= 1, "--crop must be at least 1 (got \(crop))") }
        try check(augment == .none || crop != nil || resume != nil, "--augment \(augment.rawValue) turns training crops; it needs --crop S")
        try check(cropsPerImage >= 1, "--crops-per-image must be at least 1")
        try check(cropsPerImage == 1 || crop != nil || resume != nil, "--crops-per-image takes several crops of every image; it needs --crop S")
        if architecture.maskChannel && resume == nil, let pipeline = try? CorruptionPipeline(spec: corrupt) {
            try check(pipeline.onlyFillsMissingPixels,
                      "--mask-channel keeps every pixel not marked missing, so --corrupt must hold only mask and holes items (got '\(corrupt)'), e.g. --corrupt holes:8")
        }
        if architecture.quantizer == .fsq {
            for flag in ["--codes", "--code-dim"] where given(flag) {
                throw TrainingError("--quantizer fsq: --levels sets the code dimension and the number of codes; leave out \(flag)")
            }
        }
        try check(clipGradNorm >= 0 && clipGradNorm.isFinite, "--clip-grad-norm must be 0 (off) or a positive number")
        try check(kmeansIterations >= 0, "--kmeans-iterations must not be negative")
        if let deadCodeThreshold {
            try check(deadCodeThreshold >= 0 && deadCodeThreshold.isFinite, "--dead-code-threshold must be 0 (off) or a positive number")
        }
        try check(logEvery >= 1, "--log-every must be at least 1")
        try check(checkpointEvery >= 0, "--checkpoint-every must not be negative")
        try check(keep >= 0, "--keep must not be negative")
        try check(prefetch >= 0 && prefetch <= 64, "--prefetch must be between 0 and 64")
        try check(threads >= 1, "--threads must be at least 1")
        try check(bucketMegabytes > 0, "--bucket-mb must be positive")
        if let ranksPerNode { try check(ranksPerNode >= 1, "--ranks-per-node must be at least 1") }
        try check(syncCheckEvery >= 0, "--sync-check-every must not be negative")
        try check(watchdog >= 0 && watchdog.isFinite, "--watchdog must be 0 (off) or a number of seconds")
    }

    func given(_ flag: String) -> Bool { givenFlags.contains(flag) }
}

/// What `--keep-best` ranks checkpoints by: a validation figure, higher or lower being better.
public enum BestMetric: String, Sendable, CaseIterable {
    case valPSNR = "val_psnr"
    case valSSIM = "val_ssim"
    case valMSE = "val_mse"

    /// The figure of a validation.
    public func score(_ figures: EvaluationFigures) -> Double {
        switch self {
        case .valPSNR: return figures.psnr
        case .valSSIM: return figures.ssim
        case .valMSE: return figures.meanSquaredError
        }
    }

    /// Whether `score` beats `best` (strictly: of equal scores the earlier is kept; NaN never wins).
    public func improves(_ score: Double, on best: Double) -> Bool {
        switch self {
        case .valPSNR, .valSSIM: return score > best
        case .valMSE: return score < best
        }
    }
}
