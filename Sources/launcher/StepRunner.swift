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
    private let reduced = UnsafeMutablePointer<Double>.allocate(capacity: 4)

    /// Seconds waiting for communication to finish, and in the optimiser and EMA update.
    private(set) var communicationSeconds: Double = 0
    private(set) var optimizerSeconds: Double = 0

    struct Outcome {
        /// The loss averaged over all ranks.
        var loss: Losses
        /// Whether the parameters were updated (false for a skipped non-finite step).
        var updated: Bool
        /// Whether some rank received SIGTERM or SIGINT.
        var stopRequested: Bool
    }

    init(model: VQVAE, optimizer: Adam, communicator: Communicator, bucketMegabytes: Double) {
        self.model = model
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
        model.parameters.zeroGradients()
        let losses = model.forward(images: input, targets: target, batch: batch, training: true)
        buckets.begin()
        var communicationError: Error?
        model.backward(images: input, targets: target) { offset in
            guard communicationError == nil else { return }
            do { try self.buckets.ready(from: offset) } catch { communicationError = error }
        }
        if let communicationError { throw communicationError }

        let waitStart = monotonicNanoseconds()
        try buckets.finish()
        let statistics = model.quantizer.batchStatistics
        try communicator.allReduceSum(statistics.pointer, count: statistics.count)
        reduced[0] = losses.total; reduced[1] = losses.reconstruction; reduced[2] = losses.commitment
        reduced[3] = stopRequested ? 1 : 0
        try communicator.allReduceSum(reduced, count: 4)
        communicationSeconds += Double(monotonicNanoseconds() - waitStart) * 1e-9
        let world = Double(communicator.size)
        let loss = Losses(reconstruction: reduced[1] / world, commitment: reduced[2] / world, total: reduced[0] / world)

        // Every rank sees the same reduced loss, so all take the same branch.
        var updated = false
        if loss.total.isFinite {
            let updateStart = monotonicNanoseconds()
            model.quantizer.applyEMA()
            optimizer.update(parameters: model.parameters.values.pointer, gradients: model.parameters.gradients.pointer)
            optimizerSeconds += Double(monotonicNanoseconds() - updateStart) * 1e-9
            updated = true
        } else if !skipNonFinite {
            throw CollectiveError("loss is \(loss.total) at step \(number); nothing was updated or written for it. Lower --lr, check the data, or pass --skip-nonfinite")
        }
        return Outcome(loss: loss, updated: updated, stopRequested: reduced[3] > 0)
    }
}
