import Foundation
import XCTest

/// `train --resume auto` through the built binary: the stored settings come back, other data is
/// refused, and the clock keeps counting.
final class ResumeSettingsCommandTests: XCTestCase {
    let small = ["--hidden", "16", "--res-hidden", "8", "--code-dim", "8", "--codes", "32", "--log-every", "1",
                 "--global-batch-size", "8"]

    func train(_ out: URL, steps: Int, data: String? = nil, _ extra: [String] = []) throws -> CommandRunner.Result {
        try CommandRunner.vqvae(["train", "--data", try data ?? PreparedData.mnist("test"), "--out", out.path,
                                 "--steps", "\(steps)"] + small + extra)
    }

    /// A run started with --kmeans-init --dead-code-threshold 1 goes on re-seeding codes when
    /// resumed without the flags (the `restarted` column stays); a contradicting value is refused
    /// naming every contradicting flag and the stored value.
    func testStoredCodebookControlsComeBack() throws {
        let out = try CommandRunner.temporaryFolder("resume-controls")
        let first = try train(out, steps: 2, ["--kmeans-init", "--dead-code-threshold", "1"])
        XCTAssertEqual(first.status, 0, first.standardError)
        XCTAssertTrue(first.standardOutput.contains("restarted"), first.standardOutput)
        let resumed = try train(out, steps: 4, ["--resume", "auto"])
        XCTAssertEqual(resumed.status, 0, resumed.standardError)
        let lines = resumed.standardOutput.split(separator: "\n").filter { $0.hasPrefix("step ") }
        XCTAssertEqual(lines.count, 2, resumed.standardOutput)
        XCTAssertTrue(lines.allSatisfy { $0.contains("restarted") }, resumed.standardOutput)

        let refused = try train(out, steps: 6, ["--resume", "auto", "--dead-code-threshold", "0", "--corrupt", "noise:0.1"])
        XCTAssertNotEqual(refused.status, 0)
        let message = refused.standardError.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(message.split(separator: "\n").count, 1, message)
        XCTAssertTrue(message.contains("--dead-code-threshold 0.0 contradicts"), message)
        XCTAssertTrue(message.contains("which was trained with --dead-code-threshold 1.0"), message)
        XCTAssertTrue(message.contains("--corrupt noise:0.1 contradicts"), message)
        XCTAssertTrue(message.contains("which was trained without --corrupt"), message)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("checkpoints/step-00000006.h5").path))
    }

    /// A checkpoint written before the codebook and training controls were stored (their keys
    /// null in `config`) resumes as such runs trained: no dead-code restart although it is now the
    /// default, Adam at a constant rate, no clipping.
    func testCheckpointWithoutStoredControlsResumesAsItTrained() throws {
        let out = try CommandRunner.temporaryFolder("resume-old-config")
        let first = try train(out, steps: 2, ["--warmup-steps", "4"])
        XCTAssertEqual(first.status, 0, first.standardError)
        XCTAssertTrue(first.standardOutput.contains("restarted"), "dead-code restart is on by default: \(first.standardOutput)")
        let checkpoint = out.appendingPathComponent("checkpoints/step-00000002.h5").path
        let edited = try CommandRunner.script("edit_checkpoint_config.py", [checkpoint, "codebook=null"] + [
            "warmup_steps", "lr_schedule", "lr_min", "lr_decay_steps", "lr_step_every", "lr_step_factor", "clip_grad_norm",
        ].map { "optimizer.\($0)=null" })
        XCTAssertEqual(edited.status, 0, edited.standardError)
        let resumed = try train(out, steps: 4, ["--resume", "auto"])
        XCTAssertEqual(resumed.status, 0, resumed.standardError)
        let lines = resumed.standardOutput.split(separator: "\n").filter { $0.hasPrefix("step ") }
        XCTAssertEqual(lines.count, 2, resumed.standardOutput)
        XCTAssertFalse(lines.contains { $0.contains("restarted") }, resumed.standardOutput)
        let text = try String(contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        let rates = try text.split(separator: "\n").map { line -> Double in
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            return try XCTUnwrap((object["lr"] as? NSNumber)?.doubleValue)
        }
        XCTAssertEqual(rates.count, 4)
        // Warmup over 4 steps in the first run; the resumed steps 3 and 4 at the constant 3e-4.
        for (rate, want) in zip(rates, [7.5e-5, 1.5e-4, 3e-4, 3e-4]) { XCTAssertEqual(rate, want, accuracy: want * 1e-6, "\(rates)") }
        let config = try LoadedCheckpoint.configuration(out.appendingPathComponent("checkpoints/step-00000004.h5").path)
        let codebook = try XCTUnwrap(config["codebook"] as? [String: Any])
        XCTAssertEqual((codebook["dead_code_threshold"] as? NSNumber)?.doubleValue, 0)
        XCTAssertEqual((codebook["kmeans_init"] as? NSNumber)?.boolValue, false)
    }

    /// Another file with the same number of images is refused unless --allow-other-data.
    func testOtherDataIsRefusedUnlessAllowed() throws {
        let out = try CommandRunner.temporaryFolder("resume-data")
        XCTAssertEqual(try train(out, steps: 2).status, 0)
        let folder = try CommandRunner.temporaryFolder("resume-data-other")
        let other = folder.appendingPathComponent("other.h5").path
        // The same images in reverse order: same size, shape and type, other pixels.
        let reversed = try CommandRunner.script("reverse_hdf5_images.py", [try PreparedData.mnist("test"), other])
        XCTAssertEqual(reversed.status, 0, reversed.standardError)
        let refused = try train(out, steps: 3, data: other, ["--resume", "auto"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.standardError.contains("is not the data"), refused.standardError)
        XCTAssertTrue(refused.standardError.contains("--allow-other-data"), refused.standardError)
        let allowed = try train(out, steps: 3, data: other, ["--resume", "auto", "--allow-other-data"])
        XCTAssertEqual(allowed.status, 0, allowed.standardError)
        XCTAssertTrue(allowed.standardError.contains("continuing on other data"), allowed.standardError)
    }

    /// elapsed_seconds in metrics.jsonl continues after a resume instead of starting again at 0.
    func testElapsedSecondsContinue() throws {
        let out = try CommandRunner.temporaryFolder("resume-elapsed")
        XCTAssertEqual(try train(out, steps: 3).status, 0)
        XCTAssertEqual(try train(out, steps: 5, ["--resume", "auto"]).status, 0)
        let text = try String(contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        let times = try text.split(separator: "\n").map { line -> Double in
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            return try XCTUnwrap(object["elapsed_seconds"] as? Double)
        }
        XCTAssertEqual(times.count, 5)
        XCTAssertEqual(times, times.sorted(), "elapsed_seconds went back after the resume: \(times)")
    }
}
