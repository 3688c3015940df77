import Data
import Dist
import Foundation
import Model

/// The options of `vqvae train-prior`.
public struct PriorTrainingOptions: Sendable {
    /// The trained VQ-VAE whose codes the prior models.
    public var checkpoint = ""
    public var rawWeights = false
    public var data: [String] = []
    public var imagesKey = "images"
    public var out = ""
    /// The run's total steps (the cosine schedule ends there).
    public var steps = 3000
    public var globalBatchSize = 32
    /// Crop side in pixels (nil: the VQ-VAE's training size).
    public var crop: Int?
    public var cropsPerImage = 8
    public var augment: Augmentation = .flips
    public var lr = 2e-3
    public var lrMin = 2e-5
    public var warmupSteps = 100
    public var channels = 96
    public var seed: UInt64 = 1
    public var checkpointEvery = 500
    public var logEvery = 50
    /// Stop after the step that ends this many seconds of training (0: no limit).
    public var timeBudget = 0.0
    /// "auto", a path, or nil (a fresh run).
    public var resume: String?
    public var threads = 1

    public init() {}
}

/// What a prior checkpoint's `config` holds: everything that fixes the run's results.
public struct PriorRunConfiguration: Codable, Equatable, Sendable {
    public var prior: PriorConfiguration
    /// The VQ-VAE's checkpoint as given, and the fingerprint of the weights used (`ModelFingerprint`).
    public var vqCheckpoint: String
    public var vqFingerprint: String
    public var vqWeights: String
    public var crop: Int
    public var cropsPerImage: Int
    public var augment: String
    public var seed: UInt64
    public var globalBatchSize: Int
    public var steps: Int
    public var lr: Double
    public var lrMin: Double
    public var warmupSteps: Int
    public var datasetSize: Int

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }

    public static func decode(_ json: String, path: String) throws -> PriorRunConfiguration {
        do {
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            return try decoder.decode(PriorRunConfiguration.self, from: Data(json.utf8))
        } catch {
            throw TrainingError("\(path): the prior checkpoint's config cannot be read (\(error.localizedDescription))")
        }
    }
}

/// The fingerprint that names a trained model's weights in prior checkpoints and codec files: FNV-1a
/// over the float bits of every parameter and of the codebooks (EMA codebooks are parameters too).
public enum ModelFingerprint {
    public static func of(_ model: VQVAE) -> UInt64 {
        bitFingerprint(model.parameters.values.pointer, count: model.parameters.count)
    }

    public static func of(_ prior: CodePrior) -> UInt64 {
        bitFingerprint(prior.parameters.values.pointer, count: prior.parameters.count)
    }

    public static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// `vqvae train-prior`: trains a `CodePrior` on the codes a frozen VQ-VAE gives random crops of
/// `--data`, data-parallel over the ranks like `train`. Every rank encodes its share of each
/// global batch, the gradients are averaged over ranks, and every rank takes the same Adam step.
/// Each image's phase and levels are keyed by its place in the global batch, the crops by
/// (seed, epoch, index): the run does not depend on the number of ranks (up to the rounding of the
/// gradient sum) and resumes exactly.
public final class PriorTrainer {
    public let options: PriorTrainingOptions
    let communicator: Communicator
    let console: Console
    public private(set) var configuration: PriorRunConfiguration
    let files: any ImageFiles
    let dataset: any ImageSource
    let sampler: ShardedSampler
    let vq: VQVAE
    public let prior: CodePrior
    public let optimizer: Adam
    let checkpointDirectory: String
    let resumePath: String?
    public private(set) var step = 0
    var elapsedBefore = 0.0

