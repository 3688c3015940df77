import Foundation
import XCTest

final class BenchCommandTests: XCTestCase {
    /// `vqvae bench --json` reports every figure, from every rank under mpirun.
    func testBenchReportsEveryFigureFromEveryRank() throws {
        for ranks in [0, 2] {
            let result = try CommandRunner.mpirun(ranks: ranks, "vqvae", [
                "bench", "--json", "--steps", "3", "--warmup", "1", "--batch", "4", "--hidden", "16", "--res-hidden", "8",
                "--code-dim", "8", "--codes", "32"])
            XCTAssertEqual(result.status, 0, result.standardError)
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any],
                                       result.standardOutput)
            let perRank = try XCTUnwrap(object["per_rank"] as? [[String: Double]])
            XCTAssertEqual(perRank.count, max(ranks, 1))
            for figures in perRank {
                for key in ["images_per_second", "ms_per_step", "forward_ms", "quantizer_ms", "backward_ms", "optimizer_ms",
                            "communication_wait_ms", "data_wait_ms", "model_gflops", "sgemm_gflops", "peak_rss_mb"] {
                    XCTAssertNotNil(figures[key], key)
                }
                XCTAssertGreaterThan(figures["images_per_second"]!, 0)
                XCTAssertGreaterThan(figures["sgemm_gflops"]!, 1)
                XCTAssertGreaterThan(figures["peak_rss_mb"]!, 1)
                XCTAssertLessThan(figures["forward_ms"]! + figures["backward_ms"]!, figures["ms_per_step"]! * 1.01)
            }
            XCTAssertEqual(object["ranks"] as? Int, max(ranks, 1))
        }
        // The default model's count matches spec/model.md's "about 268 MFLOP per image".
        let table = try CommandRunner.vqvae(["bench", "--steps", "1", "--warmup", "0", "--batch", "2"])
        XCTAssertEqual(table.status, 0, table.standardError)
        XCTAssertTrue(table.standardOutput.contains("model: 263.7 MFLOP per image and step"), table.standardOutput)
    }

    /// `--accumulate`: the step of `train --accumulate`, 2 ranks x 8 images as 4 micro-batches of 2;
    /// a count that does not divide the batch is a usage error (status 2) naming both.
    func testBenchTimesAccumulatedSteps() throws {
        let small = ["bench", "--steps", "2", "--warmup", "1", "--batch", "8", "--hidden", "16", "--res-hidden", "8",
                     "--code-dim", "8", "--codes", "32"]
        let result = try CommandRunner.mpirun(ranks: 2, "vqvae", small + ["--accumulate", "4"])
        XCTAssertEqual(result.status, 0, result.standardError)
        XCTAssertTrue(result.standardOutput.contains("2 rank(s) x batch 8 (4 micro-batches of 2)"), result.standardOutput)
        let json = try CommandRunner.vqvae(small + ["--accumulate", "2", "--json"])
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any], json.standardOutput)
        XCTAssertEqual(object["micro_batches"] as? Int, 2)
        let bad = try CommandRunner.vqvae(small + ["--accumulate", "3"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.standardError.hasPrefix("error: --accumulate 3 must divide --batch 8 into equal micro-batches\n"), bad.standardError)
    }
}
