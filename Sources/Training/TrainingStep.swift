import CMPI
import Dist
import Model

/// The figures every rank contributes to a step's one small all-reduce, by name; `flat` is the
/// view of doubles the collective needs, and `init(flat:)` reads the sums back. All are known when
/// the forward pass ends, so the all-reduce runs while the backward pass does.
struct StepReduction {
    var total: Double
    var reconstruction: Double
    var commitment: Double
    var kl: Double
    /// 1 when this rank received SIGTERM or SIGINT (or its time budget ran out).
    var stopRequests: Double

    static let count = 5

    var flat: [Double] { [total, reconstruction, commitment, kl, stopRequests] }

    init(losses: Losses, stopRequested: Bool) {
        total = losses.total
        reconstruction = losses.reconstruction
        commitment = losses.commitment
        kl = losses.kl
        stopRequests = stopRequested ? 1 : 0
    }

    init(flat: UnsafePointer<Double>) {
        (total, reconstruction, commitment, kl, stopRequests) = (flat[0], flat[1], flat[2], flat[3], flat[4])
    }

    /// Adds one micro-batch's losses.
    mutating func add(_ losses: Losses) {
        total += losses.total
        reconstruction += losses.reconstruction
        commitment += losses.commitment
        kl += losses.kl
    }

    /// The losses divided by `count` equal micro-batches: this rank's mean over its share (the
    /// stop flag is kept as it is).
    func averaged(over count: Int) -> StepReduction {
        var mean = self
        let n = Double(count)
        (mean.total, mean.reconstruction, mean.commitment, mean.kl) = (total / n, reconstruction / n, commitment / n, kl / n)
        return mean
    }

    /// The losses averaged over `world` ranks.
    func averageLosses(over world: Int) -> Losses {
        let w = Double(world)
        return Losses(reconstruction: reconstruction / w, commitment: commitment / w, kl: kl / w, total: total / w)
    }
}

/// One data-parallel optimiser step, shared by `train` and `bench`: forward, backward with
/// gradient buckets all-reduced while it runs, then the EMA update and Adam.
///
/// Besides the gradient buckets, two non-blocking all-reduces start as soon as the forward pass
/// ends, because everything they sum is known then: the codebook statistics (`n_k`, `s_k`) and
/// the losses with the ranks' stop requests. MPI progresses them with the buckets during the
/// backward pass; the step waits for all of them together, where the update needs them. Nothing
/// the backward pass reads or writes is in these buffers.
final class TrainingStep {
    let state: TrainingState
    let communicator: Communicator
    let buckets: GradientBuckets
    /// Keys the VAE's reparameterisation noise (with the step and the share's place in the batch).
    let seed: UInt64
    /// The step's small all-reduce, in place; allocated once so its address is stable while the
    /// non-blocking all-reduce runs.
    private let reduced = UnsafeMutablePointer<Double>.allocate(capacity: StepReduction.count)
    /// The non-blocking all-reduces of the codebook statistics and of `reduced`.
    private var forwardRequests: [MPI_Request?] = []
    /// Told which phase each step is in (`train --watchdog`).
    var watchdog: Watchdog?
    /// A fault to inject (`VQVAE_FAULT`, tests only).
    var faults: FaultInjection?
    /// The learning rate of each step (nil: the optimiser's rate as it is).
    var schedule: LearningRateSchedule?
    /// Global gradient-norm clipping of the averaged gradient (0: off).
    var clipNorm = 0.0

    /// Seconds waiting for communication to finish, and in the optimiser and EMA update.
    private(set) var communicationSeconds: Double = 0
    private(set) var optimizerSeconds: Double = 0

    struct Outcome {
        /// The loss averaged over all ranks.
        var loss: Losses
        /// Whether the parameters were updated (false for a skipped non-finite step).
        var updated: Bool
        /// Why a step was not updated ("loss is nan", "gradients are not finite"); empty otherwise.
        var reason = ""
        /// Whether some rank received SIGTERM or SIGINT.
        var stopRequested: Bool
        /// The norm of the averaged gradient, before clipping.
        var gradientNorm: Double = .nan
        /// The learning rate of the step.
        var learningRate: Float = .nan
    }

