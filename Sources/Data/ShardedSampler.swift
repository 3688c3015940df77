import Model

/// What happens to the samples at the end of an epoch that do not fill a global batch.
public enum EpochTail: String, Sendable, CaseIterable {
    /// They are skipped; every global batch lies inside one epoch.
    case drop
    /// Epochs are concatenated into one stream; a global batch may span two epochs.
    case wrap
}

/// Which samples each rank trains on at each step.
///
/// Each epoch is a permutation of all `N` samples drawn from `(seed, epoch)` alone (the identity
/// with `shuffle == false`), identical on every rank. Global batch `s` is the `G` positions that
/// follow the `s*G` samples already consumed: with `.drop`, positions `[b*G, (b+1)*G)` of epoch
/// `s / (N/G)` with `b = s mod (N/G)`; with `.wrap`, positions `[s*G, (s+1)*G)` of the concatenated
/// epochs. Rank `r` of `W` takes the fixed slice `[r*G/W, (r+1)*G/W)` of every global batch, so
/// the samples of a step do not depend on `W`, and the stream's position is a pure function of
/// `(seed, samples_seen)`: a resumed run on any `W` dividing `G` continues the same stream.
public final class ShardedSampler {
    public let datasetSize: Int
    public let globalBatchSize: Int
    public let seed: UInt64
    public let shuffle: Bool
    public let tail: EpochTail
    public let rank: Int
    public let worldSize: Int

    private var cache: [(epoch: Int, order: [Int])] = []

    public init(datasetSize: Int, globalBatchSize: Int, seed: UInt64, shuffle: Bool, tail: EpochTail = .drop,
                rank: Int, worldSize: Int) throws {
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
        self.tail = tail
        self.rank = rank
        self.worldSize = worldSize
    }

    public var localBatchSize: Int { globalBatchSize / worldSize }
    /// Whole global batches in one epoch.
    public var batchesPerEpoch: Int { datasetSize / globalBatchSize }

    /// The epoch that global step `step` (0-based) starts in.
    public func epoch(ofStep step: Int) -> Int {
        switch tail {
        case .drop: return step / batchesPerEpoch
        case .wrap: return step * globalBatchSize / datasetSize
        }
    }

    /// The step that follows `samplesSeen` consumed samples (a multiple of `G`).
    public func step(afterSamplesSeen samplesSeen: Int) throws -> Int {
        guard samplesSeen >= 0, samplesSeen % globalBatchSize == 0 else {
            throw DataError("samples_seen \(samplesSeen) is not a multiple of the global batch \(globalBatchSize)")
        }
        return samplesSeen / globalBatchSize
    }

    /// The epoch's order of sample indices: a permutation from `(seed, epoch)` alone.
    public func order(epoch: Int) -> [Int] {
        if let hit = cache.first(where: { $0.epoch == epoch }) { return hit.order }
        var permutation = Array(0..<datasetSize)
        if shuffle {
            var random = SplitMix64(seed: seed, stream: 0x5A3D_0000_0000 &+ UInt64(epoch))
            for i in stride(from: datasetSize - 1, to: 0, by: -1) {
                permutation.swapAt(i, random.below(i + 1))
            }
        }
        cache.append((epoch, permutation))
        if cache.count > 2 { cache.removeFirst() }
        return permutation
    }

    /// `(epoch, dataset index)` of every sample of global batch `step`, in batch order.
    public func globalSamples(step: Int) -> [(epoch: Int, index: Int)] {
        samples(step: step, from: 0, count: globalBatchSize)
    }

    /// The global batch of step `step` (0-based), all `G` dataset indices.
    public func globalBatch(step: Int) -> [Int] { globalSamples(step: step).map(\.index) }

    /// This rank's share of global batch `step`: `(epoch, dataset index)` per sample.
    public func localSamples(step: Int) -> [(epoch: Int, index: Int)] {
        samples(step: step, from: rank * localBatchSize, count: localBatchSize)
    }

    /// This rank's share of the global batch of step `step`.
    public func localBatch(step: Int) -> [Int] { localSamples(step: step).map(\.index) }

    private func samples(step: Int, from offset: Int, count: Int) -> [(epoch: Int, index: Int)] {
        var result: [(epoch: Int, index: Int)] = []
        result.reserveCapacity(count)
        switch tail {
        case .drop:
            let epoch = step / batchesPerEpoch
            let order = order(epoch: epoch)
            let start = (step % batchesPerEpoch) * globalBatchSize + offset
            for position in start..<(start + count) { result.append((epoch, order[position])) }
        case .wrap:
            let start = step * globalBatchSize + offset
            for position in start..<(start + count) {
                let epoch = position / datasetSize
                result.append((epoch, order(epoch: epoch)[position % datasetSize]))
            }
        }
        return result
    }
}
