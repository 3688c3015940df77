import Data
import Dist
import Foundation
import Model

/// The data-parallel training loop: every rank runs the same model on its share of each global
/// batch; gradients are averaged and the codebook's EMA statistics summed over ranks before the
/// update, so every rank holds the same parameters and codebook.
///
/// Build one on every rank with the same options (a plain process is a world of one) and call
/// `run()`; it returns what the run did, on every rank.
public final class Trainer {
    public let options: TrainingOptions
    let communicator: Communicator
    let console: Console
    /// The files of `--data`, in either layout.
    let files: any ImageFiles
    /// What the model trains on: the files' images, or with `--crop` their crops.
    let dataset: any ImageSource
    let corruptions: CorruptionPipeline
    let sampler: ShardedSampler
    /// The replicated state: model, optimiser, step.
    public let state: TrainingState
    public private(set) var configuration: RunConfiguration
    let checkpointDirectory: String
    let metricsPath: String
    /// The checkpoint this run continues from (`--resume`), chosen on rank 0; nil on other ranks
    /// and for a fresh start.
    let resumePath: String?
    /// `--val`, opened and checked before training starts (centre crops with `--crop`, when its
    /// images are not of the model's size).
    let validationSet: (any ImageSource)?
    let resuming: Bool
    /// Seconds trained before this run (the resumed checkpoint's `elapsed_seconds`; rank 0).
    var elapsedBefore = 0.0
    /// When this run's training started (monotonic seconds).
    var trainingStart = 0.0
    /// `--watchdog`: ends this rank when a phase of training stalls (nil with `--watchdog 0`).
    let watchdog: Watchdog?
    /// A fault to inject (`VQVAE_FAULT`, see FaultInjection.swift); nil in normal runs.
    let faults: FaultInjection?
    /// Renders `resolvedOptions` as the text of `<out>/run.toml` (its path the second argument),
    /// which rank 0 writes once the run is set up (its output folder prepared, its start loaded)
    /// and before the first step; nil writes no such file.
    public var runFile: ((TrainingOptions, String) throws -> String)?
    /// The options this run trains with: `options` with the stored settings of a resumed run and
    /// every derived default resolved (`TrainingOptions.resolved(by:)`).
    public var resolvedOptions: TrainingOptions { options.resolved(by: configuration) }
    /// `--keep-best`: the metric, and the best score so far with its step (rank 0; restored from
    /// the resumed checkpoint).
    let bestMetric: BestMetric?
    public private(set) var best: BestScore?

    public var model: VQVAE { state.model }
    var globalBatchSize: Int { configuration.data.globalBatchSize }
    /// `--accumulate`: micro-batches per rank and step.
    var microBatches: Int { configuration.microBatches }
    /// The run's codebook controls: stored in the checkpoint, so a resume keeps them.
    var controls: RunConfiguration.CodebookControls { configuration.codebook ?? .init(options, model: configuration.model) }
    var seed: UInt64 { configuration.seed }

    /// What a finished `run()` did.
    public struct Summary: Sendable {
        /// The step the run started from (0, or the resumed checkpoint's).
        public var firstStep: Int
        /// The step after the last one trained.
        public var lastStep: Int
        /// The last step's loss averaged over ranks (NaN when no step was trained).
        public var finalLoss: Losses
        /// Steps whose update was skipped for a non-finite loss (`skipNonFinite`).
        public var skippedSteps: Int
        /// Codes re-seeded by dead-code restart, over the whole run.
        public var restartedCodes: Int
        /// The last validation's figures, when `validationData` was given.
        public var validation: EvaluationFigures?
        /// The last checkpoint written (rank 0; empty elsewhere).
        public var checkpoint: String
        /// Whether a signal or the time budget ended the run early.
        public var stoppedEarly: Bool
        /// `--keep-best`: the best validation score so far and its step (rank 0; nil elsewhere and
        /// before the first validation).
        public var best: BestScore?
    }