    init(state: TrainingState, communicator: Communicator, bucketMegabytes: Double, seed: UInt64, layout: NodeLayout? = nil) {
        self.state = state
        self.seed = seed
        self.communicator = communicator
        buckets = GradientBuckets(communicator: communicator, buffer: state.gradients.pointer, count: state.gradients.count,
                                  bucketElements: max(1, Int(bucketMegabytes * 1_048_576) / MemoryLayout<Float>.stride),
                                  layout: layout)
        reduced.initialize(repeating: 0, count: StepReduction.count)
        forwardRequests.reserveCapacity(2)
    }

    deinit {
        reduced.deallocate()
        statisticsSource?.deallocate()
    }

    /// This rank's codebook statistics while their sum over ranks arrives in the quantizer's
    /// buffer; allocated at the first step.
    private var statisticsSource: UnsafeMutablePointer<Float>?

    private func statisticsCopy(count: Int) -> UnsafeMutablePointer<Float> {
        if let statisticsSource { return statisticsSource }
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
        statisticsSource = buffer
        return buffer
    }

    func resetTimes() {
        communicationSeconds = 0
        optimizerSeconds = 0
        state.model.resetTimes()
    }

    /// Called after the forward pass of each micro-batch with its number (`0..<microBatches`), while
    /// the model's activations (its encoder outputs `latent`) are that micro-batch's.
    var afterMicroBatchForward: ((Int) -> Void)?

