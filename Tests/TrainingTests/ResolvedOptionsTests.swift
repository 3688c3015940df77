import Data
import Dist
import Foundation
import Model
import Training
import XCTest

/// `Trainer.resolvedOptions`, what `<out>/run.toml` is written from: a fresh run started from them
/// is configured exactly like the run, and a resumed run's are its checkpoint's.
final class ResolvedOptionsTests: XCTestCase {
    func trainer(_ options: TrainingOptions) throws -> Trainer {
        try Trainer(options: options, communicator: try Communicator(), console: Console())
    }

    /// Defaults that depend on other settings are resolved (the cosine decay's length, AdamW's
    /// weight decay was the launcher's, the dead-code threshold), and the resolved options
    /// configure the same run.
    func testResolvedOptionsConfigureTheSameRun() throws {
        let data = try TrainingFixtures.blobs("resolved")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("resolved-a"), steps: 7)
        options.lrSchedule = .cosine
        options.warmupSteps = 2
        options.optimizer = .adamw
        options.weightDecay = 0.01
        options.corrupt = "noise:0.1"
        let first = try trainer(options)
        let resolved = first.resolvedOptions
        XCTAssertEqual(resolved.lrDecaySteps, 7)
        XCTAssertEqual(resolved.deadCodeThreshold, TrainingOptions.defaultDeadCodeThreshold)
        XCTAssertEqual(resolved.codebookInit, .kmeans)
        XCTAssertEqual(resolved.data, [data])
        XCTAssertEqual(resolved.architecture.hidden, 16)

        var again = resolved
        again.out = try TrainingFixtures.folder("resolved-b")
        XCTAssertEqual(try trainer(again).configuration.json(), first.configuration.json())

        // A model without a codebook has no k-means start and no restart: resolved as such.
        var plain = options
        plain.architecture.model = .ae
        let ae = try trainer(plain).resolvedOptions
        XCTAssertEqual(ae.codebookInit, .sonnet)
        XCTAssertEqual(ae.deadCodeThreshold, 0)
    }

    /// A resumed run's resolved options are its checkpoint's settings, whatever the options say,
    /// with the new step count and an explicit learning rate.
    func testResumedRunResolvesToTheCheckpointsSettings() throws {
        let data = try TrainingFixtures.blobs("resolved-resume")
        var options = TrainingFixtures.options(data: data, out: try TrainingFixtures.folder("resolved-resume"), steps: 2)
        options.seed = 11
        options.corrupt = "blur:1"
        try TrainingFixtures.train(options)

        var resumed = TrainingOptions()
        resumed.data = [data]
        resumed.out = options.out
        resumed.steps = 4
        resumed.lr = 1e-4
        resumed.givenFlags = ["--lr"]
        resumed.resume = "auto"
        resumed.watchdog = 0
        let resolved = try trainer(resumed).resolvedOptions
        XCTAssertEqual(resolved.architecture.hidden, 16)
        XCTAssertEqual(resolved.architecture.codes, 16)
        XCTAssertEqual(resolved.globalBatchSize, 8)
        XCTAssertEqual(resolved.seed, 11)
        XCTAssertEqual(resolved.corrupt, "blur:1")
        XCTAssertEqual(resolved.steps, 4)
        XCTAssertEqual(resolved.lr, 1e-4)
        XCTAssertEqual(resolved.lrDecaySteps, 2, "the first run's steps")
    }
}
