import Dist
import Model

/// The figures every rank contributes to a step's one small all-reduce, by name; `flat` is the
/// view of doubles the collective needs, and `init(flat:)` reads the sums back.
struct StepReduction {
    var total: Double
    var reconstruction: Double
    var commitment: Double
    var kl: Double
    /// 1 when this rank received SIGTERM or SIGINT (or its time budget ran out).
    var stopRequests: Double
    /// 1 when this rank holds a non-finite gradient or codebook statistic.
    var nonFiniteRanks: Double

    static let count = 6

    var flat: [Double] { [total, reconstruction, commitment, kl, stopRequests, nonFiniteRanks] }

    init(losses: Losses, stopRequested: Bool, nonFinite: Bool) {
        total = losses.total
        reconstruction = losses.reconstruction
        commitment = losses.commitment
        kl = losses.kl
        stopRequests = stopRequested ? 1 : 0
        nonFiniteRanks = nonFinite ? 1 : 0
    }

    init(flat: [Double]) {
        (total, reconstruction, commitment, kl, stopRequests, nonFiniteRanks) = (flat[0], flat[1], flat[2], flat[3], flat[4], flat[5])
    }

    /// The losses averaged over `world` ranks.
    func averageLosses(over world: Int) -> Losses {
        let w = Double(world)
        return Losses(reconstruction: reconstruction / w, commitment: commitment / w, kl: kl / w, total: total / w)
    }
}

/// One data-parallel optimiser step, shared by `train` and `bench`: forward, backward with
/// gradient buckets all-reduced while it runs, the all-reduce of the codebook statistics, the
/// global loss (with any rank's stop request), then the EMA update and Adam.
final class TrainingStep {
    let state: TrainingState
    let communicator: Communicator
    let buckets: GradientBuckets
    /// Keys the VAE's reparameterisation noise (with the step and the share's place in the batch).
    let seed: UInt64
    private var reduced = [Double](repeating: 0, count: StepReduction.count)
    /// Told which phase each step is in (`train --watchdog`).
    var watchdog: Watchdog?
    /// A fault to inject (`VQVAE_FAULT`, tests only).
    var faults: FaultInjection?

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
    }

    init(state: TrainingState, communicator: Communicator, bucketMegabytes: Double, seed: UInt64) {
        self.state = state
        self.seed = seed
        self.communicator = communicator
        buckets = GradientBuckets(communicator: communicator, buffer: state.gradients.pointer, count: state.gradients.count,
                                  bucketElements: max(1, Int(bucketMegabytes * 1_048_576) / MemoryLayout<Float>.stride))
    }

    func resetTimes() {
        communicationSeconds = 0
        optimizerSeconds = 0
        state.model.resetTimes()
    }

    /// Trains step `number` (1-based, for messages) on this rank's `input` and `target`.
    func run(input: UnsafePointer<Float>, target: UnsafePointer<Float>, batch: Int, number: Int,
             skipNonFinite: Bool, stopRequested: Bool = false) throws -> Outcome {
        let model = state.model
        watchdog?.enter("the forward and backward pass", step: number)
        model.parameters.zeroGradients()
        let noise = NoiseKey(seed: seed, step: UInt64(number), firstImage: communicator.rank * batch)
        let losses = model.forward(images: input, targets: target, batch: batch, training: true, noise: noise)
        faults?.sleep(.sleepInStep, step: number)
        buckets.begin()
        var communicationError: Error?
        var poison = faults?.fires(.nanGradient, step: number) ?? false
        model.backward(images: input, targets: target) { offset in
            guard communicationError == nil else { return }
            if poison { model.parameters.gradients[offset] = .nan; poison = false }
            do { try self.buckets.ready(from: offset) } catch { communicationError = error }
        }
        if let communicationError { throw communicationError }

        faults?.sleep(.sleepInAllReduce, step: number)
        watchdog?.enter("the gradient all-reduce", step: number)
        let waitStart = monotonicNanoseconds()
        try buckets.finish()
        if let statistics = model.quantizer?.batchStatistics {
            try communicator.allReduceSum(statistics.pointer, count: statistics.count)
        }
        // A non-finite gradient (or codebook statistic) with a finite loss must not reach Adam either;
        // the flag is summed so that every rank takes the same branch.
        let nonFinite = hasNonFinite(state.gradients) || model.quantizer.map({ hasNonFinite($0.batchStatistics) }) == true
        reduced = StepReduction(losses: losses, stopRequested: stopRequested, nonFinite: nonFinite).flat
        try reduced.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0.baseAddress!, count: StepReduction.count) }
        let sums = StepReduction(flat: reduced)
        communicationSeconds += Double(monotonicNanoseconds() - waitStart) * 1e-9
        let loss = sums.averageLosses(over: communicator.size)

        // Every rank sees the same reduced loss, so all take the same branch.
        var updated = false
        let reason = !loss.total.isFinite ? "loss is \(loss.total)" : sums.nonFiniteRanks > 0 ? "gradients are not finite (loss \(loss.total))" : ""
        if reason.isEmpty {
            let updateStart = monotonicNanoseconds()
            model.quantizer?.applyEMA()
            state.optimizer.update(parameters: model.parameters.values.pointer, gradients: state.gradients.pointer)
            optimizerSeconds += Double(monotonicNanoseconds() - updateStart) * 1e-9
            updated = true
        } else if !skipNonFinite {
            throw CollectiveError("\(reason) at step \(number); nothing was updated or written for it. Lower --lr, check the data, or pass --skip-nonfinite")
        }
        state.step = number
        return Outcome(loss: loss, updated: updated, reason: reason, stopRequested: sums.stopRequests > 0)
    }

    /// Whether any value is NaN or infinite.
    private func hasNonFinite(_ buffer: FloatBuffer) -> Bool {
        !allFinite(buffer.pointer, count: buffer.count)
    }
}
