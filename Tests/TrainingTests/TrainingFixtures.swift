import Data
import Dist
import Foundation
import Model
import Training
import XCTest

/// Small real runs of the Training library inside the test process, which is a world of one.
enum TrainingFixtures {
    /// A fresh temporary folder.
    static func folder(_ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "vqvae-training-tests-\(getpid())-\(name)"
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// The folder of the datasets, made once per test process.
    static let dataFolder = Result { try folder("data") }

    /// `count` 16x16 grey images of soft blobs (smooth, so a small model learns them), written once
    /// per name as uint8.
    static func blobs(_ name: String, count: Int = 96, seed: UInt64 = 7) throws -> String {
        let path = try dataFolder.get() + "/\(name).h5"
        let (h, w) = (16, 16)
        var pixels = [UInt8](repeating: 0, count: count * h * w)
        for n in 0..<count {
            var random = SplitMix64(seed: seed, stream: UInt64(n))
            let (cy, cx) = (Double(random.uniform(3, 13)), Double(random.uniform(3, 13)))
            let radius = Double(random.uniform(2, 6)), level = Double(random.uniform(0.3, 1))
            for y in 0..<h { for x in 0..<w {
                let d = ((Double(y) - cy) * (Double(y) - cy) + (Double(x) - cx) * (Double(x) - cx)).squareRoot()
                let v = level / (1 + exp((d - radius) * 1.5))
                pixels[(n * h + y) * w + x] = UInt8(max(0, min(255, (v * 255).rounded())))
            } }
        }
        try ImageDataset.writeUInt8(path: path, images: pixels, shape: [count, h, w, 1])
        return path
    }

    /// Options of a small, fast VQ-VAE run on `data` into `out`.
    static func options(data: String, out: String, steps: Int) -> TrainingOptions {
        var o = TrainingOptions()
        o.data = [data]
        o.out = out
        o.steps = steps
        o.globalBatchSize = 8
        o.logEvery = 1000
        o.checkpointEvery = 0
        o.prefetch = 1
        o.watchdog = 0  // the watchdog stays armed until the process exits; a test process lives on
        o.architecture.hidden = 16
        o.architecture.residualHidden = 8
        o.architecture.residualBlocks = 1
        o.architecture.codeDimension = 8
        o.architecture.codes = 16
        return o
    }

    /// Trains with `options` in this process and returns the trainer and what its run did.
    @discardableResult
    static func train(_ options: TrainingOptions) throws -> (Trainer, Trainer.Summary) {
        let communicator = try Communicator()
        let trainer = try Trainer(options: options, communicator: communicator, console: Console())
        let summary = try trainer.run()
        return (trainer, summary)
    }

    /// Every state buffer's floats, in the state's order.
    static func snapshot(_ state: TrainingState) -> [[Float]] { state.buffers.map(\.buffer.array) }

    /// Trains `options` straight to its steps, then in the fresh folder `interrupted` to half of
    /// them and, with `resume = "auto"`, on to the end; asserts that the resumed run starts at the
    /// half and ends bit-identical to the straight one. Returns the straight run, its summary and
    /// the resumed run.
    static func assertResumeIsBitIdentical(_ options: TrainingOptions, interrupted: String, file: StaticString = #filePath,
                                           line: UInt = #line) throws -> (straight: Trainer, whole: Trainer.Summary, resumed: Trainer) {
        let (straight, whole) = try train(options)
        var options = options
        options.out = try folder(interrupted)
        let steps = options.steps
        options.steps = steps / 2
        try train(options)
        options.steps = steps
        options.resume = "auto"
        let (resumed, second) = try train(options)
        XCTAssertEqual(second.firstStep, steps / 2, file: file, line: line)
        assertBitIdentical(snapshot(resumed.state), snapshot(straight.state), file: file, line: line)
        return (straight, whole, resumed)
    }

    /// Asserts two snapshots are bit-identical, naming the first buffer that differs.
    static func assertBitIdentical(_ a: [[Float]], _ b: [[Float]], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, "buffer counts differ", file: file, line: line)
        for (index, (x, y)) in zip(a, b).enumerated() {
            let differing = zip(x, y).filter { $0.bitPattern != $1.bitPattern }.count
            XCTAssertEqual(differing, 0, "state buffer \(index): \(differing) of \(x.count) floats differ", file: file, line: line)
        }
    }
}
