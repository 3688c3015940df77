import Data
import Foundation
import XCTest

/// `vqvae train` run as a user runs it: the built binary, real files, exit codes and messages.
final class TrainCommandTests: XCTestCase {
    /// Writes a small HDF5 file with h5py (Tests/Scripts/make_hdf5_fixture.py and its `options`:
    /// `--shape`, `--dtype`, `--key`, values).
    func makeFile(_ name: String, _ options: [String]) throws -> String {
        let folder = try CommandRunner.temporaryFolder("input-\(name)")
        let path = folder.appendingPathComponent(name).path
        let result = try CommandRunner.script("make_hdf5_fixture.py", [path] + options)
        XCTAssertEqual(result.status, 0, "h5py could not write the test file: \(result.standardError)")
        return path
    }

    /// Asserts a non-zero exit and exactly one line on standard error that contains `fragment`.
    func assertCleanFailure(_ arguments: [String], mentions fragment: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let out = try CommandRunner.temporaryFolder("failure-out")
        let result = try CommandRunner.vqvae(["train", "--out", out.path, "--steps", "2"] + arguments, file: file, line: line)
        XCTAssertNotEqual(result.status, 0, "expected a failure for \(arguments)", file: file, line: line)
        let lines = result.standardError.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "expected one line on stderr, got:\n\(result.standardError)", file: file, line: line)
        XCTAssertTrue(result.standardError.contains(fragment),
                      "stderr should mention '\(fragment)': \(result.standardError)", file: file, line: line)
        XCTAssertFalse(result.standardError.contains("Fatal error"), file: file, line: line)
        let checkpoints = out.appendingPathComponent("checkpoints")
        let written = (try? FileManager.default.contentsOfDirectory(atPath: checkpoints.path)) ?? []
        XCTAssertTrue(written.isEmpty, "no checkpoint may be written on bad input: \(written)", file: file, line: line)
    }

    func testMissingFile() throws {
        try assertCleanFailure(["--data", "/nonexistent/train.h5"], mentions: "/nonexistent/train.h5: no such file")
    }

    func testNotAnHDF5File() throws {
        let folder = try CommandRunner.temporaryFolder("text")
        let path = folder.appendingPathComponent("notes.h5").path
        try "just text".write(toFile: path, atomically: true, encoding: .utf8)
        try assertCleanFailure(["--data", path], mentions: "not an HDF5 file")
    }

    func testMissingImagesDataset() throws {
        let path = try makeFile("noimages.h5", ["--key", "pixels", "--shape", "8,8,8,1"])
        try assertCleanFailure(["--data", path], mentions: "no dataset 'images'")
    }

    func testWrongRank() throws {
        let path = try makeFile("rank3.h5", ["--shape", "64,8,8"])
        try assertCleanFailure(["--data", path], mentions: "expected 4 dimensions")
    }

    func testWrongChannels() throws {
        let path = try makeFile("c4.h5", ["--shape", "64,8,8,4"])
        try assertCleanFailure(["--data", path], mentions: "expected C = 1 or 3")
    }

    func testWrongDtype() throws {
        let path = try makeFile("int16.h5", ["--shape", "64,8,8,3", "--dtype", "int16"])
        try assertCleanFailure(["--data", path], mentions: "dtype int16; expected uint8 or float32")
    }

    func testSizeNotDivisibleByDownsampling() throws {
        let path = try makeFile("odd.h5", ["--shape", "64,10,8,3"])
        try assertCleanFailure(["--data", path], mentions: "not divisible by 2^down = 4")
    }

    func testFewerImagesThanOneBatch() throws {
        let path = try makeFile("few.h5", ["--shape", "20,8,8,3"])
        try assertCleanFailure(["--data", path, "--global-batch-size", "32"], mentions: "fewer than one global batch of 32")
    }

    func testFilesThatDisagree() throws {
        let a = try makeFile("a.h5", ["--shape", "40,8,8,3"])
        let b = try makeFile("b.h5", ["--shape", "40,8,8,1"])
        try assertCleanFailure(["--data", a, b], mentions: "all files must agree")
    }

    func testRefusesToOverwriteAnEarlierRun() throws {
        let data = try makeFile("ok.h5", ["--shape", "40,8,8,3", "--random-bytes", "0"])
        let out = try CommandRunner.temporaryFolder("twice")
        let tiny = ["--hidden", "8", "--res-hidden", "4", "--code-dim", "4", "--codes", "8", "--global-batch-size", "4"]
        let first = try CommandRunner.vqvae(["train", "--data", data, "--out", out.path, "--steps", "0"] + tiny)
        XCTAssertEqual(first.status, 0, first.standardError)
        let path = out.appendingPathComponent("checkpoints/step-00000000.h5").path
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let second = try CommandRunner.vqvae(["train", "--data", data, "--out", out.path, "--steps", "0"] + tiny)
        XCTAssertNotEqual(second.status, 0)
        XCTAssertTrue(second.standardError.contains("already holds checkpoints"), second.standardError)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before, "the earlier checkpoint must be untouched")
    }

    func testHelpDocumentsEveryFlag() throws {
        let result = try CommandRunner.vqvae(["train", "--help"])
        XCTAssertEqual(result.status, 0)
        for flag in ["--data", "--out", "--steps", "--global-batch-size", "--lr", "--seed", "--no-shuffle", "--hidden",
                     "--res-hidden", "--res-blocks", "--down", "--code-dim", "--codes", "--commitment", "--decay",
                     "--ema-eps", "--codebook", "--log-every", "--checkpoint-every", "--kmeans-init", "--images-key",
                     "--threads", "--weight-decay", "--crop", "--augment", "--crops-per-image"] {
            XCTAssertTrue(result.standardOutput.contains(flag), "train --help does not mention \(flag)")
        }
    }

    /// `--steps 0` writes the initial checkpoint; the same seed gives the same weights, another seed
    /// different ones; h5py reads the spec's layout.
    func testInitialCheckpointIsDeterministicAndReadableByH5py() throws {
        let data = try PreparedData.mnist("test")
        var paths: [String] = []
        for (name, seed) in [("a", "7"), ("b", "7"), ("c", "8")] {
            let out = try CommandRunner.temporaryFolder("init-\(name)")
            // The spec's (Sonnet's) start: check_initial_checkpoint.py checks E ~ N(0, 1), N = 0, M = E.
            let result = try CommandRunner.vqvae(["train", "--data", data, "--out", out.path, "--steps", "0", "--seed", seed,
                                                  "--codebook-init", "sonnet"])
            XCTAssertEqual(result.status, 0, result.standardError)
            let path = out.appendingPathComponent("checkpoints/step-00000000.h5").path
            XCTAssertTrue(result.standardOutput.contains(path), result.standardOutput)
            paths.append(path)
        }
        // The same seed gives identical tensors.
        let same = try CommandRunner.script("compare_hdf5_datasets.py", [paths[0], paths[1]])
        XCTAssertEqual(same.status, 0, same.standardError)
        XCTAssertEqual(same.standardOutput, "identical\n")
        // h5py reads the layout of spec/checkpoint.md; another seed gives other weights.
        let result = try CommandRunner.script("check_initial_checkpoint.py", [paths[0], paths[2]])
        XCTAssertEqual(result.status, 0, result.standardError)
        // 662,723 parameters for C = 3 (spec/model.md: about 663k); C = 1 has 2*1024 fewer weights
        // in the first and last layers and 2 fewer biases.
        XCTAssertEqual(result.standardOutput, "ok 658625\n")
    }

    /// The same seed and flags give the same run, bit for bit, shuffling included.
    func testSameSeedGivesTheSameRun() throws {
        let data = try PreparedData.mnist("test")
        let small = ["--hidden", "16", "--res-hidden", "8", "--code-dim", "8", "--codes", "32", "--global-batch-size", "8"]
        var paths: [String] = []
        for name in ["a", "b"] {
            let out = try CommandRunner.temporaryFolder("same-run-\(name)")
            let result = try CommandRunner.vqvae(["train", "--data", data, "--out", out.path, "--steps", "6", "--seed", "3"] + small)
            XCTAssertEqual(result.status, 0, result.standardError)
            paths.append(out.appendingPathComponent("checkpoints/step-00000006.h5").path)
        }
        let result = try CommandRunner.script("compare_hdf5_datasets.py", paths + ["--min-datasets", "11"])
        XCTAssertEqual(result.status, 0, result.standardError)
        XCTAssertEqual(result.standardOutput, "identical\n")
        let run = try LoadedCheckpoint(paths[0])
        XCTAssertEqual(run.state.samplesSeen, 48)
        XCTAssertEqual(run.optimizer.step, 6)
    }

    /// A short run on real MNIST digits: the loss falls by more than half, and the progress line,
    /// metrics and final checkpoint are there.
    func testTrainingOnMNISTReducesTheLoss() throws {
        let data = try PreparedData.mnist("train")
        let out = try CommandRunner.temporaryFolder("mnist-run")
        let result = try CommandRunner.vqvae(["train", "--data", data, "--out", out.path, "--steps", "150",
                                              "--log-every", "10", "--checkpoint-every", "100", "--kmeans-init",
                                              "--hidden", "64", "--res-hidden", "16", "--code-dim", "32", "--codes", "128"])
        XCTAssertEqual(result.status, 0, result.standardError)
        let metrics = try String(contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(metrics.count, 16)  // step 1, then every 10 steps
        let first = metrics.first!["mse"] as! Double, last = metrics.last!["mse"] as! Double
        print("MNIST reconstruction MSE: \(first) at step 1 -> \(last) at step 150")
        XCTAssertLessThan(last, first / 2, "the reconstruction loss should at least halve")
        XCTAssertLessThan(last, 0.03)
        for name in ["step-00000100.h5", "step-00000150.h5"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("checkpoints/\(name)").path), name)
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: out.appendingPathComponent("checkpoints").path)
            .filter { $0.hasPrefix(".") }
        XCTAssertEqual(leftovers, [], "no temporary files may remain")
        XCTAssertTrue(result.standardOutput.contains("step 150/150"))
        XCTAssertTrue(result.standardOutput.contains("img/s"))
    }
}
