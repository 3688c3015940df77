import Data
import Foundation
import Model
import XCTest

/// Whole photos of different sizes through the built binary and `mpirun`: what
/// `scripts/prepare_data.py --whole` writes, `inspect`, random crops on 1 and 2 ranks, resume, and
/// malformed files ending every rank.
final class WholePhotosTests: XCTestCase {
    static let small = ["--hidden", "16", "--res-hidden", "8", "--code-dim", "8", "--codes", "32"]

    /// `count` RGB images of smooth gradients and a blob, 16 to 40 pixels on each side, as a file
    /// of images of different sizes.
    static func photos(_ path: String, count: Int = 24, seed: UInt64 = 3) throws {
        var images: [[UInt8]] = [], shapes: [(height: Int, width: Int, channels: Int)] = []
        for n in 0..<count {
            var random = SplitMix64(seed: seed, stream: UInt64(n))
            let h = 16 + random.below(25), w = 16 + random.below(25)
            let (cy, cx, radius) = (random.uniform(0, Float(h)), random.uniform(0, Float(w)), random.uniform(3, 8))
            var pixels = [UInt8](repeating: 0, count: h * w * 3)
            for y in 0..<h { for x in 0..<w {
                let inside = (Float(y) - cy) * (Float(y) - cy) + (Float(x) - cx) * (Float(x) - cx) < radius * radius
                for c in 0..<3 {
                    let v = inside ? 0.9 - 0.3 * Float(c) : (Float(y) / Float(h) + Float(x * (c + 1)) / Float(3 * w)) / 2
                    pixels[(y * w + x) * 3 + c] = UInt8(max(0, min(255, (v * 255).rounded())))
                }
            } }
            images.append(pixels)
            shapes.append((h, w, 3))
        }
        try VariableSizeDataset.write(path: path, images: images, shapes: shapes, chunkBytes: 2048)
    }

    static let data: Result<String, Error> = Result {
        let path = try CommandRunner.temporaryFolder("whole-photos-data").appendingPathComponent("photos.h5").path
        try photos(path)
        return path
    }