    public init(options: TrainingOptions, communicator: Communicator, console: Console) throws {
        // From here on SIGTERM and SIGINT ask for a stop after the first step instead of killing
        // the rank: start-up (reading the data, the k-means start) can take a while, and Slurm
        // may signal a job at any moment of it.
        StopRequest.install()
        try options.validate()
        self.options = options
        self.communicator = communicator
        self.console = console
        bestMetric = options.keepBest.flatMap(BestMetric.init(rawValue:))
        setBLASThreads(options.threads)
        checkpointDirectory = options.out + "/checkpoints"
        metricsPath = options.out + "/metrics.jsonl"
        watchdog = options.watchdog > 0 ? Watchdog(seconds: options.watchdog, console: console) : nil
        faults = try FaultInjection.fromEnvironment(rank: communicator.rank)
        if let faults { console.warning("injecting a fault (\(FaultInjection.variable)): \(faults)") }

        let parsedCorruptions = try CorruptionPipeline(spec: options.corrupt)
        files = try openImageFiles(paths: try expandGlobs(options.data), imagesKey: options.imagesKey)

        // --resume: rank 0 picks the checkpoint and every rank takes its configuration.
        var chosen: String?
        if communicator.isRoot, case let .checkpoint(path) = try ResumeChoice.resolve(
            options.resume, directory: checkpointDirectory, console: console) {
            chosen = path
        }
        let savedJSON = try communicator.broadcast(string: chosen.map { try Checkpoint.configuration(path: $0) } ?? "")
        resumePath = chosen
        resuming = !savedJSON.isEmpty
        var resumedConfiguration: RunConfiguration?
        if resuming {
            let saved = try RunConfiguration.decode(savedJSON, path: chosen ?? "the checkpoint")
            resumedConfiguration = try saved.resumed(with: options, checkpoint: chosen ?? "the checkpoint")
        }
        // The crop of a resumed run is the checkpoint's.
        let crop = resumedConfiguration.map { $0.data.crop } ?? options.crop
        let augmentation = try resumedConfiguration.map { saved -> Augmentation in
            guard let name = saved.data.augment else { return .none }
            guard let known = Augmentation(rawValue: name) else {
                throw TrainingError("\(chosen ?? "the checkpoint"): unknown augment '\(name)' in its configuration; was it written by another version?")
            }
            return known
        } ?? options.augment
        let cropsPerImage = resumedConfiguration.map { $0.data.cropsPerImage ?? 1 } ?? options.cropsPerImage
        dataset = try Self.trainingImages(files: files, crop: crop, augmentation: augmentation, cropsPerImage: cropsPerImage,
                                          seed: resumedConfiguration?.seed ?? options.seed,
                                          downsamplings: resumedConfiguration?.model.downsamplings ?? options.architecture.downsamplings)
        if let resumed = resumedConfiguration {
            configuration = resumed
            let m = configuration.model
            guard (m.height, m.width, m.channels) == (dataset.height, dataset.width, dataset.channels) else {
                throw TrainingError("the checkpoint was trained on \(m.height)x\(m.width)x\(m.channels) images, but --data holds \(dataset.height)x\(dataset.width)x\(dataset.channels)" + (crop == nil ? "" : " crops"))
            }
            guard configuration.data.datasetSize == dataset.count else {
                throw TrainingError("the checkpoint's data stream covers \(configuration.data.datasetSize) images, but --data holds \(dataset.count); resume with the same dataset")
            }
            configuration.data.files = files.paths
        } else {
            configuration = RunConfiguration(options: options, files: files, dataset: dataset, corruptions: parsedCorruptions)
        }
        let settings = configuration
        let split = settings.data.globalBatchSize, ranks = communicator.size, micro = settings.microBatches
        if micro > 1 && split % (ranks * micro) != 0 {
            // Every rank finds this alike: one line, from rank 0.
            throw CollectiveError("--global-batch-size \(split) is not divisible by \(ranks) rank(s) x --accumulate \(micro) = \(ranks * micro) micro-batches; choose a multiple of \(ranks * micro)")
        }
        if crop != nil && dataset.count < settings.data.globalBatchSize {
            throw TrainingError("--data holds \(files.count) images and \(dataset.count) crops per epoch, fewer than one global batch of \(settings.data.globalBatchSize); take several crops of every image with --crops-per-image K (e.g. \((settings.data.globalBatchSize + files.count - 1) / files.count * 4)) or lower --global-batch-size")
        }
        sampler = try ShardedSampler(datasetSize: dataset.count, globalBatchSize: settings.data.globalBatchSize,
                                     seed: settings.seed, shuffle: settings.data.shuffle,
                                     tail: EpochTail(rawValue: settings.data.tail) ?? .drop,
                                     rank: communicator.rank, worldSize: communicator.size)
        // The data pipeline's share, checked before anything is allocated: the sampler's index
        // and the batches in flight (float inputs, damaged copies, prefetched batches). The
        // model's own memory is checked when it is built (`ModelConfiguration.checkFitsInMemory`).
        let bytesPerElement = 4 * (4 + 2 * max(options.prefetch, 0))
        if let fixed = files as? ImageDataset {
            try fixed.checkFitsInMemory(batch: sampler.localBatchSize, bytesPerImageElement: bytesPerElement, cropSize: crop)
        } else if let variable = files as? VariableSizeDataset, let crop {
            try variable.checkFitsInMemory(batch: sampler.localBatchSize, bytesPerImageElement: bytesPerElement, cropSize: crop)
        }
        configuration.data.identity = try Self.checkedIdentity(of: files, stored: resuming ? configuration.data.identity : nil,
                                                               resuming: resuming, checkpoint: chosen ?? "the checkpoint",
                                                               options: options, console: console)
        try settings.model.validate()
        let controls = settings.codebook ?? .init(options, model: settings.model)
        if controls.deadCodeThreshold != 0 {
            guard controls.deadCodeThreshold > 0, controls.deadCodeThreshold.isFinite else {
                throw TrainingError("--dead-code-threshold must be a positive number (got \(controls.deadCodeThreshold))")
            }
            guard settings.model.hasCodebook, settings.model.codebook == .ema else {
                throw TrainingError("--dead-code-threshold re-seeds the EMA codebook; it needs --model vqvae --quantizer vq --codebook ema")
            }
        }
        validationSet = try Self.openValidationSet(options: options, model: settings.model, cropping: crop != nil)
        guard options.sampleEvery >= 0 else { throw TrainingError("--sample-every must not be negative") }
        let askedForKMeans = options.given("--kmeans-init") || (options.given("--codebook-init") && options.codebookInit == .kmeans)
        if (controls.kmeansInit || askedForKMeans) && !settings.model.hasCodebook {
            throw TrainingError("--kmeans-init initialises a codebook; " + (settings.model.model == .vqvae ? "--quantizer \(settings.model.quantizer.rawValue)" : "--model \(settings.model.model.rawValue)") + " has none")
        }
        corruptions = try CorruptionPipeline(spec: settings.data.corrupt)
        // With --accumulate the model holds one micro-batch: G/(W N) images.
        let model = try VQVAE(configuration: settings.model, maxBatch: sampler.localBatchSize / micro)
        let o = settings.optimizer
        state = TrainingState(model: model, optimizer: Adam(count: model.parameters.count, learningRate: o.lr, beta1: o.beta1,
                                                            beta2: o.beta2, epsilon: o.eps, weightDecay: o.weightDecay,
                                                            decoupled: o.decoupled),
                              weightAverage: settings.weightEma.map { WeightAverage(decay: $0, count: model.parameters.count) })
    }