    public init(options: PriorTrainingOptions, communicator: Communicator, console: Console) throws {
        StopRequest.install()
        self.options = options
        self.communicator = communicator
        self.console = console
        guard !options.out.isEmpty else { throw TrainingError("--out is required") }
        guard options.steps >= 0 else { throw TrainingError("--steps must not be negative") }
        guard options.globalBatchSize >= 1 else { throw TrainingError("--global-batch-size must be at least 1") }
        guard options.globalBatchSize % communicator.size == 0 else {
            throw CollectiveError("--global-batch-size \(options.globalBatchSize) is not divisible by \(communicator.size) rank(s)")
        }
        guard options.lr > 0, options.lr.isFinite, options.lrMin >= 0, options.lrMin <= options.lr else {
            throw TrainingError("--lr must be positive and --lr-min in 0...lr")
        }
        guard options.checkpointEvery >= 0, options.logEvery >= 1, options.warmupSteps >= 0, options.timeBudget >= 0 else {
            throw TrainingError("--checkpoint-every, --warmup-steps and --time-budget must not be negative, --log-every at least 1")
        }
        guard options.cropsPerImage >= 1 else { throw TrainingError("--crops-per-image must be at least 1") }
        setBLASThreads(options.threads)
        checkpointDirectory = options.out + "/checkpoints"

        let trained = try TrainedModel(checkpoint: options.checkpoint, batch: 1, weights: TrainedModel.weights(raw: options.rawWeights))
        let m = trained.configuration
        guard m.model == .vqvae, m.hasCodebook else {
            throw TrainingError("--checkpoint \(options.checkpoint) holds a '\(m.model.rawValue)\(m.model == .vqvae ? " --quantizer \(m.quantizer.rawValue)" : "")' model; the prior models the codes of a VQ-VAE with a codebook (--quantizer vq or cosine)")
        }
        guard !m.residual, !m.skips, !m.maskChannel else {
            throw TrainingError("--checkpoint \(options.checkpoint) is a restoration model (residual, skips or mask channel): its output needs its input, so its codes alone do not make an image")
        }
        let fingerprint = ModelFingerprint.hex(ModelFingerprint.of(trained.model))
        files = try openImageFiles(paths: try expandGlobs(options.data), imagesKey: options.imagesKey)

        var chosen: String?
        if communicator.isRoot, case let .checkpoint(path) = try ResumeChoice.resolve(
            options.resume, directory: checkpointDirectory, console: console, verify: { _ = try PriorCheckpoint.configuration(path: $0) }) {
            chosen = path
        }
        let savedJSON = try communicator.broadcast(string: try chosen.map { try PriorCheckpoint.configuration(path: $0) } ?? "")
        resumePath = chosen
        let crop = options.crop ?? m.height
        let factor = 1 << m.downsamplings
        if savedJSON.isEmpty {
            guard crop >= 2 * factor, crop % factor == 0 else {
                throw TrainingError("--crop \(crop) must be a multiple of 2^down = \(factor) and give a code grid of at least 2x2")
            }
        }
        var settings = savedJSON.isEmpty ? PriorRunConfiguration(
            prior: PriorConfiguration(codes: m.codes, levels: m.codebooks, channels: options.channels),
            vqCheckpoint: options.checkpoint, vqFingerprint: fingerprint, vqWeights: trained.weights.rawValue, crop: crop,
            cropsPerImage: options.cropsPerImage, augment: options.augment.rawValue, seed: options.seed,
            globalBatchSize: options.globalBatchSize, steps: options.steps, lr: options.lr, lrMin: options.lrMin,
            warmupSteps: options.warmupSteps, datasetSize: 0) : try PriorRunConfiguration.decode(savedJSON, path: chosen ?? "the checkpoint")
        if !savedJSON.isEmpty {
            guard settings.vqFingerprint == fingerprint else {
                throw TrainingError("\(chosen ?? "the checkpoint") is a prior of another model's codes (fingerprint \(settings.vqFingerprint)); --checkpoint \(options.checkpoint) has \(fingerprint)")
            }
            guard settings.globalBatchSize == options.globalBatchSize else {
                throw TrainingError("\(chosen ?? "the checkpoint") was trained with --global-batch-size \(settings.globalBatchSize); resume with the same")
            }
            settings.steps = options.steps
        }
        dataset = try Trainer.trainingImages(files: files, crop: settings.crop, augmentation: Augmentation(rawValue: settings.augment) ?? .flips,
                                             cropsPerImage: settings.cropsPerImage, seed: settings.seed, downsamplings: m.downsamplings)
        guard dataset.channels == m.channels else {
            throw TrainingError("--data holds \(dataset.channels)-channel images; \(options.checkpoint) was trained on \(m.channels)")
        }
        guard dataset.count >= settings.globalBatchSize else {
            throw TrainingError("--data gives \(dataset.count) crops per epoch, fewer than one global batch of \(settings.globalBatchSize); raise --crops-per-image or lower --global-batch-size")
        }
        if !savedJSON.isEmpty, settings.datasetSize != dataset.count {
            throw TrainingError("the prior checkpoint's data stream covers \(settings.datasetSize) crops, but --data gives \(dataset.count); resume with the same data")
        }
        settings.datasetSize = dataset.count
        configuration = settings
        sampler = try ShardedSampler(datasetSize: dataset.count, globalBatchSize: settings.globalBatchSize, seed: settings.seed,
                                     shuffle: true, tail: .drop, rank: communicator.rank, worldSize: communicator.size)
        var c = m
        c.height = settings.crop
        c.width = settings.crop
        vq = try VQVAE(configuration: c, maxBatch: sampler.localBatchSize)
        vq.copyState(from: trained.model)
        prior = try CodePrior(configuration: settings.prior, maxBatch: sampler.localBatchSize,
                              height: c.latentHeight, width: c.latentWidth)
        optimizer = Adam(count: prior.parameters.count, learningRate: Float(settings.lr))
    }

