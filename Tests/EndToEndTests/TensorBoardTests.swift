import Foundation
import XCTest

/// `train --tensorboard`: TensorBoard's own loader (the `tensorboard` package) reads every record
/// of `metrics.jsonl` from the event files, and a run resumed from an earlier checkpoint replaces
/// the steps it repeats instead of doubling them.
final class TensorBoardTests: XCTestCase {
    static let small = ["--hidden", "16", "--res-hidden", "8", "--code-dim", "8", "--codes", "32", "--global-batch-size", "8",
                        "--log-every", "1", "--tensorboard"]

    func train(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let result = try CommandRunner.vqvae(["train"] + arguments, file: file, line: line)
        XCTAssertEqual(result.status, 0, "train \(arguments): \(result.standardError)", file: file, line: line)
    }

    /// Tag -> (step, value) as TensorBoard loads them.
    func scalars(_ folder: URL) throws -> [String: [[Double]]] {
        let result = try CommandRunner.script("read_tensorboard.py", [folder.path])
        XCTAssertEqual(result.status, 0, result.standardError)
        return try JSONDecoder().decode([String: [[Double]]].self, from: Data(result.standardOutput.utf8))
    }

    /// metrics.jsonl's records, by step (the newest record of a step wins, as after a resume).
    func records(_ folder: URL) throws -> [Int: [String: Any]] {
        let text = try String(contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        var byStep: [Int: [String: Any]] = [:]
        for line in text.split(separator: "\n") {
            let record = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let step = try XCTUnwrap(record["step"] as? Int)
            byStep[step, default: [:]].merge(record) { _, new in new }
        }
        return byStep
    }

    func testEventFilesHoldTheMetricsAndAResumeReplacesRepeatedSteps() throws {
        let data = try PreparedData.mnist("test")
        let out = try CommandRunner.temporaryFolder("tensorboard")
        try train(["--data", data, "--out", out.path, "--steps", "4", "--checkpoint-every", "2", "--val", data, "--val-every", "2",
                   "--val-limit", "16"] + Self.small)
        let events = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasPrefix("events.out.tfevents.") }
        XCTAssertEqual(events.count, 1, "\(events)")
        var loaded = try scalars(out)
        for tag in ["loss", "mse", "lr", "grad_norm", "perplexity", "codes_used", "images_per_second", "val_psnr", "val_mse"] {
            XCTAssertNotNil(loaded[tag], "no \(tag) in \(loaded.keys.sorted())")
        }
        XCTAssertEqual(loaded["loss"]?.map { Int($0[0]) }, [1, 2, 3, 4])
        XCTAssertEqual(loaded["val_psnr"]?.map { Int($0[0]) }, [2, 4])
        var expected = try records(out)
        for (tag, pairs) in loaded {
            for pair in pairs {
                let value = try XCTUnwrap((expected[Int(pair[0])]?[tag] as? NSNumber)?.doubleValue, "\(tag) at step \(pair[0])")
                // Stored as float32; the JSON's decimal may round to the neighbouring float.
                XCTAssertEqual(pair[1], Double(Float(value)), accuracy: Double(Float(value).ulp), "\(tag) at step \(pair[0])")
            }
        }

        // Resumed after step 2: steps 3 and 4 are trained again, and TensorBoard shows each step
        // once (the restart event drops the first file's steps 3 and 4), the values as logged.
        let firstLoss = try XCTUnwrap(loaded["loss"])
        try train(["--data", data, "--out", out.path, "--steps", "5", "--checkpoint-every", "2", "--val", data, "--val-every", "2",
                   "--val-limit", "16", "--resume", out.appendingPathComponent("checkpoints/step-00000002.h5").path]
                  + Self.small)
        // Name order is start order (TensorBoard reads in name order), even within one second.
        let files = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasPrefix("events.out.tfevents.") }.sorted()
        XCTAssertEqual(files.count, 2, "\(files)")
        XCTAssertEqual(files.first, events.first, "the first run's file sorts first: \(files)")
        loaded = try scalars(out)
        expected = try records(out)
        XCTAssertEqual(loaded["loss"]?.map { Int($0[0]) }, [1, 2, 3, 4, 5])
        XCTAssertEqual(Array(try XCTUnwrap(loaded["loss"]).prefix(2)), Array(firstLoss.prefix(2)))
        for pair in try XCTUnwrap(loaded["loss"]) {
            let value = try XCTUnwrap((expected[Int(pair[0])]?["loss"] as? NSNumber)?.doubleValue)
            XCTAssertEqual(pair[1], Double(Float(value)), accuracy: Double(Float(value).ulp), "loss at step \(pair[0])")
        }
    }
}