    /// What identifies `dataset`; on resume, first refuses data other than the checkpoint's
    /// (`stored`) unless `allowOtherData`.
    static func checkedIdentity(of dataset: any ImageFiles, stored: DatasetIdentity?, resuming: Bool, checkpoint: String,
                                options: TrainingOptions, console: Console) throws -> DatasetIdentity {
        let identity = try dataset.identity()
        guard resuming else { return identity }
        guard let stored else {
            console.warning("\(checkpoint) does not record what identifies its data; it cannot be checked that --data is the same")
            return identity
        }
        let differences = stored.differences(from: identity).joined(separator: "; ")
        guard !differences.isEmpty else { return identity }
        guard options.allowOtherData else {
            throw TrainingError("--data is not the data \(checkpoint) was trained on (\(differences)); resume with the same files, or pass --allow-other-data to continue on these")
        }
        console.warning("continuing on other data than the checkpoint's (\(differences)), as --allow-other-data asks")
        return identity
    }

    /// What the model trains on: the images of `files`, or with `crop` their random crops (needed
    /// for images of different sizes), checked against the model's divisibility.
    static func trainingImages(files: any ImageFiles, crop: Int?, augmentation: Augmentation, cropsPerImage: Int = 1,
                               seed: UInt64, downsamplings: Int) throws -> any ImageSource {
        guard let crop else {
            guard let fixed = files as? ImageDataset else {
                throw TrainingError("\(files.paths[0]) holds images of different sizes; train on random crops of them with --crop S (e.g. --crop 64)")
            }
            return fixed
        }
        let factor = 1 << max(0, min(downsamplings, 30))
        guard crop >= 1, crop % factor == 0 else {
            throw TrainingError("--crop \(crop) is not divisible by 2^down = \(factor); choose a multiple of \(factor)")
        }
        return try CroppedImages(files: files, size: crop, seed: seed, augmentation: augmentation, cropsPerImage: cropsPerImage)
    }

