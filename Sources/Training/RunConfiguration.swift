import Data
import Foundation
import Model

/// The resolved configuration of a run, stored as JSON (`config`) in every checkpoint.
public struct RunConfiguration: Codable, Sendable {
    public struct Optimizer: Codable, Sendable {
        /// `adam` or `adamw`.
        public var name = "adam"
        public var lr: Float
        public var beta1: Double
        public var beta2: Double
        public var eps: Double
        public var weightDecay: Double
        // The schedule and clipping; nil in checkpoints written before they existed, which
        // trained with a constant rate and no clipping.
        public var warmupSteps: Int?
        public var lrSchedule: String?
        public var lrMin: Float?
        public var lrDecaySteps: Int?
        public var lrStepEvery: Int?
        public var lrStepFactor: Double?
        public var clipGradNorm: Double?

        /// The learning rate of every step.
        public var schedule: LearningRateSchedule {
            LearningRateSchedule(kind: LearningRateSchedule.Kind(rawValue: lrSchedule ?? "constant") ?? .constant, base: lr,
                                 warmupSteps: warmupSteps ?? 0, minimum: lrMin ?? 0, decaySteps: lrDecaySteps ?? 0,
                                 stepEvery: lrStepEvery ?? 0, stepFactor: lrStepFactor ?? 0.1)
        }
        /// AdamW's decoupled weight decay.
        public var decoupled: Bool { name == "adamw" }
    }
    public struct DataSettings: Codable, Sendable {
        public var files: [String]
        public var imagesKey: String
        public var globalBatchSize: Int
        public var shuffle: Bool
        public var datasetSize: Int
        public var tail: String
        public var corrupt: String
        /// `--crop` and `--augment`: the side of the random training crops and what is done to
        /// them; nil for whole images (and in checkpoints written before crops existed).
        public var crop: Int?
        public var augment: String?
        /// `--crops-per-image`: samples per image and epoch with `crop` (nil: 1).
        public var cropsPerImage: Int?
        /// What identifies the data (nil in checkpoints written before it was recorded).
        public var identity: DatasetIdentity?
        /// `--accumulate`: micro-batches per rank and step of the run that wrote the checkpoint
        /// (nil in older files: 1). Like the number of ranks it changes only the summation order,
        /// so a resume may give another value; without one it keeps this.
        public var accumulate: Int?
    }
    /// The codebook controls that change how training proceeds.
    public struct CodebookControls: Codable, Equatable, Sendable {
        public var kmeansInit: Bool
        public var kmeansIterations: Int
        public var deadCodeThreshold: Double

        public init(kmeansInit: Bool, kmeansIterations: Int, deadCodeThreshold: Double) {
            self.kmeansInit = kmeansInit
            self.kmeansIterations = kmeansIterations
            self.deadCodeThreshold = deadCodeThreshold
        }
    }
    public var model: ModelConfiguration
    public var optimizer: Optimizer
    public var data: DataSettings
    public var seed: UInt64
    public var steps: Int
    /// Nil in checkpoints written before the controls were recorded; a resume then takes them
    /// from its options.
    public var codebook: CodebookControls?
    /// `--weight-ema`: the decay of the moving average of the parameters (nil: off). A resume
    /// keeps it.
    public var weightEma: Double?

    /// Micro-batches per rank and step.
    public var microBatches: Int { data.accumulate ?? 1 }

