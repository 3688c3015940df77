import XCTest
@testable import Data

final class ShardedSamplerTests: XCTestCase {
    func testEpochsArePermutationsAndDependOnlyOnSeedAndEpoch() throws {
        let sampler = try ShardedSampler(datasetSize: 103, globalBatchSize: 12, seed: 4, shuffle: true, rank: 0, worldSize: 1)
        let first = sampler.order(epoch: 0), second = sampler.order(epoch: 1)
        XCTAssertEqual(first.sorted(), Array(0..<103))
        XCTAssertEqual(second.sorted(), Array(0..<103))
        XCTAssertNotEqual(first, second)
        let again = try ShardedSampler(datasetSize: 103, globalBatchSize: 12, seed: 4, shuffle: true, rank: 0, worldSize: 1)
        XCTAssertEqual(again.order(epoch: 1), second)
        XCTAssertEqual(sampler.batchesPerEpoch, 8)  // the tail of 7 is dropped
        XCTAssertEqual(sampler.epoch(ofStep: 8), 1)
    }

    func testRankSharesFormTheSameGlobalBatchForAnyWorldSize() throws {
        for step in [0, 5, 9, 17] {
            let whole = try ShardedSampler(datasetSize: 100, globalBatchSize: 12, seed: 1, shuffle: true, rank: 0, worldSize: 1)
                .localBatch(step: step)
            for world in [2, 3, 4] {
                var union: [Int] = []
                for rank in 0..<world {
                    union += try ShardedSampler(datasetSize: 100, globalBatchSize: 12, seed: 1, shuffle: true,
                                                rank: rank, worldSize: world).localBatch(step: step)
                }
                XCTAssertEqual(union, whole, "step \(step), \(world) ranks")
            }
        }
    }

    func testNoShuffleTakesFileOrder() throws {
        let sampler = try ShardedSampler(datasetSize: 50, globalBatchSize: 8, seed: 9, shuffle: false, rank: 1, worldSize: 2)
        XCTAssertEqual(sampler.localBatch(step: 0), [4, 5, 6, 7])
        XCTAssertEqual(sampler.localBatch(step: 1), [12, 13, 14, 15])
        XCTAssertEqual(sampler.localBatch(step: 6), [4, 5, 6, 7])  // epoch 1 starts again
    }

    func testImpossibleSettingsAreRefused() {
        XCTAssertThrowsError(try ShardedSampler(datasetSize: 50, globalBatchSize: 7, seed: 0, shuffle: true, rank: 0, worldSize: 2)) {
            XCTAssertTrue("\($0)".contains("not divisible by the 2 ranks"))
        }
        XCTAssertThrowsError(try ShardedSampler(datasetSize: 5, globalBatchSize: 8, seed: 0, shuffle: true, rank: 0, worldSize: 1)) {
            XCTAssertTrue("\($0)".contains("fewer than one global batch"))
        }
    }
}

final class ShardedSamplerStreamTests: XCTestCase {
    /// A sampler started at `samples_seen = k*G` continues exactly where a run that made k steps
    /// is, on any number of ranks that divides G.
    func testContinuationFromSamplesSeen() throws {
        for tail in EpochTail.allCases {
            let straight = try ShardedSampler(datasetSize: 50, globalBatchSize: 12, seed: 3, shuffle: true, tail: tail, rank: 0, worldSize: 1)
            for samplesSeen in [0, 36, 48, 120] {
                for world in [1, 2, 3] {
                    var union: [Int] = []
                    for rank in 0..<world {
                        let resumed = try ShardedSampler(datasetSize: 50, globalBatchSize: 12, seed: 3, shuffle: true, tail: tail,
                                                         rank: rank, worldSize: world)
                        let step = try resumed.step(afterSamplesSeen: samplesSeen)
                        union += resumed.localBatch(step: step)
                    }
                    XCTAssertEqual(union, straight.globalBatch(step: samplesSeen / 12), "\(tail), samples_seen \(samplesSeen), W \(world)")
                }
            }
            XCTAssertThrowsError(try straight.step(afterSamplesSeen: 13))
        }
    }

    /// With `wrap`, epochs are concatenated: no sample is skipped and batches may span epochs.
    func testWrapConsumesEverySampleOfEveryEpoch() throws {
        let sampler = try ShardedSampler(datasetSize: 10, globalBatchSize: 4, seed: 8, shuffle: true, tail: .wrap, rank: 0, worldSize: 1)
        let stream = (0..<5).flatMap { sampler.globalSamples(step: $0) }   // 20 samples = 2 epochs
        XCTAssertEqual(stream.prefix(10).map(\.index).sorted(), Array(0..<10))
        XCTAssertEqual(stream.suffix(10).map(\.index).sorted(), Array(0..<10))
        XCTAssertEqual(stream.map(\.epoch), Array(repeating: 0, count: 10) + Array(repeating: 1, count: 10))
        XCTAssertEqual(sampler.epoch(ofStep: 2), 0)  // samples 8..11 start in epoch 0
        XCTAssertEqual(sampler.epoch(ofStep: 3), 1)

        let dropping = try ShardedSampler(datasetSize: 10, globalBatchSize: 4, seed: 8, shuffle: true, tail: .drop, rank: 0, worldSize: 1)
        XCTAssertEqual(dropping.batchesPerEpoch, 2)
        XCTAssertEqual(dropping.globalSamples(step: 2).map(\.epoch), [1, 1, 1, 1])
    }
}
