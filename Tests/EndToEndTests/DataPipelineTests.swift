import Data
import Foundation
import XCTest

/// The data pipeline through the `vqvae` binary: bad files, corruption specs, prefetching,
/// `vqvae inspect`.
final class DataPipelineTests: XCTestCase {
    func script(_ name: String, _ arguments: [String]) throws {
        let result = try CommandRunner.script(name, arguments)
        XCTAssertEqual(result.status, 0, result.standardError)
    }

    let small = ["--hidden", "8", "--res-hidden", "4", "--code-dim", "4", "--codes", "8", "--global-batch-size", "4"]

    func assertOneLineFailure(_ arguments: [String], mentions fragment: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let out = try CommandRunner.temporaryFolder("pipeline-failure")
        let result = try CommandRunner.vqvae(["train", "--out", out.path, "--steps", "2"] + small + arguments)
        XCTAssertNotEqual(result.status, 0, file: file, line: line)
        XCTAssertEqual(result.standardError.split(separator: "\n").count, 1, result.standardError, file: file, line: line)
        XCTAssertTrue(result.standardError.contains(fragment), "expected '\(fragment)' in: \(result.standardError)", file: file, line: line)
        let written = (try? FileManager.default.contentsOfDirectory(atPath: out.appendingPathComponent("checkpoints").path)) ?? []
        XCTAssertEqual(written, [], file: file, line: line)
    }

    func testTruncatedFile() throws {
        let folder = try CommandRunner.temporaryFolder("truncated")
        let path = folder.appendingPathComponent("t.h5").path
        try script("make_hdf5_fixture.py", [path, "--shape", "64,16,16,3", "--random-bytes", "0", "--truncate-half"])
        try assertOneLineFailure(["--data", path], mentions: path)
    }

    func testHeaderFarLargerThanMemory() throws {
        let folder = try CommandRunner.temporaryFolder("huge")
        let many = folder.appendingPathComponent("many.h5").path, wide = folder.appendingPathComponent("wide.h5").path
        // 10^13 images: a header, no data.
        try script("make_hdf5_fixture.py", [many, "--shape", "10000000000000,8,8,3", "--chunks", "1,8,8,3", "--unwritten"])
        // Images of 2^20 x 2^20 pixels.
        try script("make_hdf5_fixture.py", [wide, "--shape", "8,1048576,1048576,3", "--chunks", "1,64,64,3", "--unwritten"])
        try assertOneLineFailure(["--data", many], mentions: "the header claims 10000000000000 images")
        try assertOneLineFailure(["--data", wide], mentions: "images of 1048576x1048576x3 are too large")
    }

    func testMisnamedDatasetAndUnknownCorruption() throws {
        let data = try PreparedData.mnist("test")
        try assertOneLineFailure(["--data", data, "--images-key", "pixels"], mentions: "no dataset 'pixels'")
        try assertOneLineFailure(["--data", data, "--corrupt", "noise:0.1,sharpen:2"], mentions: "unknown corruption 'sharpen'")
        try assertOneLineFailure(["--data", data, "--corrupt", "noise:-1"], mentions: "noise")
        try assertOneLineFailure(["--data", "/nonexistent/shard-*.h5"], mentions: "no file matches")
    }

    /// Corrupted training does not depend on prefetching: with prefetch 0 and 3, the runs are bit
    /// identical; a glob reads the files in sorted order.
    func testPrefetchingDoesNotChangeTheRun() throws {
        let data = try PreparedData.mnist("test")
        var paths: [String] = []
        for depth in ["0", "3"] {
            let out = try CommandRunner.temporaryFolder("prefetch-\(depth)")
            let result = try CommandRunner.vqvae(["train", "--data", data, "--out", out.path, "--steps", "6", "--prefetch", depth,
                                                  "--corrupt", "noise:0.2,mask:0.3:noise,blur:1,dark:2:0.7,saltpepper:0.05",
                                                  "--tail", "wrap"] + small)
            XCTAssertEqual(result.status, 0, result.standardError)
            paths.append(out.appendingPathComponent("checkpoints/step-00000006.h5").path)
        }
        let result = try CommandRunner.script("compare_hdf5_datasets.py", paths)
        XCTAssertEqual(result.standardOutput, "identical\n", result.standardError)
        let settings = try LoadedCheckpoint.configuration(paths[0])["data"] as? [String: Any]
        XCTAssertEqual(settings?["corrupt"] as? String, "noise:0.2,mask:0.3:noise,blur:1,dark:2:0.7,saltpepper:0.05")
        XCTAssertEqual(settings?["tail"] as? String, "wrap")
        XCTAssertEqual(try LoadedCheckpoint(paths[0]).state.data["wrap"], 1)
    }

    func testInspectDescribesDatasetsAndCheckpoints() throws {
        let data = try PreparedData.mnist("train")
        let described = try CommandRunner.vqvae(["inspect", data])
        XCTAssertEqual(described.status, 0, described.standardError)
        XCTAssertTrue(described.standardOutput.contains("images: N=4000 H=28 W=28 C=1 uint8"), described.standardOutput)
        XCTAssertTrue(described.standardOutput.contains("chunks: (64, 28, 28, 1)"), described.standardOutput)
        XCTAssertTrue(described.standardOutput.contains("labels: 4000 int64, values 0..9, 10 distinct"), described.standardOutput)

        let out = try CommandRunner.temporaryFolder("inspect-run")
        XCTAssertEqual(try CommandRunner.vqvae(["train", "--data", data, "--out", out.path, "--steps", "0"] + small).status, 0)
        let checkpoint = out.appendingPathComponent("checkpoints/step-00000000.h5").path
        let inspected = try CommandRunner.vqvae(["inspect", checkpoint])
        XCTAssertEqual(inspected.status, 0, inspected.standardError)
        for fragment in ["checkpoint (format version 1)", "model vqvae, step 0", "/model/encoder/down0/weight [4, 1, 4, 4] float32",
                         "checksums: all 93 tensors verify"] {
            XCTAssertTrue(inspected.standardOutput.contains(fragment), "missing '\(fragment)' in\n\(inspected.standardOutput)")
        }
        // Damage one tensor: inspect names it and fails.
        try script("damage_hdf5_dataset.py", [checkpoint, "model/encoder/conv/weight", "--offset", "40", "--xor", "0x55"])
        let damaged = try CommandRunner.vqvae(["inspect", checkpoint])
        XCTAssertNotEqual(damaged.status, 0)
        XCTAssertTrue(damaged.standardError.contains("damaged checkpoint: checksum or read failure in /model/encoder/conv/weight"),
                      damaged.standardError)
        XCTAssertEqual(damaged.standardError.split(separator: "\n").count, 1, damaged.standardError)
    }
}
