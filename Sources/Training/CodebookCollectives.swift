import Data
import Dist
import Model

/// The codebook operations that need the whole global batch: k-means initialisation and
/// dead-code restart. Rank 0 decides from the encoder outputs gathered from every rank (in rank
/// order, so the result does not depend on the number of ranks) and broadcasts the codebook.
final class CodebookCollectives {
    let model: VQVAE
    let communicator: Communicator
    let globalBatchSize: Int
    let localBatchSize: Int
    let seed: UInt64

    init(model: VQVAE, communicator: Communicator, globalBatchSize: Int, localBatchSize: Int, seed: UInt64) {
        self.model = model
        self.communicator = communicator
        self.globalBatchSize = globalBatchSize
        self.localBatchSize = localBatchSize
        self.seed = seed
    }

    /// On rank 0, the encoder outputs `z` of the whole global batch (`[G*h*w, D]`); allocated once,
    /// when first needed.
    private lazy var globalLatents = FloatBuffer(
        count: communicator.isRoot ? globalBatchSize * model.latentCount * model.configuration.codeDimension : 0)

    /// Gathers every rank's `latent` (its share of the global batch, in rank order) into
    /// `globalLatents` on rank 0 and returns that buffer (empty on other ranks).
    private func gatherGlobalLatents() throws -> FloatBuffer {
        let perRank = localBatchSize * model.latentCount * model.configuration.codeDimension
        let all = globalLatents
        try communicator.gather(model.latent.pointer, count: perRank, into: all.pointer)
        return all
    }

    /// `--kmeans-init`: rank 0 clusters the encoder outputs of the whole first global batch and
    /// broadcasts the model's state, so all ranks start identical.
    func initializeWithKMeans(firstBatch: PreparedBatch, iterations: Int) throws {
        model.encode(images: firstBatch.input, batch: localBatchSize)
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
                quantizer.initializeWithKMeans(vectors: all.pointer, count: vectorCount, iterations: iterations,
                                               seed: seed, parameters: model.parameters, workspace: workspace.pointer)
            }
        }
        for state in model.stateBuffers { try communicator.broadcast(state.buffer.pointer, count: state.buffer.count) }
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
            quantizer.restart(codes: dead, candidates: candidates.pointer, count: globalBatchSize * model.latentCount,
                              weight: Float(threshold), seed: seed, step: step)
        }
        try communicator.broadcast(quantizer.emaState.pointer, count: quantizer.emaState.count)
        withExtendedLifetime(candidates) {}
        return dead.count
    }
}