    /// A fresh run's configuration from `options` and the data it reads.
    /// (`data.identity` is filled in by the trainer once the data is known to fit in memory.)
    init(options: TrainingOptions, files: any ImageFiles, dataset: any ImageSource, corruptions: CorruptionPipeline) {
        var model = options.architecture
        (model.height, model.width, model.channels) = (dataset.height, dataset.width, dataset.channels)
        self.model = model
        optimizer = Optimizer(name: options.optimizer.rawValue, lr: options.lr, beta1: options.beta1, beta2: options.beta2,
                              eps: options.adamEpsilon, weightDecay: options.weightDecay, warmupSteps: options.warmupSteps,
                              lrSchedule: options.lrSchedule.rawValue, lrMin: options.lrMin,
                              lrDecaySteps: options.lrDecaySteps ?? options.steps, lrStepEvery: options.lrStepEvery,
                              lrStepFactor: options.lrStepFactor, clipGradNorm: options.clipGradNorm)
        data = DataSettings(files: files.paths, imagesKey: options.imagesKey, globalBatchSize: options.globalBatchSize,
                            shuffle: options.shuffle, datasetSize: dataset.count, tail: options.tail.rawValue,
                            corrupt: corruptions.description, crop: options.crop,
                            augment: options.crop == nil ? nil : options.augment.rawValue,
                            cropsPerImage: options.crop == nil ? nil : options.cropsPerImage, identity: nil,
                            accumulate: options.accumulate)
        seed = options.seed
        steps = options.steps
        codebook = CodebookControls(options, model: model)
        weightEma = options.weightEMA
    }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }

    /// The configuration stored in a checkpoint; `path` names it in the error.
    public static func decode(_ json: String, path: String) throws -> RunConfiguration {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do {
            return try decoder.decode(RunConfiguration.self, from: Data(json.utf8))
        } catch {
            throw TrainingError("\(path): its configuration cannot be read (\(error)); was it written by another version?")
        }
    }

    /// The configuration of a resumed run: this one (the checkpoint's), with only what may change
    /// on resume taken from `options` (`steps`, and `lr` when given). Every given setting that
    /// contradicts the checkpoint is named in one refusal.
    func resumed(with options: TrainingOptions, checkpoint path: String) throws -> RunConfiguration {
        var next = self
        let cli = options.architecture
        // A checkpoint written before the controls were recorded trained without them (the
        // defaults of that time: Sonnet start, no re-seeding) unless the command line says so.
        let controls = codebook ?? CodebookControls(kmeansInit: false, kmeansIterations: options.kmeansIterations,
                                                    deadCodeThreshold: options.deadCodeThreshold ?? 0)
        var checks: [(flag: String, given: String, saved: String)] = [
            ("--model", cli.model.rawValue, model.model.rawValue),
            ("--hidden", "\(cli.hidden)", "\(model.hidden)"),
            ("--res-hidden", "\(cli.residualHidden)", "\(model.residualHidden)"),
            ("--res-blocks", "\(cli.residualBlocks)", "\(model.residualBlocks)"),
            ("--down", "\(cli.downsamplings)", "\(model.downsamplings)"),
            ("--code-dim", "\(cli.codeDimension)", "\(model.codeDimension)"),
            ("--codebook-dim", "\(cli.codebookDimension)", "\(model.codebookDimension)"),
            ("--codebooks", "\(cli.codebooks)", "\(model.codebooks)"),
            ("--codes", "\(cli.codes)", "\(model.codes)"),
            ("--commitment", "\(cli.commitment)", "\(model.commitment)"),
            ("--decay", "\(cli.decay)", "\(model.decay)"),
            ("--ema-eps", "\(cli.emaEpsilon)", "\(model.emaEpsilon)"),
            ("--codebook", cli.codebook.rawValue, model.codebook.rawValue),
            ("--quantizer", cli.quantizer.rawValue, model.quantizer.rawValue),
            ("--levels", cli.levels.map(String.init).joined(separator: ","), model.levels.map(String.init).joined(separator: ",")),
            ("--kl-weight", "\(cli.klWeight)", "\(model.klWeight)"),
            ("--loss", cli.loss.rawValue, model.loss.rawValue),
            ("--loss-weight", cli.lossWeighting.rawValue, model.lossWeighting.rawValue),
            ("--upsample", cli.upsampling.rawValue, model.upsampling.rawValue),
            ("--hole-fill", cli.holeFill.rawValue, model.holeFill.rawValue),
            ("--detail-layers", "\(cli.detailLayers)", "\(model.detailLayers)"),
            ("--detail-channels", "\(cli.detailChannels)", "\(model.detailChannels)"),
            ("--skip-weight", cli.skipWeightDescription, model.skipWeightDescription),
            ("--global-batch-size", "\(options.globalBatchSize)", "\(data.globalBatchSize)"),
            ("--seed", "\(options.seed)", "\(seed)"),
            ("--tail", options.tail.rawValue, data.tail),
            ("--corrupt", try CorruptionPipeline(spec: options.corrupt).description, data.corrupt),
            ("--crop", options.crop.map { "\($0)" } ?? "", data.crop.map { "\($0)" } ?? ""),
            ("--augment", options.augment.rawValue, data.augment ?? "none"),
            ("--crops-per-image", "\(options.cropsPerImage)", "\(data.cropsPerImage ?? 1)"),
            ("--images-key", options.imagesKey, data.imagesKey),
            ("--beta1", "\(options.beta1)", "\(optimizer.beta1)"),
            ("--beta2", "\(options.beta2)", "\(optimizer.beta2)"),
            ("--adam-eps", "\(options.adamEpsilon)", "\(optimizer.eps)"),
            ("--weight-decay", "\(options.weightDecay)", "\(optimizer.weightDecay)"),
            ("--optimizer", options.optimizer.rawValue, optimizer.name),
            ("--warmup-steps", "\(options.warmupSteps)", "\(optimizer.warmupSteps ?? 0)"),
            ("--lr-schedule", options.lrSchedule.rawValue, optimizer.lrSchedule ?? "constant"),
            ("--lr-min", "\(options.lrMin)", "\(optimizer.lrMin ?? 0)"),
            ("--lr-decay-steps", "\(options.lrDecaySteps ?? 0)", "\(optimizer.lrDecaySteps ?? 0)"),
            ("--lr-step-every", "\(options.lrStepEvery)", "\(optimizer.lrStepEvery ?? 0)"),
            ("--lr-step-factor", "\(options.lrStepFactor)", "\(optimizer.lrStepFactor ?? 0.1)"),
            ("--clip-grad-norm", "\(options.clipGradNorm)", "\(optimizer.clipGradNorm ?? 0)"),
            ("--kmeans-iterations", "\(options.kmeansIterations)", "\(controls.kmeansIterations)"),
            ("--dead-code-threshold", "\(options.deadCodeThreshold ?? 0)", "\(controls.deadCodeThreshold)"),
            ("--codebook-init", options.codebookInit.rawValue, controls.kmeansInit ? "kmeans" : "sonnet"),
            ("--weight-ema", options.weightEMA.map { "\($0)" } ?? "", weightEma.map { "\($0)" } ?? "(off)"),
        ]
        if options.given("--residual") { checks.append(("--residual", "", model.residual ? "" : "(off)")) }
        if options.given("--skips") { checks.append(("--skips", "", model.skips ? "" : "(off)")) }
        if options.given("--quantizer-dropout") { checks.append(("--quantizer-dropout", "", model.quantizerDropout ? "" : "(off)")) }
        if options.given("--rotation-trick") { checks.append(("--rotation-trick", "", model.rotationTrick ? "" : "(off)")) }
        if options.given("--mask-channel") { checks.append(("--mask-channel", "", model.maskChannel ? "" : "(off)")) }
        if options.given("--kmeans-init") { checks.append(("--kmeans-init", "", controls.kmeansInit ? "" : "(off)")) }
        if options.given("--no-shuffle") { checks.append(("--no-shuffle", "", data.shuffle ? "(off)" : "")) }
        let contradictions = checks.filter { options.given($0.flag) && $0.given != $0.saved }.map { check -> String in
            let given = check.given.isEmpty ? check.flag : "\(check.flag) \(check.given)"
            let saved = check.saved == "(off)" ? "without \(check.flag)"
                : check.saved.isEmpty ? "without \(check.flag)" : "with \(check.flag) \(check.saved)"
            return "\(given) contradicts \(path), which was trained \(saved)"
        }
        if !contradictions.isEmpty {
            let advice = contradictions.count == 1 ? "drop the flag to resume" : "drop these flags to resume"
            throw TrainingError(contradictions.joined(separator: "; ") + "; \(advice), or start a new --out")
        }
        if options.given("--lr") { next.optimizer.lr = options.lr }
        next.codebook = controls
        next.steps = options.steps
        next.data.accumulate = options.given("--accumulate") ? options.accumulate : microBatches
        return next
    }
}

