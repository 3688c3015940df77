import Dist
import Model

/// One data-parallel optimiser step, shared by `train` and `bench`: forward, backward with
/// gradient buckets all-reduced while it runs, the fused all-reduce of the codebook statistics,
/// the global loss (with any rank's stop request), then the EMA update and Adam.
final class StepRunner {
    let model: VQVAE
    let optimizer: Adam
    let communicator: Communicator
    let buckets: GradientBuckets
    /// Keys the VAE's reparameterisation noise (with the step and the share's place in the batch).
    let seed: UInt64
    private let reduced = UnsafeMutablePointer<Double>.allocate(capacity: 6)
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

    init(model: VQVAE, optimizer: Adam, communicator: Communicator, bucketMegabytes: Double, seed: UInt64) {
        self.model = model
        self.seed = seed
        self.optimizer = optimizer
        self.communicator = communicator
        buckets = GradientBuckets(communicator: communicator, buffer: model.parameters.gradients.pointer,
                                  count: model.parameters.count,
                                  bucketElements: max(1, Int(bucketMegabytes * 1_048_576) / MemoryLayout<Float>.stride))
    }

    deinit { reduced.deallocate() }

    func resetTimes() {
        communicationSeconds = 0
        optimizerSeconds = 0
        model.resetTimes()
    }

    /// Trains step `number` (1-based, for messages) on this rank's `input` and `target`.
    func run(input: UnsafePointer<Float>, target: UnsafePointer<Float>, batch: Int, number: Int,
             skipNonFinite: Bool, stopRequested: Bool = false) throws -> Outcome {
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
        reduced[0] = losses.total; reduced[1] = losses.reconstruction; reduced[2] = losses.commitment
        reduced[3] = losses.kl; reduced[4] = stopRequested ? 1 : 0
        // A non-finite gradient (or codebook statistic) with a finite loss must not reach Adam either;
        // the flag is summed so that every rank takes the same branch.
        reduced[5] = hasNonFinite(model.parameters.gradients) || model.quantizer.map({ hasNonFinite($0.batchStatistics) }) == true ? 1 : 0
        try communicator.allReduceSum(reduced, count: 6)
        communicationSeconds += Double(monotonicNanoseconds() - waitStart) * 1e-9
        let world = Double(communicator.size)
        let loss = Losses(reconstruction: reduced[1] / world, commitment: reduced[2] / world, kl: reduced[3] / world,
                          total: reduced[0] / world)

        // Every rank sees the same reduced loss, so all take the same branch.
        var updated = false
        let reason = !loss.total.isFinite ? "loss is \(loss.total)" : reduced[5] > 0 ? "gradients are not finite (loss \(loss.total))" : ""
        if reason.isEmpty {
            let updateStart = monotonicNanoseconds()
            model.quantizer?.applyEMA()
            optimizer.update(parameters: model.parameters.values.pointer, gradients: model.parameters.gradients.pointer)
            optimizerSeconds += Double(monotonicNanoseconds() - updateStart) * 1e-9
            updated = true
        } else if !skipNonFinite {
            throw CollectiveError("\(reason) at step \(number); nothing was updated or written for it. Lower --lr, check the data, or pass --skip-nonfinite")
        }
        return Outcome(loss: loss, updated: updated, reason: reason, stopRequested: reduced[4] > 0)
    }

    /// Whether any value is NaN or infinite.
    private func hasNonFinite(_ buffer: FloatBuffer) -> Bool {
        !allFinite(buffer.pointer, count: buffer.count)
    }
}