    /// `--val`: opened and checked against the model's image size. Images of another size (or of
    /// different sizes) are read as their centre crops of the model's size when training takes crops.
    static func openValidationSet(options: TrainingOptions, model m: ModelConfiguration, cropping: Bool) throws -> (any ImageSource)? {
        guard let val = options.validationData else { return nil }
        let files = try openImageFiles(paths: [val], imagesKey: options.imagesKey)
        let validation: any ImageSource
        if let fixed = files as? ImageDataset, fixed.height == m.height, fixed.width == m.width {
            validation = fixed
        } else if cropping, m.height == m.width {
            validation = try CroppedImages(files: files, size: m.height, what: "--val")
        } else if let fixed = files as? ImageDataset {
            validation = fixed
        } else {
            throw TrainingError("--val \(val) holds images of different sizes; the model trains on whole \(m.height)x\(m.width) images (validate on such files when training with --crop)")
        }
        guard (validation.height, validation.width, validation.channels) == (m.height, m.width, m.channels) else {
            throw TrainingError("--val \(val) holds \(validation.height)x\(validation.width)x\(validation.channels) images; the model trains on \(m.height)x\(m.width)x\(m.channels)")
        }
        guard m.height >= ImageMetrics.ssimWindow && m.width >= ImageMetrics.ssimWindow else {
            throw TrainingError("--val reports SSIM, which needs images of at least \(ImageMetrics.ssimWindow)x\(ImageMetrics.ssimWindow) pixels")
        }
        guard options.validationEvery >= 1, options.validationLimit >= 0 else {
            throw TrainingError("--val-every must be at least 1 and --val-limit not negative")
        }
        return validation
    }

    /// Creates the output folders on rank 0 and refuses to mix with an earlier run's checkpoints.
    func prepareOutput() throws {
        guard communicator.isRoot else { return }
        let files = FileManager.default
        var isFolder: ObjCBool = false
        if files.fileExists(atPath: options.out, isDirectory: &isFolder), !isFolder.boolValue {
            throw TrainingError("--out \(options.out) exists and is not a folder")
        }
        do {
            try files.createDirectory(atPath: checkpointDirectory, withIntermediateDirectories: true)
        } catch {
            throw TrainingError("cannot create \(checkpointDirectory): \(error.localizedDescription)")
        }
        let existing = Checkpoint.files(in: checkpointDirectory)
        if let newest = existing.first, options.resume == nil {
            throw TrainingError("\(checkpointDirectory) already holds checkpoints of an earlier run (\(newest)); continue it with --resume auto or choose a new --out")
        }
        for name in Checkpoint.removeUnfinished(in: checkpointDirectory) {
            console.warning("removed \(checkpointDirectory)/\(name), a checkpoint write that never finished")
        }
        if resuming && files.fileExists(atPath: metricsPath) { return }  // appended to
        guard files.createFile(atPath: metricsPath, contents: nil) else {
            throw TrainingError("cannot write \(metricsPath)")
        }
    }

    /// Rank 0 writes the checkpoint of the current state (as `name`, default `step-XXXXXXXX.h5`);
    /// returns its path there (nil elsewhere).
    func writeCheckpoint(name: String? = nil) throws -> String? {
        guard communicator.isRoot else { return nil }
        let step = state.step
        let samplesSeen = Int64(step) * Int64(globalBatchSize)
        let epoch = Int64(sampler.epoch(ofStep: step))
        let metadata = CheckpointState(
            step: Int64(step), epoch: epoch, samplesSeen: samplesSeen, worldSize: communicator.size,
            configuration: configuration.json(),
            data: ["seed": Int64(bitPattern: seed), "shuffle": configuration.data.shuffle ? 1 : 0,
                   "wrap": sampler.tail == .wrap ? 1 : 0,
                   "samples_seen": samplesSeen, "epoch": epoch, "dataset_size": Int64(dataset.count),
                   "global_batch_size": Int64(globalBatchSize)],
            elapsedSeconds: elapsedBefore + (trainingStart > 0 ? monotonicSeconds() - trainingStart : 0), best: best)
        watchdog?.enter("writing the checkpoint", step: step)
        let path = try Checkpoint.write(directory: checkpointDirectory, name: name, model: state.model, optimizer: state.optimizer,
                                        weightAverage: state.weightAverage, state: metadata,
                                        halfWritten: { self.faults?.sleep(.sleepInCheckpointWrite, step: step) })
        if options.keep > 0 { pruneCheckpoints(keeping: options.keep) }
        return path
    }