extension TrainingOptions {
    /// These options with every setting that `configuration` stores replaced by its value: the
    /// architecture, optimiser, schedule, data stream, seed and codebook controls a run trains
    /// with (a resumed run's come from its checkpoint), the defaults that depend on other settings
    /// resolved (`lrDecaySteps`, `deadCodeThreshold`; `codebookInit` is `sonnet` where no k-means
    /// start applies) and `data` the files the patterns matched. The rest (`out`, intervals,
    /// threads, `resume`) stays as given. A fresh run from the result trains the same run.
    public func resolved(by configuration: RunConfiguration) -> TrainingOptions {
        var o = self
        o.architecture = configuration.model
        (o.architecture.height, o.architecture.width, o.architecture.channels) = (0, 0, 0)
        let optimizer = configuration.optimizer
        o.optimizer = OptimizerKind(rawValue: optimizer.name) ?? .adam
        o.lr = optimizer.lr
        o.beta1 = optimizer.beta1
        o.beta2 = optimizer.beta2
        o.adamEpsilon = optimizer.eps
        o.weightDecay = optimizer.weightDecay
        o.warmupSteps = optimizer.warmupSteps ?? 0
        o.lrSchedule = LearningRateSchedule.Kind(rawValue: optimizer.lrSchedule ?? "constant") ?? .constant
        o.lrMin = optimizer.lrMin ?? 0
        o.lrDecaySteps = optimizer.lrDecaySteps
        o.lrStepEvery = optimizer.lrStepEvery ?? 0
        o.lrStepFactor = optimizer.lrStepFactor ?? 0.1
        o.clipGradNorm = optimizer.clipGradNorm ?? 0
        let data = configuration.data
        o.data = data.files
        o.imagesKey = data.imagesKey
        o.globalBatchSize = data.globalBatchSize
        o.shuffle = data.shuffle
        o.tail = EpochTail(rawValue: data.tail) ?? .drop
        o.corrupt = data.corrupt
        o.crop = data.crop
        o.augment = data.augment.flatMap(Augmentation.init(rawValue:)) ?? .none
        o.cropsPerImage = data.cropsPerImage ?? 1
        o.accumulate = configuration.microBatches
        o.weightEMA = configuration.weightEma
        o.seed = configuration.seed
        o.steps = configuration.steps
        let controls = configuration.codebook ?? RunConfiguration.CodebookControls(self, model: configuration.model)
        o.codebookInit = controls.kmeansInit ? .kmeans : .sonnet
        o.kmeansIterations = controls.kmeansIterations
        o.deadCodeThreshold = controls.deadCodeThreshold
        return o
    }
}