    var schedule: LearningRateSchedule {
        LearningRateSchedule(kind: .cosine, base: Float(configuration.lr), warmupSteps: configuration.warmupSteps,
                             minimum: Float(configuration.lrMin), decaySteps: configuration.steps)
    }

    func writeCheckpoint(started: Double) throws -> String? {
        guard communicator.isRoot else { return nil }
        return try PriorCheckpoint.write(directory: checkpointDirectory, prior: prior, optimizer: optimizer, state: PriorCheckpointState(
            step: Int64(step), worldSize: communicator.size, configuration: configuration.json(),
            elapsedSeconds: elapsedBefore + monotonicSeconds() - started))
    }

    /// Trains to `--steps` (or the time budget, or a stop signal) and returns the last step's
    /// bits per code (mean over ranks) and the last checkpoint (rank 0).
    @discardableResult
    public func run() throws -> (bits: Double, checkpoint: String?) {
        if communicator.isRoot {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: options.out, isDirectory: &isFolder), !isFolder.boolValue {
                throw TrainingError("--out \(options.out) exists and is not a folder")
            }
            try FileManager.default.createDirectory(atPath: checkpointDirectory, withIntermediateDirectories: true)
            if resumePath == nil, let newest = Checkpoint.files(in: checkpointDirectory).first {
                throw TrainingError("\(checkpointDirectory) already holds checkpoints of an earlier run (\(newest)); continue it with --resume auto or choose a new --out")
            }
            if let resumePath {
                let loaded = try PriorCheckpoint.load(path: resumePath, into: prior, optimizer: optimizer)
                step = Int(loaded.step)
                elapsedBefore = loaded.elapsedSeconds
                console.info("resuming from \(resumePath) at step \(step) (written by \(loaded.worldSize) rank(s))")
            } else {
                prior.initialize(seed: configuration.seed)
            }
        }
        try communicator.broadcast(prior.parameters.values.pointer, count: prior.parameters.count)
        try communicator.broadcast(optimizer.firstMoment.pointer, count: prior.parameters.count)
        try communicator.broadcast(optimizer.secondMoment.pointer, count: prior.parameters.count)
        var counters = [Int64(step), optimizer.step]
        try counters.withUnsafeMutableBytes { try communicator.broadcast(bytes: $0.baseAddress!, count: $0.count) }
        (step, optimizer.step) = (Int(counters[0]), counters[1])