    /// A folder of PNG and JPEG photos of different sizes in class sub-folders: `prepare_data.py
    /// folder:DIR --whole` keeps every one at its size, `inspect` describes the file, `train --crop`
    /// reads it, and the commands that need one size refuse it in one line.
    func testPreparedFolderTrainsOnCropsAndIsDescribed() throws {
        let folder = try CommandRunner.temporaryFolder("whole-folder")
        let pictures = folder.appendingPathComponent("pictures")
        let sizes = [(40, 28), (23, 50), (64, 64), (31, 17)]
        for (n, (h, w)) in sizes.enumerated() {
            let sub = pictures.appendingPathComponent(n % 2 == 0 ? "cats" : "dogs")
            try FileManager.default.createDirectory(at: sub, withIntermediateDirectories: true)
            let pixels = (0..<(h * w * 3)).map { UInt8(truncatingIfNeeded: $0 * 7 + n) }
            try PNGImage(height: h, width: w, channels: 3, pixels: pixels).write(to: sub.appendingPathComponent("p\(n).png").path)
        }
        let out = folder.appendingPathComponent("data").path
        let script = CommandRunner.packageRoot.appendingPathComponent("scripts/prepare_data.py").path
        let prepared = try CommandRunner.run(URL(fileURLWithPath: "/usr/bin/env"),
                                             ["python3", script, "folder:" + pictures.path, "--whole", "--name", "pics", "--out", out])
        XCTAssertEqual(prepared.status, 0, prepared.standardError)
        let file = out + "/pics-whole.h5"
        let described = try CommandRunner.vqvae(["inspect", file])
        XCTAssertEqual(described.status, 0, described.standardError)
        // Sorted by path: cats/p0 (40x28), cats/p2 (64x64), dogs/p1 (23x50), dogs/p3 (31x17).
        XCTAssertTrue(described.standardOutput.contains("N=4 C=3 uint8, H 23..64, W 17..64; smallest 31x17 (image 3), 20679 pixel bytes"),
                      described.standardOutput)
        XCTAssertTrue(described.standardOutput.contains("labels: 4 int64, values 0..1, 2 distinct"), described.standardOutput)
        // The bytes are the PNGs' own.
        let dataset = try VariableSizeDataset(paths: [file])
        let region = FloatBuffer(count: 64 * 64 * 3)
        try dataset.readRegion(index: 1, top: 0, left: 0, height: 64, width: 64, into: region.pointer)
        XCTAssertEqual(region.array.map { UInt8((($0 + 0.5) * 255).rounded()) }, (0..<(64 * 64 * 3)).map { UInt8(truncatingIfNeeded: $0 * 7 + 2) })

        let run = try CommandRunner.temporaryFolder("whole-folder-run")
        let trained = try CommandRunner.vqvae(["train", "--data", file, "--out", run.path, "--steps", "2", "--crop", "16",
                                               "--global-batch-size", "4", "--augment", "flips", "--sample-every", "2"] + Self.small)
        XCTAssertEqual(trained.status, 0, trained.standardError)
        XCTAssertTrue(trained.standardOutput.contains("4 images of different sizes, random 16x16 crops (flips) from \(file)"), trained.standardOutput)
        XCTAssertTrue(FileManager.default.fileExists(atPath: run.appendingPathComponent("samples/step-00000002.png").path))
        let checkpoint = run.appendingPathComponent("checkpoints/step-00000002.h5").path

        let refusedRun = try CommandRunner.temporaryFolder("whole-folder-refused")
        assertRefused(try CommandRunner.vqvae(["train", "--data", file, "--out", refusedRun.path, "--steps", "2"] + Self.small),
                      "error: \(file) holds images of different sizes; train on random crops of them with --crop S", "train without --crop")
        assertRefused(try CommandRunner.vqvae(["train", "--data", file, "--out", refusedRun.path, "--steps", "2", "--crop", "20"] + Self.small),
                      "--crop 20: image 3 of \(file) is 31x17, smaller than 20x20 (the smallest image of --data)", "a crop larger than an image")
        assertRefused(try CommandRunner.vqvae(["eval", "--checkpoint", checkpoint, "--data", file]),
                      "holds images of different sizes ('pixels', 'shapes', 'offsets'); this command reads images of one size", "eval")
        let usage = try CommandRunner.vqvae(["train", "--data", file, "--out", refusedRun.path, "--augment", "dihedral"])
        XCTAssertEqual(usage.status, 2)
        XCTAssertTrue(usage.standardError.contains("--augment dihedral turns training crops; it needs --crop S"), usage.standardError)
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: refusedRun.appendingPathComponent("checkpoints").path)) ?? [], [])
    }

    /// W = 1 and 2 ranks with the same global batch and seed train the same model on random
    /// dihedral crops with corruptions (the crops are keyed by sample, not by rank).
    func testOneAndTwoRanksTrainTheSameOnCrops() throws {
        let data = try Self.data.get()
        var folders: [String] = []
        for ranks in [1, 2] {
            let out = try CommandRunner.temporaryFolder("whole-equivalence-\(ranks)")
            let result = try CommandRunner.mpirun(ranks: ranks, "vqvae", [
                "train", "--data", data, "--out", out.path, "--steps", "5", "--global-batch-size", "8", "--seed", "7",
                "--checkpoint-every", "1", "--log-every", "1", "--crop", "16", "--augment", "dihedral", "--corrupt", "noise:0.1",
                "--hidden", "32", "--res-hidden", "16", "--code-dim", "16", "--codes", "64", "--sync-check-every", "1"])
            XCTAssertEqual(result.status, 0, result.standardError)
            XCTAssertTrue(result.standardOutput.contains("\(ranks) rank(s) x batch \(8 / ranks)"), result.standardOutput)
            folders.append(out.appendingPathComponent("checkpoints").path)
        }
        try assertWorldSizesAgree(checkpointFolders: folders, label: "random crops, W = 2")
    }

    /// On 2 ranks, 6 steps straight and 3 + 3 resumed (without the crop flags, which come back from
    /// the checkpoint) end bit for bit alike.
    func testCropRunResumesBitIdenticallyOnTwoRanks() throws {
        let data = try Self.data.get()
        let flags = ["--global-batch-size", "8", "--seed", "2", "--crop", "16", "--augment", "dihedral",
                     "--corrupt", "noise:0.05..0.2,mask:0.2"] + Self.small
        let straight = try CommandRunner.temporaryFolder("whole-straight"), split = try CommandRunner.temporaryFolder("whole-split")
        for (out, steps) in [(straight, "6"), (split, "3")] {
            let result = try CommandRunner.mpirun(ranks: 2, "vqvae", ["train", "--data", data, "--out", out.path, "--steps", steps] + flags)
            XCTAssertEqual(result.status, 0, result.standardError)
        }
        let resumed = try CommandRunner.mpirun(ranks: 2, "vqvae", ["train", "--data", data, "--out", split.path, "--steps", "6",
                                                                   "--resume", "auto"])
        XCTAssertEqual(resumed.status, 0, resumed.standardError)
        XCTAssertTrue(resumed.standardOutput.contains("random 16x16 crops (dihedral)"), resumed.standardOutput)
        let result = try CommandRunner.script("compare_hdf5_datasets.py", [straight.appendingPathComponent("checkpoints/step-00000006.h5").path,
                                                                          split.appendingPathComponent("checkpoints/step-00000006.h5").path,
                                                                          "--min-datasets", "21", "--same-position"])
        XCTAssertEqual(result.status, 0, result.standardError)
        let settings = try LoadedCheckpoint.configuration(split.appendingPathComponent("checkpoints/step-00000006.h5").path)["data"] as? [String: Any]
        XCTAssertEqual(settings?["crop"] as? Int, 16)
        XCTAssertEqual(settings?["augment"] as? String, "dihedral")
    }

    /// A malformed file (its offsets skip a byte) ends a 2-rank job within seconds, with the one
    /// message naming the file, before anything is written.
    func testMalformedFileEndsEveryRank() throws {
        let folder = try CommandRunner.temporaryFolder("whole-malformed")
        let path = folder.appendingPathComponent("bad.h5").path
        let made = try CommandRunner.run(URL(fileURLWithPath: "/usr/bin/env"), ["python3", "-c", """
            import h5py, numpy as np, sys
            with h5py.File(sys.argv[1], "w") as f:
                f.create_dataset("pixels", data=np.zeros(40 * 40 * 2 + 1, np.uint8))
                f.create_dataset("shapes", data=np.array([[40, 40, 1], [40, 40, 1]]))
                f.create_dataset("offsets", data=np.array([0, 1601, 3201]))
            """, path])
        XCTAssertEqual(made.status, 0, made.standardError)
        let out = try CommandRunner.temporaryFolder("whole-malformed-out")
        let start = Date()
        let result = try CommandRunner.mpirun(ranks: 2, "vqvae", ["train", "--data", path, "--out", out.path, "--steps", "2", "--crop", "16",
                                                                  "--global-batch-size", "2"] + Self.small, timeout: 120)
        let seconds = Date().timeIntervalSince(start)
        print("a malformed file ended the 2-rank job in \(String(format: "%.2f", seconds)) s")
        XCTAssertNotEqual(result.status, 0)
        XCTAssertLessThan(seconds, 15)
        XCTAssertTrue(result.standardError.contains("error: \(path): 'offsets' goes from 0 to 1601 for image 0, but its 40x40x1 pixels take 1600 bytes"),
                      result.standardError)
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: out.appendingPathComponent("checkpoints").path)) ?? [], [])
    }
}
