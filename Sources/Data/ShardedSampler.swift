import Model

/// Which samples each rank trains on at each step.
///
/// Each epoch is a permutation of all `N` samples drawn from `(seed, epoch)` alone (the identity
/// with `shuffle == false`), identical on every rank. Global batch `s` of an epoch is positions
/// `[s*G, (s+1)*G)` of it; the tail that does not fill a global batch is dropped. Rank `r` of `W`
/// takes the fixed slice `[r*G/W, (r+1)*G/W)` of every global batch, so the samples of a step do
/// not depend on `W`.
public final class ShardedSampler {
    public let datasetSize: Int
    public let globalBatchSize: Int
    public let seed: UInt64
    public let shuffle: Bool
    public let rank: Int
    public let worldSize: Int

    private var cachedEpoch = -1
    private var permutation: [Int] = []

    public init(datasetSize: Int, globalBatchSize: Int, seed: UInt64, shuffle: Bool, rank: Int, worldSize: Int) throws {
        guard worldSize >= 1, rank >= 0, rank < worldSize else { throw DataError("invalid rank \(rank) of \(worldSize)") }
        guard globalBatchSize >= 1 else { throw DataError("--global-batch-size must be at least 1") }
        guard globalBatchSize % worldSize == 0 else {
            throw DataError("--global-batch-size \(globalBatchSize) is not divisible by the \(worldSize) ranks; choose a multiple of \(worldSize)")
        }
        guard datasetSize >= globalBatchSize else {
            throw DataError("the dataset has \(datasetSize) images, fewer than one global batch of \(globalBatchSize); lower --global-batch-size or add data")
        }
        self.datasetSize = datasetSize
        self.globalBatchSize = globalBatchSize
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.worldSize = worldSize
    }

    public var localBatchSize: Int { globalBatchSize / worldSize }
    public var batchesPerEpoch: Int { datasetSize / globalBatchSize }

    /// The epoch that global step `step` (0-based) falls in.
    public func epoch(ofStep step: Int) -> Int { step / batchesPerEpoch }

    /// The epoch's order of sample indices.
    public func order(epoch: Int) -> [Int] {
        if epoch != cachedEpoch {
            permutation = Array(0..<datasetSize)
            if shuffle {
                var random = SplitMix64(seed: seed, stream: 0x5A3D_0000_0000 &+ UInt64(epoch))
                for i in stride(from: datasetSize - 1, to: 0, by: -1) {
                    permutation.swapAt(i, random.below(i + 1))
                }
            }
            cachedEpoch = epoch
        }
        return permutation
    }

    /// The global batch of step `step` (0-based), all `G` indices.
    public func globalBatch(step: Int) -> ArraySlice<Int> {
        let order = order(epoch: epoch(ofStep: step))
        let start = (step % batchesPerEpoch) * globalBatchSize
        return order[start..<(start + globalBatchSize)]
    }

    /// This rank's share of the global batch of step `step`.
    public func localBatch(step: Int) -> [Int] {
        let batch = globalBatch(step: step)
        let start = batch.startIndex + rank * localBatchSize
        return Array(batch[start..<(start + localBatchSize)])
    }
}