    /// Rank 0 loads the resumed checkpoint or initialises from the seed; then every rank takes
    /// rank 0's state.
    func startState() throws {
        if communicator.isRoot {
            if let resumePath {
                let loaded = try Checkpoint.load(path: resumePath, into: state.model, optimizer: state.optimizer,
                                                 weightAverage: state.weightAverage)
                state.step = Int(loaded.step)
                elapsedBefore = loaded.elapsedSeconds
                if let bestMetric, let saved = loaded.best {
                    if saved.metric == bestMetric.rawValue {
                        best = saved
                    } else {
                        console.warning("\(resumePath) kept the best \(saved.metric) (step \(saved.step)); --keep-best \(bestMetric.rawValue) starts its own, and the next validation replaces \(checkpointDirectory)/\(Checkpoint.bestFileName)")
                    }
                }
                console.info("resuming from \(resumePath) at step \(loaded.step) (samples_seen \(loaded.samplesSeen), written by \(loaded.worldSize) rank(s))")
            } else {
                state.model.initialize(seed: seed)
            }
        }
        try state.broadcast(from: communicator)
    }

    @discardableResult
    public func run() throws -> Summary {
        watchdog?.start()
        defer { watchdog?.enter("shutting down", step: 0) }
        try prepareOutput()
        try communicator.barrier()
        try startState()
        let firstStep = state.step
        var summary = Summary(firstStep: firstStep, lastStep: firstStep,
                              finalLoss: Losses(reconstruction: .nan, commitment: .nan, total: .nan), skippedSteps: 0,
                              restartedCodes: 0, validation: nil, checkpoint: "", stoppedEarly: false, best: best)
        if resuming && firstStep >= options.steps {
            console.info("the checkpoint is already at step \(firstStep) and --steps \(options.steps) is the run's total: nothing to train; ask for more (e.g. --steps \(firstStep + 1000)) to continue")
            return summary
        }
        if communicator.isRoot, let runFile {
            let path = options.out + "/run.toml"
            try OutputFile.writeText(try runFile(resolvedOptions, path), path: path)
        }

        // Batches are read, converted and corrupted on a background thread.
        let prefetcher = BatchPrefetcher(dataset: dataset, sampler: sampler, corruptions: corruptions, seed: seed,
                                         firstStep: firstStep, endStep: max(options.steps, firstStep + 1), depth: options.prefetch,
                                         masks: model.configuration.maskChannel)
        defer { prefetcher.stop() }
        let codebook = CodebookCollectives(model: model, communicator: communicator, globalBatchSize: globalBatchSize,
                                           localBatchSize: sampler.localBatchSize, microBatches: microBatches, seed: seed)
        let c0 = model.configuration
        if controls.kmeansInit && !resuming {
            let placed = try codebook.initializeWithKMeans(firstBatch: try prefetcher.batch(step: 0), iterations: controls.kmeansIterations)
            if placed < c0.codes && communicator.isRoot {
                console.warning("the first global batch gives \(placed) distinct latent vectors for \(c0.codes) codes: k-means places \(placed) of them; the other \(c0.codes - placed) start unused"
                    + (controls.deadCodeThreshold > 0 ? " and are re-seeded by dead-code restart" : " (raise --global-batch-size, lower --codes or keep dead-code restart on)"))
            }
        }
        // The weight average of a fresh run starts at the weights it trains from (the k-means
        // codebook of --codebook grad included); its first update replaces them (WeightAverage).
        if !resuming { state.weightAverage?.reset(to: model.parameters.values) }

        let c = model.configuration
        let what = (dataset as? CroppedImages).map { cropped in
            "\(files.count) images" + (files.fixedSize.map { " \($0.height)x\($0.width)x\(c.channels)" } ?? " of different sizes")
                + ", random \(cropped.size)x\(cropped.size) crops" + (cropped.augmentation == .none ? "" : " (\(cropped.augmentation.rawValue))")
                + (cropped.cropsPerImage == 1 ? "" : ", \(cropped.cropsPerImage) per image and epoch")
        } ?? "\(dataset.count) images \(c.height)x\(c.width)x\(c.channels)"
        let layout = try gradientLayout()
        // Ranks whose OpenBLAS picked another kernel (nodes of different CPUs, or another
        // OPENBLAS_CORETYPE) round their products differently: say so once, from rank 0.
        let blas = blasCoreName()
        if try !communicator.allAgree(on: blas.utf8.reduce(bitFingerprintBasis) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }) {
            console.warning("the ranks' OpenBLAS kernels differ (rank 0: \(blas)), so they round differently and results are not those of one kernel; export OPENBLAS_CORETYPE with one kernel every node has (e.g. Haswell) to all ranks")
        }
        console.info("vqvae train: \(what) from \(files.paths.joined(separator: " ")); "
            + "\(model.parameters.count) parameters, "
            + (c.hasCodebook ? (c.codebooks > 1 ? "residual VQ\(c.quantizerDropout ? " (quantizer dropout)" : "") of \(c.codebooks) " : "")
                + "codebook\(c.codebooks > 1 ? "s" : "") \(c.codes)x\(c.quantizerDimension) (\(c.codebook.rawValue))"
                + (c.hasCodebookProjection ? " through \(c.codeDimension) -> \(c.quantizerDimension) -> \(c.codeDimension) projections" : "") + "; "
                : c.model == .vqvae ? "FSQ levels \(c.levels.map(String.init).joined(separator: ",")) (\(c.codes) codes); "
                : "\(c.model.rawValue), latent of \(c.latentChannels) channels; ")
            + (c.residual ? "residual\(c.detailLayers > 0 ? " with \(c.detailLayers) detail layers of \(c.detailChannels)" : ""); " : "")
            + (c.skips ? "U-Net skips (weight \(c.skipWeightDescription)); " : "")
            + (c.maskChannel ? "mask channel; " : "")
            + (c.upsampling == .resize ? "resize upsampling; " : "")
            + "\(communicator.size) rank(s) x batch \(sampler.localBatchSize)"
            + (layout.map { " (\($0.nodes) nodes of up to \($0.largestNode) ranks, hierarchical all-reduce)" } ?? "")
            + (microBatches > 1 ? " (\(microBatches) micro-batches of \(sampler.localBatchSize / microBatches))" : "")
            + (state.weightAverage.map { "; weight EMA \($0.decay)" } ?? "") + "; BLAS \(blasCoreName())")
        if options.steps == 0 {
            if let path = try writeCheckpoint() { console.info("checkpoint: \(path)"); summary.checkpoint = path }
            return summary
        }

