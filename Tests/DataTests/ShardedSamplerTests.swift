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
