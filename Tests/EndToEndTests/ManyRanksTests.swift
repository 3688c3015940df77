import Foundation
import XCTest

/// Many ranks on few cores: W = 8 and W = 16 ranks (oversubscribed under `mpirun`) train what
/// W = 1 and W = 2 train, within the tolerances of `DistributedTests`, and every rank holds the
/// same parameters after every step.
final class ManyRanksTests: XCTestCase {
    /// The same global batch (G = 16: 16, 8, 2 and 1 images per rank) and seed for W = 1, 2, 8
    /// and 16; after 1 step the gradients and codebook statistics, after 5 steps every tensor,
    /// agree with W = 1 (Tests/Scripts/compare_world_sizes.py). `--sync-check-every 1` has the
    /// trainer compare the ranks' parameter fingerprints after every step.
    func testEightAndSixteenRanksTrainTheSameModelAsOneAndTwo() throws {
        try assertRanksTrainAlike([(1, nil), (2, nil), (8, nil), (16, nil)], globalBatch: 16, label: "W = 2, 8, 16")
    }

    /// The hierarchical all-reduce (`--allreduce hierarchical`, nodes of `--ranks-per-node`
    /// consecutive ranks, uneven ones included: 3 ranks as 2 + 1, 8 as 3 + 3 + 2, 16 as 4 x 4)
    /// trains what one rank trains, within the same limits, with the ranks identical after every
    /// step; many small buckets (`--bucket-mb 0.01`) keep the three steps of several buckets in
    /// flight at once.
    func testHierarchicalAllReduceOnUnevenNodesTrainsTheSameModel() throws {
        try assertRanksTrainAlike([(1, nil), (3, 2), (8, 3), (16, 4)], globalBatch: 48, label: "hierarchical W = 3, 8, 16")
    }

    /// Trains the same 5 steps on each `(ranks, ranks per node)` (nil: a flat all-reduce) and
    /// compares the checkpoints with the first run's.
    private func assertRanksTrainAlike(_ runs: [(ranks: Int, perNode: Int?)], globalBatch: Int, label: String) throws {
        let data = try PreparedData.mnist("test")
        var folders: [String] = []
        for (ranks, perNode) in runs {
            let out = try CommandRunner.temporaryFolder("many-ranks-\(ranks)-\(perNode ?? 0)")
            let start = Date()
            let result = try CommandRunner.mpirun(ranks: ranks, "vqvae", [
                "train", "--data", data, "--out", out.path, "--steps", "5", "--global-batch-size", "\(globalBatch)", "--seed", "11",
                "--checkpoint-every", "1", "--log-every", "1", "--hidden", "16", "--res-hidden", "8", "--code-dim", "8",
                "--codes", "32", "--bucket-mb", "0.01", "--sync-check-every", "1",
                // The reductions are what is compared. The k-means start would add its own
                // differences: with 8 ranks (2 digits each) rounding moves one of the 784 vectors
                // across a boundary between two centres, and 10 Lloyd iterations spread it.
                "--codebook-init", "sonnet"]
                + (perNode.map { ["--allreduce", "hierarchical", "--ranks-per-node", "\($0)"] } ?? []), timeout: 300)
            print("W = \(ranks): 5 steps in \(String(format: "%.1f", Date().timeIntervalSince(start))) s (start-up included)")
            XCTAssertEqual(result.status, 0, result.standardError)
            if ranks > 1 {
                XCTAssertTrue(result.standardOutput.contains("identical on all \(ranks) ranks"), result.standardOutput)
                XCTAssertTrue(result.standardOutput.contains("\(ranks) rank(s) x batch \(globalBatch / ranks)"), result.standardOutput)
                if let perNode {
                    let nodes = (ranks + perNode - 1) / perNode
                    XCTAssertTrue(result.standardOutput.contains("(\(nodes) nodes of up to \(perNode) ranks, hierarchical all-reduce)"),
                                  result.standardOutput)
                }
            }
            XCTAssertEqual(result.standardOutput.components(separatedBy: "step 5/5").count, 2, "rank 0 alone prints progress")
            folders.append(out.appendingPathComponent("checkpoints").path)
        }
        // The limits of DistributedTests.testOneTwoAndThreeRanksTrainTheSameModel.
        try assertWorldSizesAgree(checkpointFolders: folders, label: label)
    }
}