        let local = sampler.localBatchSize
        let runner = TrainingStep(state: state, communicator: communicator, bucketMegabytes: options.bucketMegabytes, seed: seed,
                                  layout: layout)
        runner.watchdog = watchdog
        runner.faults = faults
        runner.schedule = configuration.optimizer.schedule
        runner.clipNorm = configuration.optimizer.clipGradNorm ?? 0
        if microBatches > 1 && controls.deadCodeThreshold > 0 {
            // Dead-code restart draws from the whole global batch's encoder outputs.
            runner.afterMicroBatchForward = { codebook.keep(microBatch: $0) }
        }
        let events = communicator.isRoot && options.tensorboard
            ? try TensorBoardEvents(folder: options.out, resumedStep: firstStep > 0 ? firstStep + 1 : nil) : nil
        let metrics = try MetricsLog(path: communicator.isRoot ? metricsPath : nil, events: events)

        let start = monotonicSeconds()
        trainingStart = start
        var windowStart = start
        var windowSteps = 0
        for step in firstStep..<options.steps {
            watchdog?.enter("reading the batch", step: step + 1)
            let batch = try prefetcher.batch(step: step)
            if let faults, faults.fires(.nanData, step: step + 1) {
                batch.clean[0] = .nan
                batch.damaged?[0] = .nan
            }
            let done = step + 1
            let outcome = try runner.run(input: batch.input, masks: batch.masks, target: batch.target, batch: local, number: done,
                                         microBatches: microBatches, skipNonFinite: options.skipNonFinite,
                                         stopRequested: StopRequest.received || budgetReached(since: start))
            let loss = outcome.loss, stopping = outcome.stopRequested
            let statistics = model.quantizer?.batchStatistics
            var restarted = 0, candidates = 0
            if outcome.updated {
                summary.finalLoss = loss
                if controls.deadCodeThreshold > 0 {
                    (restarted, candidates) = try codebook.restartDeadCodes(threshold: controls.deadCodeThreshold, step: done)
                    summary.restartedCodes += restarted
                }
            } else {
                console.warning("\(outcome.reason) at step \(done); skipping its update (--skip-nonfinite)")
                summary.skippedSteps += 1
            }
            summary.lastStep = done
            let last = done == options.steps || stopping
            if (options.syncCheckEvery > 0 && done % options.syncCheckEvery == 0) || last {
                watchdog?.enter("the check that all ranks agree", step: done)
                try state.checkRanksAgree(communicator, step: done)
            }
            windowSteps += 1
            if done == firstStep + 1 || done % options.logEvery == 0 || last {
                let now = monotonicSeconds()
                var record = StepRecord(step: done, loss: loss, imagesPerSecond: Double(windowSteps * globalBatchSize) / max(now - windowStart, 1e-9),
                                        elapsedSeconds: elapsedBefore + now - start, samplesSeen: done * globalBatchSize,
                                        learningRate: outcome.learningRate, gradientNorm: outcome.gradientNorm)
                if c.model == .vqvae, let statistics, let quantizer = model.quantizer {
                    // Residual VQ: every codebook's codes together (level l's code k as l*K + k).
                    var counts = [Float](repeating: 0, count: c.codes * quantizer.levels)
                    for level in 0..<quantizer.levels {
                        for k in 0..<c.codes { counts[level * c.codes + k] = quantizer.statistics(level: level)[k] }
                    }
                    let usage = counts.withUnsafeBufferPointer { CodebookUsage(counts: $0.baseAddress!, count: $0.count) }
                    withExtendedLifetime(statistics) {}
                    record.codebook = usage
                    if controls.deadCodeThreshold > 0 { record.codesRestarted = restarted; record.restartCandidates = candidates }
                }
                let eta = Double(options.steps - done) * (now - start) / Double(done - firstStep)
                console.info(record.line(total: options.steps, model: c.model, eta: formatDuration(eta)))
                try metrics.append(record.json(model: c.model))
                windowStart = now
                windowSteps = 0
            }
            if validationSet != nil && (done % options.validationEvery == 0 || last) {
                watchdog?.enter("validation", step: done)
                summary.validation = try validate(step: done, metrics: metrics)
                summary.best = best
            }
            if options.sampleEvery > 0 && (done % options.sampleEvery == 0 || last) {
                watchdog?.enter("writing samples", step: done)
                try writeSamples(step: done)
            }
            if (options.checkpointEvery > 0 && done % options.checkpointEvery == 0) || last {
                if let path = try writeCheckpoint() { summary.checkpoint = path }
            }
            if stopping {
                summary.stoppedEarly = true
                console.info(StopRequest.received
                    ? "stopped by a signal after step \(done); continue with --resume auto"
                    : String(format: "time budget of %.0f s reached after step %d; continue with --resume auto", options.timeBudget, done))
                break
            }
        }
        let elapsed = monotonicSeconds() - start
        let trained = summary.lastStep - firstStep
        console.info(String(format: "done: %d steps in %.1f s (%.0f img/s); final loss %.5f (mse %.5f)",
                            trained, elapsed, Double(trained * globalBatchSize) / elapsed,
                            summary.finalLoss.total, summary.finalLoss.reconstruction))
        if summary.skippedSteps > 0 { console.info("skipped \(summary.skippedSteps) step(s) with a non-finite loss") }
        if communicator.size > 1 {
            console.info(String(format: "parameters and codebook identical on all %d ranks (fingerprint %016llx)",
                                communicator.size, state.fingerprint))
        }
        console.info("checkpoint: \(summary.checkpoint)")
        return summary
    }

    /// Deletes all but the newest `keep` checkpoints.
    func pruneCheckpoints(keeping keep: Int) {
        for name in Checkpoint.files(in: checkpointDirectory).dropFirst(keep) {
            try? FileManager.default.removeItem(atPath: checkpointDirectory + "/" + name)
        }
    }

    /// The node groups of a hierarchical all-reduce of the gradients, or nil for one all-reduce
    /// over every rank (`--allreduce`, `--ranks-per-node`).
    func gradientLayout() throws -> NodeLayout? {
        guard communicator.size > 1, options.allReduce != .flat else { return nil }
        let layout = try communicator.nodeLayout(ranksPerNode: options.ranksPerNode)
        // OpenMPI's reduce-scatter + all-gather pairs ranks at distance 1, 2, 4, ... in turn, so
        // with consecutive ranks on a node it already does the node's part first and sends each
        // node's share over the network once: measured as fast as the hierarchical form, or faster
        // (docs/scaling.md). With ranks dealt out in turn every round crosses the network.
        if options.allReduce == .auto && (layout.nodes == 1 || layout.largestNode == 1 || layout.consecutive) { return nil }
        return layout
    }

    /// `--time-budget`: whether this rank's training time is used up (the ranks' flags are summed
    /// with the step's loss, so all stop after the same step).
    func budgetReached(since start: Double) -> Bool {
        options.timeBudget > 0 && monotonicSeconds() - start >= options.timeBudget
    }

    /// Runs `body` with the weight average in the model's parameters when there is one (exchanged
    /// in and back out exactly), with the trained weights otherwise.
    func withEvaluatedWeights<T>(_ body: () throws -> T) rethrows -> T {
        guard let average = state.weightAverage else { return try body() }
        average.exchange(with: model.parameters.values)
        defer { average.exchange(with: model.parameters.values) }
        return try body()
    }

    /// `--val`: every rank evaluates its share of the first `--val-limit` images (damaged by the
    /// training corruptions, keyed by the run's seed) with the weight average when there is one;
    /// rank 0 logs the reduced figures. With `--keep-best`, a score better than every earlier one
    /// makes rank 0 write `best.h5`.
    func validate(step: Int, metrics: MetricsLog) throws -> EvaluationFigures? {
        guard let validationSet else { return nil }
        let total = options.validationLimit > 0 ? min(options.validationLimit, validationSet.count) : validationSet.count
        let share = shard(total, rank: communicator.rank, size: communicator.size)
        let figures = try withEvaluatedWeights {
            try measureImages(model: model, dataset: validationSet, range: share, corruptions: corruptions, seed: seed)
        }.sums.reduced(communicator)
        var record: [String: Any] = ["step": step, "val_mse": figures.meanSquaredError, "val_psnr": figures.psnr,
                                     "val_ssim": figures.ssim, "val_images": total]
        var line = String(format: "val step %d: mse %.5f  psnr %.2f dB  ssim %.4f", step, figures.meanSquaredError, figures.psnr, figures.ssim)
        if !corruptions.isEmpty {
            record["val_input_psnr"] = figures.inputPSNR
            record["val_input_ssim"] = figures.inputSSIM
            line += String(format: "  (damaged input: psnr %.2f dB  ssim %.4f)", figures.inputPSNR, figures.inputSSIM)
        }
        console.info(line + " on \(total) images")
        if let bestMetric, communicator.isRoot {
            let score = bestMetric.score(figures)
            if best.map({ bestMetric.improves(score, on: $0.score) }) ?? score.isFinite {
                best = BestScore(metric: bestMetric.rawValue, score: score, step: Int64(step))
                if let path = try writeCheckpoint(name: Checkpoint.bestFileName) {
                    console.info("best \(bestMetric.rawValue) so far (\(score)): \(path)")
                }
            }
            if let best {
                record["best_metric"] = best.metric
                record["best_score"] = best.score
                record["best_step"] = Int(best.step)
            }
        }
        try metrics.append(record)
        return figures
    }

    /// `--sample-every`: rank 0 writes `<out>/samples/step-XXXXXXXX.png`, rows original | damaged |
    /// reconstruction of the first images of `--val` (or of the training data).
    func writeSamples(step: Int) throws {
        guard communicator.isRoot else { return }
        let source = validationSet ?? dataset
        let count = min(8, source.count, sampler.localBatchSize)
        let folder = options.out + "/samples"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var rows: [[PNGImage]] = []
        _ = try withEvaluatedWeights {
            try measureImages(model: model, dataset: source, range: 0..<count, corruptions: corruptions, seed: seed) {
                _, n, clean, damaged, output in
                rows += try gridRows(clean: clean, damaged: damaged, output: output, count: n, configuration: model.configuration)
            }
        }
        let name = String(Checkpoint.fileName(step: Int64(step)).dropLast(3)) + ".png"
        try ImageGrid.compose(rows: rows).write(to: folder + "/" + name)
    }
}

/// SIGTERM and SIGINT (what Slurm and `mpirun` send) and SIGUSR1 (which `mpirun` forwards to
/// every rank and then waits for them, where it ends the job on SIGTERM and SIGINT) ask the run to
/// finish its current step, write a checkpoint and exit 0; the request is shared with every rank
/// at the next step.
enum StopRequest {
    static var received: Bool { stopSignal != 0 }

    static func install() {
        signal(SIGTERM) { stopSignal = $0 }
        signal(SIGINT) { stopSignal = $0 }
        signal(SIGUSR1) { stopSignal = $0 }
    }
}

/// Set by the signal handler; read once per step.
nonisolated(unsafe) var stopSignal: Int32 = 0
