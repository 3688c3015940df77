import Data
import Foundation
import Model
import Training
import XCTest

/// A resumed run keeps every setting that changes training, refuses other data, names every
/// contradicting flag, and keeps counting its training time.
final class ResumeSettingsTests: XCTestCase {
    /// A run started with dead-code restart continues with it when resumed without the flag, and
    /// the flag given with another value is refused.
    func testCodebookControlsAreStoredAndRestored() throws {
        let data = try TrainingFixtures.blobs("controls")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("controls"), steps: 3)
        options.deadCodeThreshold = 1e6
        options.kmeansInit = true
        options.kmeansIterations = 4
        let (first, _) = try TrainingFixtures.train(options)
        let codes = try XCTUnwrap(first.model.quantizer).codes

        var resumed = TrainingFixtures.options(data: data, out: options.out, steps: 5)
        resumed.resume = "auto"
        let (trainer, summary) = try TrainingFixtures.train(resumed)
        XCTAssertEqual(summary.restartedCodes, 2 * codes, "dead-code restart was not kept on resume")
        XCTAssertEqual(trainer.configuration.codebook,
                       RunConfiguration.CodebookControls(kmeansInit: true, kmeansIterations: 4, deadCodeThreshold: 1e6))

        resumed.steps = 6
        resumed.deadCodeThreshold = 0
        resumed.givenFlags = ["--dead-code-threshold"]
        XCTAssertThrowsError(try TrainingFixtures.train(resumed)) { error in
            XCTAssertTrue("\(error)".hasPrefix("--dead-code-threshold 0.0 contradicts"), "\(error)")
            XCTAssertTrue("\(error)".contains("which was trained with --dead-code-threshold 1000000.0"), "\(error)")
        }
    }

    /// Every contradicting flag is named in the one line, an empty stored value as "without".
    func testEveryContradictionIsNamed() throws {
        let data = try TrainingFixtures.blobs("contradictions")
        let options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("contradictions"), steps: 1)
        try TrainingFixtures.train(options)
        var resumed = options
        resumed.resume = "auto"
        resumed.steps = 2
        resumed.seed = 9
        resumed.corrupt = "noise:0.1"
        resumed.architecture.hidden = 32
        resumed.givenFlags = ["--seed", "--corrupt", "--hidden", "--steps"]
        XCTAssertThrowsError(try TrainingFixtures.train(resumed)) { error in
            let message = "\(error)"
            XCTAssertFalse(message.contains("\n"), message)
            XCTAssertTrue(message.contains("--hidden 32 contradicts"), message)
            XCTAssertTrue(message.contains("--seed 9 contradicts"), message)
            XCTAssertTrue(message.contains("--corrupt noise:0.1 contradicts"), message)
            XCTAssertTrue(message.contains("which was trained without --corrupt"), message)
            XCTAssertTrue(message.hasSuffix("drop these flags to resume, or start a new --out"), message)
        }
    }

    /// Other data with the same number of images is refused unless `allowOtherData`; the same
    /// files are accepted.
    func testOtherDataIsRefused() throws {
        let data = try TrainingFixtures.blobs("identity-a", seed: 1)
        let other = try TrainingFixtures.blobs("identity-b", seed: 2)
        let options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("identity"), steps: 2)
        try TrainingFixtures.train(options)
        var resumed = options
        resumed.resume = "auto"
        resumed.steps = 3
        resumed.data = [other]
        XCTAssertThrowsError(try TrainingFixtures.train(resumed)) { error in
            XCTAssertTrue("\(error)".contains("is not the data"), "\(error)")
            XCTAssertTrue("\(error)".contains("--allow-other-data"), "\(error)")
        }
        resumed.allowOtherData = true
        XCTAssertEqual(try TrainingFixtures.train(resumed).1.lastStep, 3)
        // The checkpoint now records the data it continued on: resuming on it again is accepted.
        resumed.allowOtherData = false
        resumed.steps = 4
        XCTAssertEqual(try TrainingFixtures.train(resumed).1.lastStep, 4)
    }

    /// `elapsed_seconds` continues across a resume, in checkpoints and in metrics.jsonl.
    func testElapsedSecondsContinue() throws {
        let data = try TrainingFixtures.blobs("elapsed")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("elapsed"), steps: 3)
        options.logEvery = 1
        let (_, first) = try TrainingFixtures.train(options)
        let before = try elapsed(checkpoint: first.checkpoint)
        XCTAssertGreaterThan(before, 0)
        options.resume = "auto"
        options.steps = 5
        let (_, second) = try TrainingFixtures.train(options)
        XCTAssertGreaterThan(try elapsed(checkpoint: second.checkpoint), before)
        let lines = try String(contentsOfFile: options.out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let records = try lines.map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        let times = records.compactMap { $0["elapsed_seconds"] as? Double }
        XCTAssertEqual(times.count, 5)
        XCTAssertEqual(times, times.sorted(), "elapsed_seconds went back: \(times)")
        XCTAssertGreaterThanOrEqual(times[3], before)
    }

    func elapsed(checkpoint: String) throws -> Double {
        var c = ModelConfiguration(height: 16, width: 16, channels: 1)
        (c.hidden, c.residualHidden, c.residualBlocks, c.codeDimension, c.codes) = (16, 8, 1, 8, 16)
        return try Checkpoint.load(path: checkpoint, into: try VQVAE(configuration: c, maxBatch: 1), optimizer: nil).elapsedSeconds
    }
}
