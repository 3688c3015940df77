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

    /// The learning-rate schedule, clipping and AdamW are stored in the configuration and resumed
    /// bit for bit: three steps, then three more, end where six straight steps end; the metrics
    /// record each step's rate and gradient norm.
    func testTrainingControlsAreStoredAndResumedBitExactly() throws {
        let data = try TrainingFixtures.blobs("training-controls")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("controls-straight"), steps: 6)
        options.optimizer = .adamw
        options.weightDecay = 0.05
        options.lr = 2e-3
        options.warmupSteps = 2
        options.lrSchedule = .cosine
        options.lrMin = 1e-4
        options.lrDecaySteps = 6  // the interrupted run's first part asks for 3 steps
        options.clipGradNorm = 0.05
        options.logEvery = 1
        options.seed = 3
        let (straight, _) = try TrainingFixtures.train(options)
        let optimizer = straight.configuration.optimizer
        XCTAssertEqual(optimizer.name, "adamw")
        XCTAssertEqual(optimizer.schedule, LearningRateSchedule(kind: .cosine, base: 2e-3, warmupSteps: 2, minimum: 1e-4, decaySteps: 6))
        XCTAssertEqual(optimizer.clipGradNorm, 0.05)
        XCTAssertTrue(straight.state.optimizer.decoupled)

        options.out = try TrainingFixtures.folder("controls-split")
        options.steps = 3
        try TrainingFixtures.train(options)
        // Resumed without the flags: they come from the checkpoint (the cosine still ends at step 6).
        var resumed = TrainingFixtures.options(data: data, out: options.out, steps: 6)
        resumed.resume = "auto"
        resumed.logEvery = 1
        let (trainer, _) = try TrainingFixtures.train(resumed)
        TrainingFixtures.assertBitIdentical(TrainingFixtures.snapshot(trainer.state), TrainingFixtures.snapshot(straight.state))

        let lines = try String(contentsOfFile: options.out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let records = try lines.map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        let rates = records.compactMap { ($0["lr"] as? NSNumber)?.doubleValue }
        let expected = (0..<6).map { Double(optimizer.schedule.rate(completedSteps: $0)) }
        XCTAssertEqual(rates.count, 6)
        for (rate, want) in zip(rates, expected) { XCTAssertEqual(rate, want, accuracy: 1e-12) }
        XCTAssertEqual(rates[0], 1e-3, accuracy: 1e-9)
        XCTAssertEqual(rates[5], Double(Float(1e-4 + 1.9e-3 * 0.5 * (1 + cos(Double.pi * 3 / 4)))), accuracy: 1e-9)
        let norms = records.compactMap { ($0["grad_norm"] as? NSNumber)?.doubleValue }
        XCTAssertEqual(norms.count, 6)
        XCTAssertTrue(norms.allSatisfy { $0 > 0.05 }, "the clipping was never exercised: \(norms)")

        resumed.steps = 7
        resumed.clipGradNorm = 1
        resumed.optimizer = .adam
        resumed.givenFlags = ["--clip-grad-norm", "--optimizer"]
        XCTAssertThrowsError(try TrainingFixtures.train(resumed)) { error in
            XCTAssertTrue("\(error)".contains("--clip-grad-norm 1.0 contradicts"), "\(error)")
            XCTAssertTrue("\(error)".contains("which was trained with --clip-grad-norm 0.05"), "\(error)")
            XCTAssertTrue("\(error)".contains("--optimizer adam contradicts"), "\(error)")
        }
    }

    /// Clipping changes the update exactly as scaling the averaged gradient would: a clipped run
    /// differs from an unclipped one, and a bound above every norm changes nothing.
    func testClippingAboveTheNormChangesNothing() throws {
        let data = try TrainingFixtures.blobs("clip-bound")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("clip-off"), steps: 3)
        let (plain, _) = try TrainingFixtures.train(options)
        options.out = try TrainingFixtures.folder("clip-high")
        options.clipGradNorm = 1e9
        let (high, _) = try TrainingFixtures.train(options)
        TrainingFixtures.assertBitIdentical(TrainingFixtures.snapshot(high.state), TrainingFixtures.snapshot(plain.state))
        options.out = try TrainingFixtures.folder("clip-low")
        options.clipGradNorm = 1e-3
        let (low, _) = try TrainingFixtures.train(options)
        XCTAssertNotEqual(low.model.parameters.values.array, plain.model.parameters.values.array)
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
