import Data
import Dist
import Model

/// The codebook operations that need the whole global batch: k-means initialisation and
/// dead-code restart. Rank 0 decides from the encoder outputs gathered from every rank (in rank
/// order, so the result does not depend on the number of ranks) and broadcasts the codebook.
///
/// With gradient accumulation (`microBatches > 1`) the model holds one micro-batch's encoder
/// outputs at a time, so each micro-batch's are copied into `kept` as its forward pass ends
/// (`keep(microBatch:)`): the gathered batch is then the whole global batch in its usual order,
/// whatever `W` and `microBatches` are.
final class CodebookCollectives {
    let model: VQVAE
    let communicator: Communicator
    let globalBatchSize: Int
    let localBatchSize: Int
    let microBatches: Int
    let seed: UInt64

    init(model: VQVAE, communicator: Communicator, globalBatchSize: Int, localBatchSize: Int, microBatches: Int = 1,
         seed: UInt64) {
        precondition(microBatches >= 1 && localBatchSize % microBatches == 0, "the share is not split into equal micro-batches")
        self.model = model
        self.communicator = communicator
        self.globalBatchSize = globalBatchSize
        self.localBatchSize = localBatchSize
        self.microBatches = microBatches
        self.seed = seed
    }

    var microBatchSize: Int { localBatchSize / microBatches }

    /// Floats of one micro-batch's encoder outputs.
    private var microLatentCount: Int { microBatchSize * model.latentCount * model.configuration.quantizerDimension }

    /// With micro-batches: this rank's encoder outputs of the whole share, `[G/W*h*w, D]`, filled
    /// micro-batch by micro-batch; allocated once, when first needed.
    private lazy var kept = FloatBuffer(count: microBatches > 1 ? localBatchSize * model.latentCount * model.configuration.quantizerDimension : 0)

    /// Copies the encoder outputs of micro-batch `m` (what the model holds after its forward pass)
    /// to their place in this rank's share. Nothing to do without micro-batches.
    func keep(microBatch m: Int) {
        guard microBatches > 1 else { return }
        (kept.pointer + m * microLatentCount).update(from: model.quantizerInput, count: microLatentCount)
    }

    /// On rank 0, the encoder outputs `z` of the whole global batch (`[G*h*w, D]`); allocated once,
    /// when first needed.
    private lazy var globalLatents = FloatBuffer(
        count: communicator.isRoot ? globalBatchSize * model.latentCount * model.configuration.quantizerDimension : 0)

    /// Gathers every rank's `latent` (its share of the global batch, in rank order) into
    /// `globalLatents` on rank 0 and returns that buffer (empty on other ranks).
    private func gatherGlobalLatents() throws -> FloatBuffer {
        let perRank = localBatchSize * model.latentCount * model.configuration.quantizerDimension
        let all = globalLatents
        try communicator.gather(microBatches > 1 ? kept.pointer : model.quantizerInput, count: perRank, into: all.pointer)
        return all
    }

    /// `--kmeans-init`: rank 0 clusters the encoder outputs of the whole first global batch and
    /// broadcasts the model's state, so all ranks start identical. Returns the number of codes
    /// placed: the distinct latent vectors of the global batch when there are fewer than the codes
    /// (the codes past them start unused).
    @discardableResult
    func initializeWithKMeans(firstBatch: PreparedBatch, iterations: Int) throws -> Int {
        let pixels = model.configuration.height * model.configuration.width
        for m in 0..<microBatches {
            model.encode(images: firstBatch.input + m * microBatchSize * model.imageCount,
                         masks: firstBatch.masks.map { $0 + m * microBatchSize * pixels }, batch: microBatchSize)
            keep(microBatch: m)
        }
        let vectorCount = globalBatchSize * model.latentCount
        guard let quantizer = model.quantizer else {
            throw TrainingError("--kmeans-init initialises a codebook; --model \(model.configuration.model.rawValue) has none")
        }
        let all = try gatherGlobalLatents()
        defer { withExtendedLifetime(all) {} }
        var placed = [Float(quantizer.codes)]
        if communicator.isRoot {
            let workspace = FloatBuffer(count: vectorCount * quantizer.codes)
            // A vector holding NaN or infinity (from a damaged image) would spread into every
            // centre it joins: k-means clusters the finite ones, moved to the front in order.
            let d = model.configuration.quantizerDimension
            var finite = 0
            for i in 0..<vectorCount where allFinite(all.pointer + i * d, count: d) {
                if finite != i { (all.pointer + finite * d).update(from: all.pointer + i * d, count: d) }
                finite += 1
            }
            withExtendedLifetime(workspace) {
                placed[0] = Float(quantizer.initializeWithKMeans(vectors: all.pointer, count: finite, iterations: iterations,
                                                                  seed: seed, parameters: model.parameters, workspace: workspace.pointer))
            }
        }
        for state in model.stateBuffers { try communicator.broadcast(state.buffer.pointer, count: state.buffer.count) }
        try placed.withUnsafeMutableBufferPointer { try communicator.broadcast($0.baseAddress!, count: 1) }
        return Int(placed[0])
    }

    /// `--dead-code-threshold`: codes whose EMA count fell below `threshold` (the same on every
    /// rank, whose EMA states are identical) are re-seeded on rank 0 from the encoder outputs of
    /// this step's global batch, and the EMA state is broadcast. Returns how many were re-seeded.
    func restartDeadCodes(threshold: Double, step: Int) throws -> Int {
        guard let quantizer = model.quantizer else { return 0 }
        let dead = quantizer.deadCodes(threshold: Float(threshold))
        guard !dead.isEmpty else { return 0 }
        let candidates = try gatherGlobalLatents()
        if communicator.isRoot {
            let count = globalBatchSize * model.latentCount
            // Residual VQ re-seeds each level from its residuals, which it computes in a workspace.
            let workspace = FloatBuffer(count: quantizer.levels > 1 ? count * quantizer.codes : 0)
            quantizer.restart(codes: dead, candidates: candidates.pointer, count: count, weight: Float(threshold), seed: seed,
                              step: step, parameters: model.parameters, workspace: workspace.pointer)
            withExtendedLifetime(workspace) {}
        }
        try communicator.broadcast(quantizer.emaState.pointer, count: quantizer.emaState.count)
        withExtendedLifetime(candidates) {}
        // Re-seeded codes got N_k = threshold; those left (too few distinct candidates) are still
        // below it. Counted on every rank from the broadcast state.
        return dead.count - quantizer.deadCodes(threshold: Float(threshold)).count
    }
}
