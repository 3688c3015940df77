import Data
import Dist
import Foundation
import Model

/// The resolved configuration of a run, stored as JSON in every checkpoint.
struct RunConfiguration: Codable {
    struct Optimizer: Codable {
        var name = "adam"
        var lr: Float
        var beta1: Double
        var beta2: Double
        var eps: Double
        var weightDecay: Double
    }
    struct DataSettings: Codable {
        var files: [String]
        var imagesKey: String
        var globalBatchSize: Int
        var shuffle: Bool
        var datasetSize: Int
        var tail: String
        var corrupt: String
    }
    var model: ModelConfiguration
    var optimizer: Optimizer
    var data: DataSettings
    var seed: UInt64
    var steps: Int

    func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }
}

/// Expands shell-style patterns (`train-*.h5`) that the shell left alone, in sorted order; a
/// pattern that matches nothing is an error, a plain path is kept as given.
func expandGlobs(_ paths: [String]) throws -> [String] {
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

/// A failure during training, worded for the user.
struct TrainingError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A failure that every rank reaches at the same point from the same reduced values (a non-finite
/// global loss, diverged ranks): rank 0 reports it once and all ranks exit together.
struct CollectiveError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The data-parallel training loop: every rank runs the same model on its share of each global
/// batch; gradients are averaged and the codebook's EMA statistics summed over ranks before the
/// update, so every rank holds the same parameters and codebook.
final class Trainer {
    let options: Train
    let communicator: Communicator
    let console: Console
    let dataset: ImageDataset
    let corruptions: CorruptionPipeline
    let sampler: ShardedSampler
    let model: VQVAE
    let optimizer: Adam
    var configuration: RunConfiguration
    let checkpointDirectory: String
    let metricsPath: String
    /// The checkpoint this run continues from (`--resume`), chosen on rank 0; nil on other ranks
    /// and for a fresh start.
    let resumePath: String?
    /// `--val`, opened and checked before training starts.
    let validationSet: ImageDataset?
    let resuming: Bool
    /// `--watchdog`: ends this rank when a phase of training stalls (nil with `--watchdog 0`).
    let watchdog: Watchdog?
    /// A fault to inject (`VQVAE_FAULT`, see FaultInjection.swift); nil in normal runs.
    let faults: FaultInjection?

    init(options: Train, communicator: Communicator, console: Console) throws {
        self.options = options
        self.communicator = communicator
        self.console = console
        setBLASThreads(options.threads)
        checkpointDirectory = options.out + "/checkpoints"
        metricsPath = options.out + "/metrics.jsonl"
        watchdog = options.watchdog > 0 ? Watchdog(seconds: options.watchdog, console: console) : nil
        faults = try FaultInjection.fromEnvironment(rank: communicator.rank)
        if let faults { console.warning("injecting a fault (\(FaultInjection.variable)): \(faults)") }

        let parsedCorruptions = try CorruptionPipeline(spec: options.corrupt)
        dataset = try ImageDataset(paths: try expandGlobs(options.data), imagesKey: options.imagesKey)

        // --resume: rank 0 picks the checkpoint and every rank takes its configuration.
        var chosen: String?
        if communicator.isRoot, case let .checkpoint(path) = try ResumeChoice.resolve(
            options.resume, directory: checkpointDirectory, console: console) {
            chosen = path
        }
        let savedJSON = try communicator.broadcast(string: chosen.map { try Checkpoint.configuration(path: $0) } ?? "")
        resumePath = chosen
        resuming = !savedJSON.isEmpty
        if resuming {
            let saved = try RunConfiguration.decode(savedJSON, path: chosen ?? "the checkpoint")
            configuration = try saved.resumed(with: options, checkpoint: chosen ?? "the checkpoint")
            let m = configuration.model
            guard (m.height, m.width, m.channels) == (dataset.height, dataset.width, dataset.channels) else {
                throw TrainingError("the checkpoint was trained on \(m.height)x\(m.width)x\(m.channels) images, but --data holds \(dataset.height)x\(dataset.width)x\(dataset.channels)")
            }
            guard configuration.data.datasetSize == dataset.count else {
                throw TrainingError("the checkpoint's data stream covers \(configuration.data.datasetSize) images, but --data holds \(dataset.count); resume with the same dataset")
            }
            configuration.data.files = dataset.paths
        } else {
            configuration = RunConfiguration(
                model: options.architecture.configuration(height: dataset.height, width: dataset.width, channels: dataset.channels),
                optimizer: .init(lr: options.lr, beta1: options.beta1, beta2: options.beta2, eps: options.adamEpsilon,
                                 weightDecay: options.weightDecay),
                data: .init(files: dataset.paths, imagesKey: options.imagesKey, globalBatchSize: options.globalBatchSize,
                            shuffle: !options.noShuffle, datasetSize: dataset.count, tail: options.tail.rawValue,
                            corrupt: parsedCorruptions.description),
                seed: options.seed, steps: options.steps)
        }
        let settings = configuration
        sampler = try ShardedSampler(datasetSize: dataset.count, globalBatchSize: settings.data.globalBatchSize,
                                     seed: settings.seed, shuffle: settings.data.shuffle,
                                     tail: EpochTail(rawValue: settings.data.tail) ?? .drop,
                                     rank: communicator.rank, worldSize: communicator.size)
        // The data pipeline's share, checked before anything is allocated: the sampler's index
        // and the batches in flight (float inputs, damaged copies, prefetched batches). The
        // model's own memory is checked when it is built (`ModelConfiguration.checkFitsInMemory`).
        try dataset.checkFitsInMemory(batch: sampler.localBatchSize, bytesPerImageElement: 4 * (4 + 2 * max(options.prefetch, 0)))
        try settings.model.validate()
        if options.deadCodeThreshold != 0 {
            guard options.deadCodeThreshold > 0, options.deadCodeThreshold.isFinite else {
                throw TrainingError("--dead-code-threshold must be a positive number (got \(options.deadCodeThreshold))")
            }
            guard settings.model.model == .vqvae, settings.model.codebook == .ema else {
                throw TrainingError("--dead-code-threshold re-seeds the EMA codebook; it needs --model vqvae --codebook ema")
            }
        }
        if let val = options.val {
            let validation = try ImageDataset(paths: [val], imagesKey: options.imagesKey)
            let m = settings.model
            guard (validation.height, validation.width, validation.channels) == (m.height, m.width, m.channels) else {
                throw TrainingError("--val \(val) holds \(validation.height)x\(validation.width)x\(validation.channels) images; the model trains on \(m.height)x\(m.width)x\(m.channels)")
            }
            guard m.height >= ImageMetrics.ssimWindow && m.width >= ImageMetrics.ssimWindow else {
                throw TrainingError("--val reports SSIM, which needs images of at least \(ImageMetrics.ssimWindow)x\(ImageMetrics.ssimWindow) pixels")
            }
            guard options.valEvery >= 1, options.valLimit >= 0 else { throw TrainingError("--val-every must be at least 1 and --val-limit not negative") }
            validationSet = validation
        } else {
            validationSet = nil
        }
        guard options.sampleEvery >= 0 else { throw TrainingError("--sample-every must not be negative") }
        if options.kmeansInit && settings.model.model != .vqvae {
            throw TrainingError("--kmeans-init initialises a codebook; --model \(settings.model.model.rawValue) has none")
        }
        corruptions = try CorruptionPipeline(spec: settings.data.corrupt)
        model = try VQVAE(configuration: settings.model, maxBatch: sampler.localBatchSize)
        let o = settings.optimizer
        optimizer = Adam(count: model.parameters.count, learningRate: o.lr, beta1: o.beta1, beta2: o.beta2,
                         epsilon: o.eps, weightDecay: o.weightDecay)
    }

    var globalBatchSize: Int { configuration.data.globalBatchSize }
    var seed: UInt64 { configuration.seed }

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

    func writeCheckpoint(step: Int) throws -> String? {
        let samplesSeen = Int64(step) * Int64(globalBatchSize)
        let epoch = Int64(sampler.epoch(ofStep: step))
        var path: String?
        if communicator.isRoot {
            let state = CheckpointState(
                step: Int64(step), epoch: epoch, samplesSeen: samplesSeen, worldSize: communicator.size,
                configuration: configuration.json(),
                data: ["seed": Int64(bitPattern: seed), "shuffle": configuration.data.shuffle ? 1 : 0,
                       "wrap": sampler.tail == .wrap ? 1 : 0,
                       "samples_seen": samplesSeen, "epoch": epoch, "dataset_size": Int64(dataset.count),
                       "global_batch_size": Int64(globalBatchSize)])
            watchdog?.enter("writing the checkpoint", step: step)
            path = try Checkpoint.write(directory: checkpointDirectory, model: model, optimizer: optimizer, state: state,
                                        halfWritten: { faults?.sleep(.sleepInCheckpointWrite, step: step) })
            if options.keep > 0 { pruneCheckpoints(keeping: options.keep) }
        }
        return path
    }

    func run() throws {
        watchdog?.start()
        defer { watchdog?.enter("shutting down", step: 0) }
        try prepareOutput()
        try communicator.barrier()
        // Rank 0's state (fresh from the seed, or the resumed checkpoint's) is everyone's.
        var position = [Int64](repeating: 0, count: 2)  // step, Adam's t
        if communicator.isRoot {
            if let resumePath {
                let state = try Checkpoint.load(path: resumePath, into: model, optimizer: optimizer)
                position = [state.step, optimizer.step]
                console.info("resuming from \(resumePath) at step \(state.step) (samples_seen \(state.samplesSeen), written by \(state.worldSize) rank(s))")
            } else {
                model.initialize(seed: seed)
            }
        }
        try communicator.broadcast(model.parameters.values.pointer, count: model.parameters.count)
        if let quantizer = model.quantizer {
            try communicator.broadcast(quantizer.emaState.pointer, count: quantizer.emaState.count)
        }
        try position.withUnsafeMutableBytes { try communicator.broadcast(bytes: $0.baseAddress!, count: $0.count) }
        if resuming {
            try communicator.broadcast(optimizer.firstMoment.pointer, count: optimizer.firstMoment.count)
            try communicator.broadcast(optimizer.secondMoment.pointer, count: optimizer.secondMoment.count)
            optimizer.step = position[1]
        }
        let firstStep = Int(position[0])
        if resuming && firstStep >= options.steps {
            console.info("the checkpoint is at step \(firstStep), not before --steps \(options.steps): nothing to train")
            return
        }

        // Batches are read, converted and corrupted on a background thread.
        let prefetcher = BatchPrefetcher(dataset: dataset, sampler: sampler, corruptions: corruptions, seed: seed,
                                         firstStep: firstStep, endStep: max(options.steps, firstStep + 1), depth: options.prefetch)
        defer { prefetcher.stop() }
        if options.kmeansInit && !resuming { try initializeCodebookWithKMeans(firstBatch: try prefetcher.batch(step: 0)) }
        StopRequest.install()

        let c = model.configuration
        console.info("vqvae train: \(dataset.count) images \(c.height)x\(c.width)x\(c.channels) from \(dataset.paths.joined(separator: " ")); "
            + "\(model.parameters.count) parameters, codebook \(c.codes)x\(c.codeDimension) (\(c.codebook.rawValue)); "
            + "\(communicator.size) rank(s) x batch \(sampler.localBatchSize); BLAS \(blasCoreName())")
        if options.steps == 0 {
            if let path = try writeCheckpoint(step: 0) { console.info("checkpoint: \(path)") }
            return
        }

        let local = sampler.localBatchSize
        let runner = StepRunner(model: model, optimizer: optimizer, communicator: communicator,
                                bucketMegabytes: options.bucketMegabytes, seed: seed)
        runner.watchdog = watchdog
        runner.faults = faults
        let metrics = communicator.isRoot ? FileHandle(forWritingAtPath: metricsPath) : nil
        _ = try? metrics?.seekToEnd()  // a resumed run appends
        defer { try? metrics?.close() }

        let start = monotonicSeconds()
        var windowStart = start
        var windowSteps = 0
        var lastCheckpoint = ""
        var lastLoss = Losses(reconstruction: .nan, commitment: .nan, total: .nan)
        var skipped = 0
        var lastStep = firstStep
        for step in firstStep..<options.steps {
            watchdog?.enter("reading the batch", step: step + 1)
            let batch = try prefetcher.batch(step: step)
            if let faults, faults.fires(.nanData, step: step + 1) {
                batch.clean[0] = .nan
                batch.damaged?[0] = .nan
            }
            let done = step + 1
            let outcome = try runner.run(input: batch.input, target: batch.target, batch: local, number: done,
                                         skipNonFinite: options.skipNonFinite,
                                         stopRequested: StopRequest.received || budgetReached(since: start))
            let loss = outcome.loss, stopping = outcome.stopRequested
            let statistics = model.quantizer?.batchStatistics
            var restarted = 0
            if outcome.updated {
                lastLoss = loss
                if options.deadCodeThreshold > 0 { restarted = try restartDeadCodes(step: done) }
            } else {
                console.warning("\(outcome.reason) at step \(done); skipping its update (--skip-nonfinite)")
                skipped += 1
            }
            lastStep = done
            if (options.syncCheckEvery > 0 && done % options.syncCheckEvery == 0) || done == options.steps || stopping {
                watchdog?.enter("the check that all ranks agree", step: done)
                try checkRanksAgree(step: done)
            }
            windowSteps += 1
            if done == firstStep + 1 || done % options.logEvery == 0 || done == options.steps || stopping {
                let now = monotonicSeconds()
                let rate = Double(windowSteps * globalBatchSize) / max(now - windowStart, 1e-9)
                let eta = Double(options.steps - done) * (now - start) / Double(done - firstStep)
                var record: [String: Any] = [
                    "step": done, "loss": loss.total, "mse": loss.reconstruction, "images_per_second": rate,
                    "elapsed_seconds": now - start, "samples_seen": done * globalBatchSize,
                ]
                var terms = ""
                switch c.model {
                case .vqvae:
                    let (perplexity, used) = codebookUsage(statistics!)
                    terms = String(format: "  commit %.5f  perplexity %.1f  codes %d", loss.commitment, perplexity, used)
                    record["commitment"] = loss.commitment
                    record["perplexity"] = perplexity
                    record["codes_used"] = used
                    if options.deadCodeThreshold > 0 {
                        terms += "  restarted \(restarted)"
                        record["codes_restarted"] = restarted
                    }
                case .vae:
                    terms = String(format: "  kl %.5f", loss.kl)
                    record["kl"] = loss.kl
                case .ae:
                    break
                }
                console.info(String(format: "step %d/%d  loss %.5f  mse %.5f", done, options.steps, loss.total, loss.reconstruction)
                             + terms + String(format: "  %.0f img/s  eta %@", rate, formatDuration(eta)))
                if let metrics, let line = try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]) {
                    do { try metrics.write(contentsOf: line + Data([0x0A])) } catch {
                        throw TrainingError("cannot append to \(metricsPath): \(error.localizedDescription)")
                    }
                }
                windowStart = now
                windowSteps = 0
            }
            if validationSet != nil && (done % options.valEvery == 0 || done == options.steps || stopping) {
                watchdog?.enter("validation", step: done)
                try validate(step: done, metrics: metrics)
            }
            if options.sampleEvery > 0 && (done % options.sampleEvery == 0 || done == options.steps || stopping) {
                watchdog?.enter("writing samples", step: done)
                try writeSamples(step: done)
            }
            if (options.checkpointEvery > 0 && done % options.checkpointEvery == 0) || done == options.steps || stopping {
                if let path = try writeCheckpoint(step: done) { lastCheckpoint = path }
            }
            if stopping {
                console.info(StopRequest.received
                    ? "stopped by a signal after step \(done); continue with --resume auto"
                    : String(format: "time budget of %.0f s reached after step %d; continue with --resume auto", options.timeBudget, done))
                break
            }
        }
        let elapsed = monotonicSeconds() - start
        let trained = lastStep - firstStep
        console.info(String(format: "done: %d steps in %.1f s (%.0f img/s); final loss %.5f (mse %.5f)",
                            trained, elapsed, Double(trained * globalBatchSize) / elapsed,
                            lastLoss.total, lastLoss.reconstruction))
        if skipped > 0 { console.info("skipped \(skipped) step(s) with a non-finite loss") }
        if communicator.size > 1 {
            console.info(String(format: "parameters and codebook identical on all %d ranks (fingerprint %016llx)",
                                communicator.size, fingerprint()))
        }
        console.info("checkpoint: \(lastCheckpoint)")
    }

    /// Deletes all but the newest `keep` checkpoints.
    func pruneCheckpoints(keeping keep: Int) {
        for name in Checkpoint.files(in: checkpointDirectory).dropFirst(keep) {
            try? FileManager.default.removeItem(atPath: checkpointDirectory + "/" + name)
        }
    }

    /// FNV-1a over the bit patterns of every parameter and of the EMA codebook state.
    func fingerprint() -> UInt64 {
        var hash = bitFingerprintBasis
        for buffer in [model.parameters.values] + (model.quantizer.map { [$0.emaState] } ?? []) {
            hash = bitFingerprint(buffer.pointer, count: buffer.count, continuing: hash)
        }
        return hash
    }

    /// The divergence guard: every rank's fingerprint must be the same.
    func checkRanksAgree(step: Int) throws {
        guard communicator.size > 1 else { return }
        guard try communicator.allAgree(on: fingerprint()) else {
            throw CollectiveError("ranks diverged at step \(step): their parameters or codebooks differ")
        }
    }

    /// `--kmeans-init`: rank 0 clusters the encoder outputs of the whole first global batch
    /// (gathered from every rank) and broadcasts the codebook, so all ranks start identical and the
    /// result does not depend on the number of ranks.
    func initializeCodebookWithKMeans(firstBatch: PreparedBatch) throws {
        model.encode(images: firstBatch.input, batch: sampler.localBatchSize)
        let vectorCount = globalBatchSize * model.latentCount
        guard let quantizer = model.quantizer else {
            throw TrainingError("--kmeans-init initialises a codebook; --model \(model.configuration.model.rawValue) has none")
        }
        guard vectorCount >= quantizer.codes else {
            throw TrainingError("--kmeans-init needs at least --codes \(quantizer.codes) latent vectors, but the first global batch gives \(vectorCount); raise --global-batch-size or lower --codes")
        }
        let all = try gatherGlobalLatents()
        defer { withExtendedLifetime(all) {} }
        if communicator.isRoot {
            let workspace = FloatBuffer(count: vectorCount * quantizer.codes)
            withExtendedLifetime(workspace) {
                quantizer.initializeWithKMeans(vectors: all.pointer, count: vectorCount, iterations: options.kmeansIterations,
                                               seed: seed, parameters: model.parameters, workspace: workspace.pointer)
            }
        }
        try communicator.broadcast(model.parameters.values.pointer, count: model.parameters.count)
        try communicator.broadcast(quantizer.emaState.pointer, count: quantizer.emaState.count)
    }

    /// `--time-budget`: whether this rank's training time is used up (the ranks' flags are summed
    /// with the step's loss, so all stop after the same step).
    func budgetReached(since start: Double) -> Bool {
        options.timeBudget > 0 && monotonicSeconds() - start >= options.timeBudget
    }

    /// `--val`: every rank evaluates its share of the first `--val-limit` images (damaged by the
    /// training corruptions, keyed by the run's seed); rank 0 logs the reduced figures.
    func validate(step: Int, metrics: FileHandle?) throws {
        guard let validationSet else { return }
        let total = options.valLimit > 0 ? min(options.valLimit, validationSet.count) : validationSet.count
        let share = shard(total, rank: communicator.rank, size: communicator.size)
        var sums = try measureImages(model: model, dataset: validationSet, range: share, corruptions: corruptions, seed: seed).sums.values
        try sums.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0.baseAddress!, count: EvaluationSums.count) }
        let n = max(sums[5], 1)
        var record: [String: Any] = ["step": step, "val_mse": sums[0] / n, "val_psnr": sums[1] / n, "val_ssim": sums[2] / n,
                                     "val_images": total]
        var line = String(format: "val step %d: mse %.5f  psnr %.2f dB  ssim %.4f", step, sums[0] / n, sums[1] / n, sums[2] / n)
        if !corruptions.isEmpty {
            record["val_input_psnr"] = sums[3] / n
            record["val_input_ssim"] = sums[4] / n
            line += String(format: "  (damaged input: psnr %.2f dB  ssim %.4f)", sums[3] / n, sums[4] / n)
        }
        console.info(line + " on \(total) images")
        if let metrics, let data = try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]) {
            metrics.write(data + Data([0x0A]))
        }
    }

    /// `--sample-every`: rank 0 writes `<out>/samples/step-XXXXXXXX.png`, rows original | damaged |
    /// reconstruction of the first images of `--val` (or of the training data).
    func writeSamples(step: Int) throws {
        guard communicator.isRoot else { return }
        let source = validationSet ?? dataset
        let count = min(8, source.count, model.maxBatch)
        let folder = options.out + "/samples"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var rows: [[PNGImage]] = []
        _ = try measureImages(model: model, dataset: source, range: 0..<count, corruptions: corruptions, seed: seed) {
            _, n, clean, damaged, output in
            rows += try gridRows(clean: clean, damaged: damaged, output: output, count: n, configuration: model.configuration)
        }
        let name = String(Checkpoint.fileName(step: Int64(step)).dropLast(3)) + ".png"
        try ImageGrid.compose(rows: rows).write(to: folder + "/" + name)
    }

    /// On rank 0, the encoder outputs `z` of the whole global batch (`[G*h*w, D]`); allocated once.
    private lazy var globalLatents = FloatBuffer(
        count: communicator.isRoot ? globalBatchSize * model.latentCount * model.configuration.codeDimension : 0)

    /// Gathers every rank's `latent` (its share of the global batch, in rank order) into
    /// `globalLatents` on rank 0 and returns that buffer (empty on other ranks).
    func gatherGlobalLatents() throws -> FloatBuffer {
        let perRank = sampler.localBatchSize * model.latentCount * model.configuration.codeDimension
        let all = globalLatents
        try communicator.gather(model.latent.pointer, count: perRank, into: all.pointer)
        return all
    }

    /// `--dead-code-threshold`: codes whose EMA count fell below the threshold (the same on every
    /// rank, whose EMA states are identical) are re-seeded on rank 0 from the encoder outputs of this
    /// step's global batch, and the EMA state is broadcast. Returns how many were re-seeded.
    func restartDeadCodes(step: Int) throws -> Int {
        guard let quantizer = model.quantizer else { return 0 }
        let dead = quantizer.deadCodes(threshold: Float(options.deadCodeThreshold))
        guard !dead.isEmpty else { return 0 }
        let candidates = try gatherGlobalLatents()
        if communicator.isRoot {
            quantizer.restart(codes: dead, candidates: candidates.pointer, count: globalBatchSize * model.latentCount,
                              weight: Float(options.deadCodeThreshold), seed: seed, step: step)
        }
        try communicator.broadcast(quantizer.emaState.pointer, count: quantizer.emaState.count)
        withExtendedLifetime(candidates) {}
        return dead.count
    }

    /// Perplexity `exp(-sum p log p)` of the code assignments in the global batch, and how many
    /// codes were used, from the summed statistics' counts.
    func codebookUsage(_ statistics: FloatBuffer) -> (Double, Int) {
        codebookPerplexity(statistics.pointer, count: model.quantizer?.codes ?? 0)
    }
}

/// SIGTERM and SIGINT (what Slurm and `mpirun` send) ask the run to finish its current step,
/// write a checkpoint and exit 0; the request is shared with every rank at the next step.
enum StopRequest {
    static var received: Bool { stopSignal != 0 }

    static func install() {
        signal(SIGTERM) { stopSignal = $0 }
        signal(SIGINT) { stopSignal = $0 }
    }
}

/// Set by the signal handler; read once per step.
nonisolated(unsafe) var stopSignal: Int32 = 0