        let cfg = configuration, local = sampler.localBatchSize
        console.info("vqvae train-prior: codes of \(cfg.vqCheckpoint) (\(cfg.prior.levels) codebook\(cfg.prior.levels > 1 ? "s" : "") of \(cfg.prior.codes)) on \(files.count) images, random \(cfg.crop)x\(cfg.crop) crops (grids of \(prior.height)x\(prior.width)); \(prior.parameters.count) parameters, \(cfg.prior.channels) channels; \(communicator.size) rank(s) x batch \(local)")
        let images = FloatBuffer(count: local * dataset.imageElements)
        vq.evaluationCodebooks = cfg.prior.levels
        let started = monotonicSeconds()
        var lastBits = Double.nan
        var windowStart = started, windowSteps = 0
        var lastCheckpoint: String?
        let first = step
        while step < options.steps {
            let samples = sampler.localSamples(step: step)
            try dataset.read(samples: samples, into: images.pointer)
            _ = vq.forward(images: images.pointer, batch: local, training: false)
            // The prior reads the model's code indices in place (backward reads them again).
            let codes = UnsafePointer(vq.codeIndices.baseAddress!)
            let draws = CodePrior.draws(key: NoiseKey(seed: cfg.seed, step: UInt64(step), firstImage: communicator.rank * local),
                                        batch: local, levels: cfg.prior.levels)
            prior.parameters.zeroGradients()
            var figures = [prior.forward(codes: codes, draws: draws, batch: local)]
            prior.backward()
            figures += prior.lastLevelBits.enumerated().map { $1.isNaN ? 0 : $1 * Double(prior.lastLevelCounts[$0]) }
            figures += prior.lastLevelCounts.map(Double.init)
            if communicator.size > 1 {
                try communicator.allReduceSum(prior.parameters.gradients.pointer, count: prior.parameters.count)
                let scale = 1 / Float(communicator.size)
                for i in 0..<prior.parameters.count { prior.parameters.gradients[i] *= scale }
                try figures.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0.baseAddress!, count: $0.count) }
                figures[0] /= Double(communicator.size)
            }
            optimizer.learningRate = schedule.rate(completedSteps: step)
            optimizer.update(parameters: prior.parameters.values.pointer, gradients: prior.parameters.gradients.pointer)
            step += 1
            windowSteps += 1
            lastBits = figures[0] / log(2)
            let stopping = StopRequest.received || (options.timeBudget > 0 && monotonicSeconds() - started >= options.timeBudget)
            let last = step == options.steps || stopping
            if step == first + 1 || step % options.logEvery == 0 || last {
                let l = cfg.prior.levels
                let perLevel = (0..<l).map { figures[1 + l + $0] > 0 ? String(format: "%.3f", figures[1 + $0] / figures[1 + l + $0]) : "-" }
                let now = monotonicSeconds()
                console.info(String(format: "step %d/%d  bits/code %.4f  by level %@  lr %.3g  %.1f steps/s", step, options.steps, lastBits,
                                    perLevel.joined(separator: " "), Double(optimizer.learningRate), Double(windowSteps) / max(now - windowStart, 1e-9)))
                windowStart = now
                windowSteps = 0
            }
            if (options.checkpointEvery > 0 && step % options.checkpointEvery == 0) || last {
                if let path = try writeCheckpoint(started: started) { lastCheckpoint = path }
            }
            if stopping && step < options.steps {
                console.info("stopped at step \(step) (\(StopRequest.received ? "signal" : "--time-budget")); continue with --resume auto")
                break
            }
        }
        if step == first, step >= options.steps {
            console.info("the checkpoint is already at step \(step): nothing to train (raise --steps to continue)")
        }
        guard try communicator.allAgree(on: ModelFingerprint.of(prior)) else {
            throw CollectiveError("the ranks' priors differ after step \(step)")
        }
        if let lastCheckpoint { console.info("checkpoint: \(lastCheckpoint)") }
        return (lastBits, lastCheckpoint)
    }
}