extension RunConfiguration.CodebookControls {
    /// A fresh run's controls: the k-means start applies to the VQ-VAE only, and the dead-code
    /// threshold defaults to `TrainingOptions.defaultDeadCodeThreshold` with the k-means start of
    /// the EMA codebook, to 0 (off) otherwise.
    init(_ options: TrainingOptions, model: ModelConfiguration) {
        let kmeans = options.codebookInit == .kmeans && model.hasCodebook
        let restartable = kmeans && model.codebook == .ema
        self.init(kmeansInit: kmeans, kmeansIterations: options.kmeansIterations,
                  deadCodeThreshold: options.deadCodeThreshold ?? (restartable ? TrainingOptions.defaultDeadCodeThreshold : 0))
    }
}

/// Expands shell-style patterns (`train-*.h5`) that the shell left alone, in sorted order; a
/// pattern that matches nothing is an error, a plain path is kept as given.
public func expandGlobs(_ paths: [String]) throws -> [String] {
    var result: [String] = []
    for path in paths {
        guard path.contains(where: { "*?[".contains($0) }) else { result.append(path); continue }
        var matches = glob_t()
        defer { globfree(&matches) }
        guard glob(path, 0, nil, &matches) == 0, matches.gl_pathc > 0 else {
            throw TrainingError("--data \(path): no file matches this pattern")
        }
        result += (0..<Int(matches.gl_pathc)).compactMap { matches.gl_pathv[$0].map { String(cString: $0) } }.sorted()
    }
    return result
}
