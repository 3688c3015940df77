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

    /// The k-means start clusters at most this many encoder outputs of the first global batch: all
    /// of them up to this count (in batch order), a subset drawn independently of the number of
    /// ranks beyond it, so rank 0 neither receives nor clusters `W` ranks' outputs (docs/scaling.md).
    static let kmeansSampleLimit = 65_536

    /// The global indices of the k-means start's sample from `count` encoder outputs, ascending.
    private func kmeansSample(count: Int) -> [Int] {
        var random = SplitMix64(seed: seed, stream: 0x4B4D_4541_4E53)  // "KMEANS"
        return VectorQuantizer.randomPrefix(count: count, limit: Self.kmeansSampleLimit, random: &random).sorted()
    }

    /// A restart gathers this many candidates per level at first (or twice the level's dead codes
    /// if more), and four times as many each time a level runs out of distinct candidates.
    static let restartFirstCandidates = 64

    /// This rank's encoder outputs of its share, `[G/W*h*w, D]`.
    private var localLatents: UnsafeMutablePointer<Float> { microBatches > 1 ? kept.pointer : model.quantizerInput }

    /// Gathers the encoder outputs with the global indices `indices` (ascending; index `i` is
    /// vector `i % (h*w)` of image `i / (h*w)` of the global batch, whose shares lie in rank order)
    /// into a new buffer on rank 0, in the order of `indices` (an empty one elsewhere). Every rank
    /// passes the same indices and sends only its own, so the result does not depend on `W`.
    private func gatherLatents(_ indices: [Int]) throws -> FloatBuffer {
        let d = model.configuration.quantizerDimension
        let perRank = localBatchSize * model.latentCount
        var counts = [Int](repeating: 0, count: communicator.size)
        for index in indices { counts[index / perRank] += d }
        let mine = indices.filter { $0 / perRank == communicator.rank }
        let send = FloatBuffer(count: mine.count * d)
        for (i, index) in mine.enumerated() {
            (send.pointer + i * d).update(from: localLatents + (index - communicator.rank * perRank) * d, count: d)
        }
        let all = FloatBuffer(count: communicator.isRoot ? indices.count * d : 0)
        try communicator.gather(send.pointer, count: mine.count * d, counts: counts, into: all.pointer)
        return all
    }

    /// `--kmeans-init`: rank 0 clusters the encoder outputs of the first global batch (at most
    /// `kmeansSampleLimit` of them) and broadcasts the model's state, so all ranks start identical.
    /// Returns the number of codes placed: the distinct latent vectors clustered when there are
    /// fewer than the codes (the codes past them start unused).
    @discardableResult
    func initializeWithKMeans(firstBatch: PreparedBatch, iterations: Int) throws -> Int {
        let pixels = model.configuration.height * model.configuration.width
        for m in 0..<microBatches {
            model.encode(images: firstBatch.input + m * microBatchSize * model.imageCount,
                         masks: firstBatch.masks.map { $0 + m * microBatchSize * pixels }, batch: microBatchSize)
            keep(microBatch: m)
        }
        let globalCount = globalBatchSize * model.latentCount
        guard let quantizer = model.quantizer else {
            throw TrainingError("--kmeans-init initialises a codebook; --model \(model.configuration.model.rawValue) has none")
        }
        let indices = globalCount <= Self.kmeansSampleLimit
            ? Array(0..<globalCount)
            : kmeansSample(count: globalCount)
        let all = try gatherLatents(indices)
        var placed = [Float(quantizer.codes)]
        if communicator.isRoot {
            let workspace = FloatBuffer(count: indices.count * quantizer.codes)
            // A vector holding NaN or infinity (from a damaged image) would spread into every
            // centre it joins: k-means clusters the finite ones, moved to the front in order.
            let d = model.configuration.quantizerDimension
            var finite = 0
            for i in 0..<indices.count where allFinite(all.pointer + i * d, count: d) {
                if finite != i { (all.pointer + finite * d).update(from: all.pointer + i * d, count: d) }
                finite += 1
            }
            withExtendedLifetime(workspace) {
                placed[0] = Float(quantizer.initializeWithKMeans(vectors: all.pointer, count: finite, iterations: iterations,
                                                                  seed: seed, parameters: model.parameters, workspace: workspace.pointer))
            }
        }
        withExtendedLifetime(all) {}
        for state in model.stateBuffers { try communicator.broadcast(state.buffer.pointer, count: state.buffer.count) }
        try placed.withUnsafeMutableBufferPointer { try communicator.broadcast($0.baseAddress!, count: 1) }
        return Int(placed[0])
    }

    /// `--dead-code-threshold`: codes whose EMA count fell below `threshold` (the same on every
    /// rank, whose EMA states are identical) are re-seeded on rank 0 from the encoder outputs of
    /// this step's global batch, and the EMA state is broadcast. Returns how many were re-seeded and
    /// how many encoder outputs rank 0 received for it (the candidates gathered).
    ///
    /// The restart takes candidates in a random order of the whole global batch
    /// (`VectorQuantizer.restartOrder`), so rank 0 needs only a prefix of that order: every rank
    /// computes it, sends its own vectors in it, and the prefix grows only when near-copies of
    /// codes in use leave a level short. The result equals a restart from the whole gathered batch,
    /// for every `W`, while rank 0 receives a few hundred vectors instead of `W` ranks' outputs.
    func restartDeadCodes(threshold: Double, step: Int) throws -> (reseeded: Int, candidates: Int) {
        guard let quantizer = model.quantizer else { return (0, 0) }
        let dead = quantizer.deadCodes(threshold: Float(threshold))
        guard !dead.isEmpty else { return (0, 0) }
        let globalCount = globalBatchSize * model.latentCount
        let mostDead = (0..<quantizer.levels).map { level in dead.filter { $0 / quantizer.codes == level }.count }.max()!
        var limit = min(globalCount, max(Self.restartFirstCandidates, 2 * mostDead)), gathered = 0
        let saved = communicator.isRoot ? Array(quantizer.emaState.buffer) : []
        while true {
            let orders = (0..<quantizer.levels).map { level in
                dead.contains { $0 / quantizer.codes == level }
                    ? VectorQuantizer.restartOrder(count: globalCount, limit: limit, seed: seed, level: level, step: step) : []
            }
            let indices = Array(Set(orders.joined())).sorted()
            let candidates = try gatherLatents(indices)
            gathered += indices.count
            var again: [Float] = [0]
            if communicator.isRoot {
                // Residual VQ re-seeds each level from its residuals, which it computes in a workspace.
                let workspace = FloatBuffer(count: quantizer.levels > 1 ? indices.count * quantizer.codes : 0)
                let result = quantizer.restart(codes: dead, candidates: candidates.pointer, indices: indices, orders: orders,
                                               weight: Float(threshold), parameters: model.parameters, workspace: workspace.pointer)
                withExtendedLifetime(workspace) {}
                if result.exhausted && limit < globalCount {
                    _ = saved.withUnsafeBufferPointer { quantizer.emaState.buffer.update(fromContentsOf: $0) }
                    again[0] = 1
                }
            }
            withExtendedLifetime(candidates) {}
            try again.withUnsafeMutableBufferPointer { try communicator.broadcast($0.baseAddress!, count: 1) }
            guard again[0] == 1 else { break }
            limit = min(globalCount, 4 * limit)
        }
        try communicator.broadcast(quantizer.emaState.pointer, count: quantizer.emaState.count)
        // Re-seeded codes got N_k = threshold; those left (too few distinct candidates) are still
        // below it. Counted on every rank from the broadcast state.
        return (dead.count - quantizer.deadCodes(threshold: Float(threshold)).count, gathered)
    }
}