    /// Trains step `number` (1-based, for messages) on this rank's `input` and `target` (and, for
    /// mask-aware models, `masks`), `batch` images, as `microBatches` micro-batches of
    /// `batch / microBatches` images (gradient accumulation): the gradients of the micro-batches'
    /// mean losses and their codebook statistics are summed on the rank, all-reduced once, and the
    /// summed gradient divided by `W * microBatches`, so the update is the whole global batch's up
    /// to summation order. Only the last micro-batch's backward pass overlaps the all-reduce of the
    /// gradient buckets. Image `i` of micro-batch `m` is image
    /// `rank * batch + m * (batch / microBatches) + i` of the global batch, which keys its VAE
    /// noise and skip weight, so neither depends on `W` or on `microBatches`.
    func run(input: UnsafePointer<Float>, masks: UnsafePointer<Float>? = nil, target: UnsafePointer<Float>, batch: Int,
             number: Int, microBatches: Int = 1, skipNonFinite: Bool, stopRequested: Bool = false) throws -> Outcome {
        let model = state.model
        precondition(microBatches >= 1 && batch % microBatches == 0, "\(batch) images are not \(microBatches) equal micro-batches")
        watchdog?.enter("the forward and backward pass", step: number)
        model.parameters.zeroGradients()
        let micro = batch / microBatches, elements = model.imageCount
        let pixels = model.configuration.height * model.configuration.width
        var total = StepReduction(losses: Losses(reconstruction: 0, commitment: 0, total: 0), stopRequested: stopRequested)
        var communicationError: Error?
        var poison = faults?.fires(.nanGradient, step: number) ?? false
        for m in 0..<microBatches {
            let images = input + m * micro * elements, targets = target + m * micro * elements
            let noise = NoiseKey(seed: seed, step: UInt64(number), firstImage: communicator.rank * batch + m * micro)
            let losses = model.forward(images: images, masks: masks.map { $0 + m * micro * pixels }, targets: targets,
                                       batch: micro, training: true, noise: noise)
            afterMicroBatchForward?(m)
            total.add(losses)
            let last = m == microBatches - 1
            if let statistics = model.quantizer?.batchStatistics, microBatches > 1 {
                // This rank's statistics of the whole share, summed over its micro-batches.
                let sum = statisticsCopy(count: statistics.count)
                if m == 0 {
                    sum.update(from: statistics.pointer, count: statistics.count)
                } else {
                    for i in 0..<statistics.count { sum[i] += statistics[i] }
                }
                if last && communicator.size == 1 { statistics.pointer.update(from: sum, count: statistics.count) }
            }
            guard last else {
                model.backward(images: images, targets: targets)
                continue
            }
            faults?.sleep(.sleepInStep, step: number)
            // What the forward passes produced for the reductions starts on its way now.
            forwardRequests.removeAll(keepingCapacity: true)
            if let statistics = model.quantizer?.batchStatistics, communicator.size > 1 {
                // From a copy, not in place, for the same reason as the gradient buckets' sums.
                let copy = statisticsCopy(count: statistics.count)
                if microBatches == 1 { copy.update(from: statistics.pointer, count: statistics.count) }
                forwardRequests.append(try communicator.startAllReduceSum(copy, into: statistics.pointer, count: statistics.count))
            }
            reduced.update(from: total.averaged(over: microBatches).flat, count: StepReduction.count)
            forwardRequests.append(try communicator.startAllReduceSum(reduced, count: StepReduction.count))
            buckets.begin()
            model.backward(images: images, targets: targets) { offset in
                guard communicationError == nil else { return }
                if poison { model.parameters.gradients[offset] = .nan; poison = false }
                do {
                    try self.buckets.ready(from: offset)
                    try self.communicator.test(&self.forwardRequests)
                } catch { communicationError = error }
            }
        }
        if let communicationError { throw communicationError }

        faults?.sleep(.sleepInAllReduce, step: number)
        watchdog?.enter("the gradient all-reduce", step: number)
        let waitStart = monotonicNanoseconds()
        try buckets.finish(microBatches: microBatches)
        try communicator.wait(&forwardRequests)
        let sums = StepReduction(flat: reduced)
        communicationSeconds += Double(monotonicNanoseconds() - waitStart) * 1e-9
        let loss = sums.averageLosses(over: communicator.size)
        // A non-finite gradient (or codebook statistic) with a finite loss must not reach Adam either.
        // The check reads the reduced sums, which are bit-identical on every rank (a NaN or infinity
        // on one rank reaches all), so every rank takes the same branch without a further collective.
        let nonFinite = hasNonFinite(state.gradients) || model.quantizer.map({ hasNonFinite($0.batchStatistics) }) == true

        // Every rank sees the same reduced loss, so all take the same branch.
        // The averaged gradient is the same on every rank, so is its norm: all ranks clip alike.
        let gradientNorm = euclideanNorm(state.gradients.pointer, count: state.gradients.count)
        if let schedule { state.optimizer.learningRate = schedule.rate(completedSteps: number - 1) }
        let learningRate = state.optimizer.learningRate
        var updated = false
        let reason = !loss.total.isFinite ? "loss is \(loss.total)" : nonFinite ? "gradients are not finite (loss \(loss.total))" : ""
        if reason.isEmpty {
            let updateStart = monotonicNanoseconds()
            model.quantizer?.applyEMA()
            clipGradients(state.gradients.pointer, count: state.gradients.count, norm: gradientNorm, maxNorm: clipNorm)
            state.optimizer.update(parameters: model.parameters.values.pointer, gradients: state.gradients.pointer)
            state.weightAverage?.update(from: model.parameters.values)
            optimizerSeconds += Double(monotonicNanoseconds() - updateStart) * 1e-9
            updated = true
        } else if !skipNonFinite {
            throw CollectiveError("\(reason) at step \(number); nothing was updated or written for it. Lower --lr, check the data, or pass --skip-nonfinite")
        }
        state.step = number
        return Outcome(loss: loss, updated: updated, reason: reason, stopRequested: sums.stopRequests > 0,
                       gradientNorm: gradientNorm, learningRate: learningRate)
    }

    /// Whether any value is NaN or infinite.
    private func hasNonFinite(_ buffer: FloatBuffer) -> Bool {
        !allFinite(buffer.pointer, count: buffer.count)
    }
}
