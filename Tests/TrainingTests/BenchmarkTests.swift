import Dist
import Model
import Training
import XCTest

/// `vqvae bench` runs the training step fed by the sampler and the prefetcher.
final class BenchmarkTests: XCTestCase {
    func testBenchmarkTrainsFromThePrefetcherAndTimesEveryPhase() throws {
        var options = BenchmarkOptions()
        (options.architecture.hidden, options.architecture.residualHidden, options.architecture.codeDimension,
         options.architecture.codes) = (16, 8, 8, 32)
        (options.batch, options.warmup, options.steps, options.syntheticImages) = (4, 1, 3, 10)
        for prefetch in [0, 2] {
            options.prefetch = prefetch
            let report = try Benchmark.run(options, communicator: try Communicator())
            let rank = try XCTUnwrap(report.ranks.first)
            XCTAssertEqual(report.ranks.count, 1)
            XCTAssertGreaterThan(rank.imagesPerSecond, 0)
            XCTAssertGreaterThan(rank.forwardMilliseconds, 0)
            XCTAssertGreaterThan(rank.backwardMilliseconds, 0)
            XCTAssertLessThan(rank.forwardMilliseconds + rank.backwardMilliseconds, rank.millisecondsPerStep * 1.01)
            // Reading on the training thread is all waiting; the synthetic reader takes real time.
            if prefetch == 0 { XCTAssertGreaterThan(rank.dataWaitMilliseconds, 0) }
            XCTAssertLessThan(rank.dataWaitMilliseconds, rank.millisecondsPerStep)
        }
        options.syntheticImages = 3
        XCTAssertThrowsError(try Benchmark.run(options, communicator: try Communicator())) { error in
            XCTAssertTrue(error is BenchmarkError, "\(error)")
        }
    }
}
