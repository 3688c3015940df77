import Data
import Foundation
import XCTest

/// `vqvae restore` run the way a user runs it: it never overwrites an input or an existing output,
/// refuses several MPI ranks, reads folders of PNG and JPEG files (sub-folders included), stops
/// before writing anything on a damaged image (or skips it with --skip-bad), keeps gray images gray
/// and transparency as it was, reports progress on long runs and says what the model was trained for.
final class RestoreCommandTests: XCTestCase {
    static let architecture = ["--hidden", "32", "--res-hidden", "8", "--code-dim", "16", "--codes", "64"]

    struct Models {
        /// Gray, trained 100 steps to remove noise:0.2.
        let denoiser: String
        /// Gray, trained without damage (0 steps).
        let plain: String
        /// RGB, trained without damage (0 steps).
        let colour: String
    }

    static let models: Result<Models, Error> = Result {
        let folder = try CommandRunner.temporaryFolder("restore-models")
        func train(_ name: String, data: String, _ extra: [String]) throws -> String {
            let out = folder.appendingPathComponent(name)
            let result = try CommandRunner.vqvae(["train", "--data", data, "--out", out.path, "--global-batch-size", "16",
                                                  "--log-every", "100"] + extra + architecture)
            guard result.status == 0 else {
                throw NSError(domain: "RestoreCommandTests", code: 1, userInfo: [NSLocalizedDescriptionKey: result.standardError])
            }
            let steps = extra[extra.firstIndex(of: "--steps")! + 1]
            return out.appendingPathComponent("checkpoints/step-\(String(repeating: "0", count: 8 - steps.count) + steps).h5").path
        }
        // 64 colour images: smooth gradients in three different directions.
        let colourData = folder.appendingPathComponent("colour.h5").path
        var pixels = [UInt8]()
        for n in 0..<64 {
            for y in 0..<28 {
                for x in 0..<28 { pixels += [UInt8((x * 9 + n) % 256), UInt8((y * 9 + 2 * n) % 256), UInt8(((x + y) * 4 + 3 * n) % 256)] }
            }
        }
        try ImageDataset.writeUInt8(path: colourData, images: pixels, shape: [64, 28, 28, 3])
        let mnist = try PreparedData.mnist("train")
        return Models(denoiser: try train("denoiser", data: mnist, ["--steps", "100", "--lr", "2e-3", "--corrupt", "noise:0.2"]),
                      plain: try train("plain", data: mnist, ["--steps", "0"]),
                      colour: try train("colour", data: colourData, ["--steps", "0"]))
    }

    func models() throws -> Models { try Self.models.get() }

    /// A deterministic test pattern: `channels` planes and, when asked, an alpha plane.
    func image(height: Int = 40, width: Int = 36, channels: Int, alpha: Bool = false, seed: Int = 0) throws -> PNGImage {
        var pixels = [UInt8](), opacity = [UInt8]()
        for y in 0..<height {
            for x in 0..<width {
                for c in 0..<channels { pixels.append(UInt8(truncatingIfNeeded: (x * 7 + y * 13 + c * 50 + seed * 31) ^ (x * y))) }
                opacity.append(UInt8(truncatingIfNeeded: x * 11 + y * 3))
            }
        }
        return try PNGImage(height: height, width: width, channels: channels, pixels: pixels, alpha: alpha ? opacity : nil)
    }

    func restore(_ checkpoint: String, _ arguments: [String]) throws -> CommandRunner.Result {
        try CommandRunner.vqvae(["restore", "--checkpoint", checkpoint] + arguments)
    }

    /// Every file under `folder`, as sorted relative paths.
    func files(under folder: String) -> [String] {
        guard let walk = FileManager.default.enumerator(atPath: folder) else { return [] }
        var found: [String] = []
        while let path = walk.nextObject() as? String {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: folder + "/" + path, isDirectory: &isFolder), !isFolder.boolValue { found.append(path) }
        }
        return found.sorted()
    }

    func lines(_ text: String) -> [String] { text.split(separator: "\n").map(String.init) }

    /// An output that is an input (the same file however spelled, the same folder, a folder inside
    /// the input folder, the checkpoint) is refused before anything is written, and so is an
    /// existing output without --force; with --force it is replaced.
    func testNeverOverwritesInputsOrExistingOutputs() throws {
        let model = try models().denoiser
        let folder = try CommandRunner.temporaryFolder("restore-safety").path
        let png = folder + "/in.png", pngs = folder + "/pngs", h5 = folder + "/images.h5"
        try image(channels: 1).write(to: png)
        try FileManager.default.createDirectory(atPath: pngs, withIntermediateDirectories: true)
        try image(channels: 1, seed: 1).write(to: pngs + "/a.png")
        try ImageDataset.writeUInt8(path: h5, images: image(channels: 1).pixels + image(channels: 1, seed: 2).pixels, shape: [2, 40, 36, 1])
        let originals = [png, pngs + "/a.png", h5, model].map { ($0, fileBytes($0)) }

        for (arguments, expected) in [
            (["--input", png, "--out", png], "is the input"),
            (["--input", png, "--out", folder + "/./in.png"], "is the input"),
            (["--input", pngs, "--out", pngs], "is the input"),
            (["--input", pngs, "--out", pngs + "/"], "is the input"),
            (["--input", pngs, "--out", pngs + "/restored"], "inside the input folder"),
            (["--input", h5, "--out", h5], "is the input"),
            (["--input", h5, "--out", model], "is the input"),
            (["--input", png, "--out", folder + "/out.png", "--corrupt", "noise:0.1", "--damaged-out", png], "is the input"),
            (["--input", png, "--out", folder + "/out.png", "--corrupt", "noise:0.1", "--damaged-out", folder + "/out.png"], "same as --out"),
        ] {
            assertRefused(try restore(model, arguments), expected, arguments.joined(separator: " "))
        }
        for (path, original) in originals { XCTAssertEqual(fileBytes(path), original, "\(path) was changed") }
        XCTAssertEqual(files(under: pngs), ["a.png"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/out.png"))

        // Existing outputs: refused without --force, nothing written; replaced with it.
        let out = folder + "/out.png", damaged = folder + "/damaged.png"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: out))
        assertRefused(try restore(model, ["--input", png, "--out", out]), "already exists", "existing --out")
        XCTAssertEqual(fileBytes(out), Data("keep me".utf8))
        let fresh = folder + "/fresh.png"
        try Data("keep me too".utf8).write(to: URL(fileURLWithPath: damaged))
        assertRefused(try restore(model, ["--input", png, "--out", fresh, "--corrupt", "noise:0.1", "--damaged-out", damaged]),
                      "--damaged-out \(damaged) already exists", "existing --damaged-out")
        XCTAssertFalse(FileManager.default.fileExists(atPath: fresh), "nothing may be written when an output is refused")
        XCTAssertEqual(fileBytes(damaged), Data("keep me too".utf8))
        let forced = try restore(model, ["--input", png, "--out", out, "--corrupt", "noise:0.1", "--damaged-out", damaged, "--force"])
        XCTAssertEqual(forced.status, 0, forced.standardError)
        for path in [out, damaged] {
            let written = try PNGImage.read(path: path)
            XCTAssertEqual([written.height, written.width, written.channels], [40, 36, 1], path)
        }
        let h5Out = folder + "/restored.h5"
        try Data("old".utf8).write(to: URL(fileURLWithPath: h5Out))
        assertRefused(try restore(model, ["--input", h5, "--out", h5Out]), "already exists", "existing HDF5 --out")
        XCTAssertEqual(try restore(model, ["--input", h5, "--out", h5Out, "--force"]).status, 0)
        XCTAssertEqual(try ImageDataset(paths: [h5Out]).count, 2)

        // A folder that holds files is an existing output; an empty one is not.
        let restored = folder + "/restored"
        try FileManager.default.createDirectory(atPath: restored, withIntermediateDirectories: true)
        XCTAssertEqual(try restore(model, ["--input", pngs, "--out", restored]).status, 0)
        assertRefused(try restore(model, ["--input", pngs, "--out", restored]), "already exists", "existing folder")
        XCTAssertEqual(try restore(model, ["--input", pngs, "--out", restored, "--force"]).status, 0)
        XCTAssertEqual(files(under: restored), ["a.png"])
        XCTAssertFalse(files(under: folder).contains { $0.contains(".tmp-") }, "no temporary file may be left: \(files(under: folder))")

        // Even with --force, an output file may not land on an input file (an input folder inside
        // the output folder, whose tree mirrors onto itself).
        let tree = folder + "/tree"
        try FileManager.default.createDirectory(atPath: tree + "/in/in", withIntermediateDirectories: true)
        try image(channels: 1).write(to: tree + "/in/a.png")
        try image(channels: 1, seed: 5).write(to: tree + "/in/in/a.png")
        let nested = fileBytes(tree + "/in/a.png")
        assertRefused(try restore(model, ["--input", tree + "/in", "--out", tree, "--force"]), "would be written over an input image", "output onto an input")
        XCTAssertEqual(fileBytes(tree + "/in/a.png"), nested)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tree + "/a.png"))
    }

    /// Under `mpirun -np 2` every rank refuses (rank 0 says why, once) and nothing is written.
    func testSeveralRanksAreRefused() throws {
        let folder = try CommandRunner.temporaryFolder("restore-ranks").path
        try image(channels: 1).write(to: folder + "/in.png")
        let result = try CommandRunner.mpirun(ranks: 2, "vqvae", ["restore", "--checkpoint", try models().denoiser,
                                                                  "--input", folder + "/in.png", "--out", folder + "/out.png"], timeout: 120)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertEqual(result.standardError.components(separatedBy: "runs as one process").count, 2, result.standardError)
        XCTAssertTrue(result.standardError.contains("--threads"), result.standardError)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/out.png"))
        XCTAssertEqual(result.standardOutput, "", "no rank may start the job")
    }

    /// A folder of PNG and JPEG files (any case, in sub-folders) is restored into the same tree, as
    /// PNG by default or JPEG with --format jpeg; hidden files and other files are left alone.
    func testFolderOfPNGAndJPEGFilesKeepsItsTree() throws {
        let model = try models().denoiser
        let folder = try CommandRunner.temporaryFolder("restore-tree").path
        let input = folder + "/photos"
        for sub in ["sub/deeper", ".hidden"] { try FileManager.default.createDirectory(atPath: input + "/" + sub, withIntermediateDirectories: true) }
        try image(channels: 1).write(to: input + "/a.png")
        try JPEGImage.write(try image(height: 30, width: 50, channels: 1, seed: 1), to: input + "/sub/B.JPG", quality: 95)
        try JPEGImage.write(try image(height: 33, width: 29, channels: 1, seed: 2), to: input + "/sub/deeper/c.jpeg", quality: 95)
        try image(channels: 1, seed: 3).write(to: input + "/.hidden/x.png")
        try image(channels: 1, seed: 3).write(to: input + "/.y.png")
        try Data("notes".utf8).write(to: URL(fileURLWithPath: input + "/notes.txt"))

        let png = try restore(model, ["--input", input, "--out", folder + "/restored"])
        XCTAssertEqual(png.status, 0, png.standardError)
        XCTAssertEqual(lines(png.standardOutput).last?.hasPrefix("restored 3 image(s) from \(input) into \(folder)/restored in "), true, png.standardOutput)
        XCTAssertEqual(files(under: folder + "/restored"), ["a.png", "sub/B.png", "sub/deeper/c.png"])
        for (name, size) in [("a.png", [40, 36]), ("sub/B.png", [30, 50]), ("sub/deeper/c.png", [33, 29])] {
            let restored = try PNGImage.read(path: folder + "/restored/" + name)
            XCTAssertEqual([restored.height, restored.width, restored.channels], size + [1], name)
        }

        let jpeg = try restore(model, ["--input", input, "--out", folder + "/as-jpeg", "--format", "jpeg"])
        XCTAssertEqual(jpeg.status, 0, jpeg.standardError)
        XCTAssertEqual(files(under: folder + "/as-jpeg"), ["a.jpg", "sub/B.jpg", "sub/deeper/c.jpg"])
        let lowQuality = try restore(model, ["--input", input, "--out", folder + "/low", "--format", "jpeg", "--quality", "20"])
        XCTAssertEqual(lowQuality.status, 0, lowQuality.standardError)
        for name in ["a.jpg", "sub/B.jpg", "sub/deeper/c.jpg"] {
            let high = folder + "/as-jpeg/" + name, low = folder + "/low/" + name
            XCTAssertEqual(fileBytes(high)?.prefix(3), Data([0xFF, 0xD8, 0xFF]), "\(name) is a JPEG file")
            XCTAssertLessThan(fileBytes(low)?.count ?? .max, fileBytes(high)?.count ?? 0, "--quality 20 makes smaller files than 95")
            // The JPEG holds the same image as the PNG output, up to compression.
            let decoded = try JPEGImage.read(path: high), reference = try PNGImage.read(path: folder + "/restored/" + name.replacingOccurrences(of: ".jpg", with: ".png"))
            XCTAssertEqual([decoded.height, decoded.width, decoded.channels], [reference.height, reference.width, 1])
            let error = zip(decoded.pixels, reference.pixels).map { abs(Double($0) - Double($1)) }.reduce(0, +) / Double(decoded.pixels.count)
            XCTAssertLessThan(error, 4, "\(name): mean absolute difference to the PNG output")
        }

        // One file: the extension of --out picks the format; --format may not contradict it.
        let single = try restore(model, ["--input", input + "/sub/B.JPG", "--out", folder + "/single.jpg"])
        XCTAssertEqual(single.status, 0, single.standardError)
        XCTAssertEqual(fileBytes(folder + "/single.jpg")?.prefix(3), Data([0xFF, 0xD8, 0xFF]))
        assertRefused(try restore(model, ["--input", input + "/sub/B.JPG", "--out", folder + "/single.png", "--format", "jpeg"]),
                      "--format jpeg", "--format against the extension")
        // Two inputs that would land on one output name.
        try image(height: 30, width: 50, channels: 1).write(to: input + "/sub/B.png")
        assertRefused(try restore(model, ["--input", input, "--out", folder + "/clash"]), "would both be written as sub/B.png", "name clash")
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/clash"))
    }

    /// A damaged image stops a folder run before anything is written, naming it; with --skip-bad
    /// the others are restored, each skipped file is listed on its own line and the exit status is 3.
    func testDamagedImagesStopTheRunOrAreSkipped() throws {
        let model = try models().denoiser
        let folder = try CommandRunner.temporaryFolder("restore-damaged").path
        let input = folder + "/in"
        try FileManager.default.createDirectory(atPath: input + "/sub", withIntermediateDirectories: true)
        try image(channels: 1).write(to: input + "/a.png")
        try JPEGImage.write(try image(channels: 1, seed: 1), to: input + "/d.jpg", quality: 90)
        let pngBytes = fileBytes(input + "/a.png")!, jpegBytes = fileBytes(input + "/d.jpg")!
        try pngBytes.prefix(pngBytes.count / 2).write(to: URL(fileURLWithPath: input + "/b.png"))
        try jpegBytes.prefix(jpegBytes.count / 2).write(to: URL(fileURLWithPath: input + "/sub/c.jpg"))
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: input + "/e.png"))
        var flipped = jpegBytes
        flipped.replaceSubrange(jpegBytes.count / 2..<(jpegBytes.count / 2 + 40), with: [UInt8](repeating: 0xFF, count: 40))
        try flipped.write(to: URL(fileURLWithPath: input + "/f.jpg"))

        let stopped = try restore(model, ["--input", input, "--out", folder + "/out"])
        assertRefused(stopped, "\(input)/b.png", "a damaged PNG")
        XCTAssertEqual(stopped.status, 1)
        XCTAssertTrue(stopped.standardError.contains("--skip-bad"), stopped.standardError)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/out"), "nothing may be written")
        XCTAssertFalse(stopped.standardError.contains("Fatal error"))

        let skipped = try restore(model, ["--input", input, "--out", folder + "/out", "--skip-bad"])
        XCTAssertEqual(skipped.status, 3, skipped.standardError)
        XCTAssertEqual(files(under: folder + "/out"), ["a.png", "d.png"])
        let reported = lines(skipped.standardError)
        let bad = ["b.png", "e.png", "f.jpg", "sub/c.jpg"]
        XCTAssertEqual(reported.count, bad.count, skipped.standardError)
        for (line, name) in zip(reported, bad) {
            XCTAssertTrue(line.hasPrefix("warning: skipped \(input)/\(name): "), line)
        }
        XCTAssertEqual(lines(skipped.standardOutput).last?.hasPrefix("restored 2 image(s) from"), true, skipped.standardOutput)

        // A damaged single file fails with one line.
        assertRefused(try restore(model, ["--input", input + "/sub/c.jpg", "--out", folder + "/c.png"]), "c.jpg", "a truncated JPEG")
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/c.png"))
    }

    /// A gray image given to a colour model comes back gray: the mean of the colour output of the
    /// same image as three equal channels. A colour image given to a gray model is converted to luma
    /// (said once) and comes back gray. Alpha comes back byte for byte.
    func testGrayStaysGrayAndAlphaIsKept() throws {
        let m = try models()
        let folder = try CommandRunner.temporaryFolder("restore-channels").path
        let gray = try image(channels: 1)
        try gray.write(to: folder + "/gray.png")
        try gray.converted(toChannels: 3).write(to: folder + "/equal.png")
        for name in ["gray", "equal"] {
            let result = try restore(m.colour, ["--input", folder + "/\(name).png", "--out", folder + "/\(name)-out.png"])
            XCTAssertEqual(result.status, 0, result.standardError)
        }
        let grayOut = try PNGImage.read(path: folder + "/gray-out.png", alpha: .keep)
        let equalOut = try PNGImage.read(path: folder + "/equal-out.png", alpha: .keep)
        XCTAssertEqual(grayOut.channels, 1, "a gray input comes back gray")
        XCTAssertNil(grayOut.alpha)
        XCTAssertEqual(equalOut.channels, 3)
        var tint = 0, largest = 0.0
        for p in 0..<(40 * 36) {
            let rgb = equalOut.pixels[(3 * p)..<(3 * p + 3)].map(Double.init)
            tint = max(tint, Int(rgb.max()! - rgb.min()!))
            largest = max(largest, abs(rgb.reduce(0, +) / 3 - Double(grayOut.pixels[p])))
        }
        XCTAssertGreaterThan(tint, 0, "the colour model tints a gray image given as RGB (what the gray output avoids)")
        XCTAssertLessThanOrEqual(largest, 1, "the gray output is the mean of the three output channels (to rounding)")

        // Alpha is copied through, gray+alpha and RGBA alike.
        for (name, channels) in [("ga", 1), ("rgba", 3)] {
            let source = try image(channels: channels, alpha: true, seed: 4)
            try source.write(to: folder + "/\(name).png")
            let result = try restore(m.colour, ["--input", folder + "/\(name).png", "--out", folder + "/\(name)-out.png"])
            XCTAssertEqual(result.status, 0, result.standardError)
            let restored = try PNGImage.read(path: folder + "/\(name)-out.png", alpha: .keep)
            XCTAssertEqual(restored.channels, channels, name)
            XCTAssertEqual(restored.alpha, source.alpha, "\(name): the alpha bytes come back unchanged")
        }
        assertRefused(try restore(m.colour, ["--input", folder + "/rgba.png", "--out", folder + "/rgba.jpg"]), "transparency", "alpha into JPEG")
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/rgba.jpg"))

        // Colour images to a gray model: luma, written gray, said once for the folder.
        let colours = folder + "/colours"
        try FileManager.default.createDirectory(atPath: colours, withIntermediateDirectories: true)
        for seed in 0..<2 { try image(channels: 3, seed: seed).write(to: colours + "/\(seed).png") }
        try image(channels: 3, seed: 0).converted(toChannels: 1).write(to: folder + "/luma.png")
        let colourRun = try restore(m.denoiser, ["--input", colours, "--out", folder + "/colours-out"])
        XCTAssertEqual(colourRun.status, 0, colourRun.standardError)
        XCTAssertEqual(colourRun.standardError.components(separatedBy: "converted to gray").count, 2, colourRun.standardError)
        let lumaRun = try restore(m.denoiser, ["--input", folder + "/luma.png", "--out", folder + "/luma-out.png"])
        XCTAssertEqual(lumaRun.status, 0, lumaRun.standardError)
        let fromColour = try PNGImage.read(path: folder + "/colours-out/0.png", alpha: .keep)
        XCTAssertEqual(fromColour.channels, 1)
        XCTAssertEqual(fromColour, try PNGImage.read(path: folder + "/luma-out.png", alpha: .keep),
                       "a colour image restores as its ITU-R 601 luma")
    }

    /// A short restore prints nothing on standard error; a long one reports progress there, and
    /// standard output keeps its summary line.
    func testProgressOnLongRestores() throws {
        let model = try models().denoiser
        let folder = try CommandRunner.temporaryFolder("restore-progress").path
        try image(channels: 1).write(to: folder + "/small.png")
        let short = try restore(model, ["--input", folder + "/small.png", "--out", folder + "/small-out.png"])
        XCTAssertEqual(short.status, 0, short.standardError)
        XCTAssertEqual(short.standardError, "")

        // 1600x1200 with --ensemble: 8 x 4332 tiles, 10-20 s on a Zen 3 (the first line comes after
        // 4 s); a faster machine gets a larger photo until the restore lasts long enough.
        var long = CommandRunner.Result(status: -1, standardOutput: "", standardError: "")
        var seconds = 0.0
        for scale in 2...4 {
            try image(height: 800 * scale, width: 600 * scale, channels: 1).write(to: folder + "/large.png")
            let started = Date()
            long = try restore(model, ["--input", folder + "/large.png", "--out", folder + "/large-out.png", "--ensemble", "--force"])
            seconds = Date().timeIntervalSince(started)
            XCTAssertEqual(long.status, 0, long.standardError)
            if seconds > 5 { break }
        }
        let progress = lines(long.standardError)
        print("restore progress: \(progress.count) line(s) in \(String(format: "%.1f", seconds)) s; last: \(progress.last ?? "-")")
        XCTAssertGreaterThan(seconds, 5, "the large restore should be long enough to report progress")
        XCTAssertFalse(progress.isEmpty, "a restore of \(seconds) s reports progress")
        for line in progress {
            XCTAssertNotNil(line.range(of: #"^image 1/1, tiles \d+/\d+ \(\d+%\), \S+ elapsed, about \S+ left$"#, options: .regularExpression), line)
        }
        XCTAssertEqual(lines(long.standardOutput).last?.hasPrefix("restored 1 image(s) from \(folder)/large.png into \(folder)/large-out.png in "), true)
        XCTAssertTrue(long.standardOutput.hasSuffix("(tiles of 28x28)\n"), long.standardOutput)
    }

    /// A model trained without damage gets one warning line; a restoration model's damage is named.
    func testSaysWhatTheModelWasTrainedFor() throws {
        let m = try models()
        let folder = try CommandRunner.temporaryFolder("restore-trained-for").path
        try image(channels: 1).write(to: folder + "/in.png")
        let plain = try restore(m.plain, ["--input", folder + "/in.png", "--out", folder + "/plain.png"])
        XCTAssertEqual(plain.status, 0, plain.standardError)
        XCTAssertEqual(lines(plain.standardError).count, 1, plain.standardError)
        XCTAssertTrue(plain.standardError.hasPrefix("warning: \(m.plain) was trained to reconstruct clean images, not to repair damage"),
                      plain.standardError)
        XCTAssertTrue(plain.standardError.contains("reproduce the damage"), plain.standardError)
        let denoiser = try restore(m.denoiser, ["--input", folder + "/in.png", "--out", folder + "/denoised.png"])
        XCTAssertEqual(denoiser.status, 0, denoiser.standardError)
        XCTAssertEqual(denoiser.standardError, "")
        XCTAssertTrue(denoiser.standardOutput.contains("\(m.denoiser) was trained to repair noise:0.2"), denoiser.standardOutput)
    }

    /// `--noise-consistency`: on a noisy image with a black region, the denoiser's output mean comes
    /// back to the clean image's (auto: sigma estimated; a given sigma too), `off` keeps the
    /// model's own output, a model trained without noise and an input with holes are left alone,
    /// and bad values are refused.
    func testNoiseConsistencyRestoresTheMeanOfClippedNoise() throws {
        let m = try models()
        let folder = try CommandRunner.temporaryFolder("restore-noise-consistency").path
        // 192x192 gray: the left half black-ish (6/255, where noise is clipped), the right a ramp.
        let (height, width) = (192, 192)
        var pixels = [UInt8]()
        for y in 0..<height {
            for x in 0..<width { pixels.append(x < width / 2 ? 6 : UInt8(60 + (x - width / 2) + y / 2)) }
        }
        try PNGImage(height: height, width: width, channels: 1, pixels: pixels).write(to: folder + "/clean.png")
        let cleanMean = Double(pixels.reduce(0) { $0 + Int($1) }) / Double(pixels.count)
        func meanShift(_ path: String) throws -> Double {
            let image = try PNGImage.read(path: path)
            return Double(image.pixels.reduce(0) { $0 + Int($1) }) / Double(image.pixels.count) - cleanMean
        }
        var shifts: [String: Double] = [:]
        for setting in ["off", "auto", "0.2"] {
            let out = folder + "/out-\(setting).png"
            let run = try restore(m.denoiser, ["--input", folder + "/clean.png", "--out", out, "--corrupt", "noise:0.2",
                                               "--damaged-out", folder + "/damaged-\(setting).png", "--noise-consistency", setting])
            XCTAssertEqual(run.status, 0, run.standardError)
            XCTAssertEqual(run.standardError, "")
            let said = run.standardOutput.contains("matched each restoration's local means to its noisy input's")
            XCTAssertEqual(said, setting != "off", run.standardOutput)
            if setting == "auto" { XCTAssertTrue(run.standardOutput.contains("estimated from"), run.standardOutput) }
            if setting == "0.2" { XCTAssertTrue(run.standardOutput.contains("sigma 0.2000, given"), run.standardOutput) }
            shifts[setting] = try meanShift(out)
        }
        XCTAssertGreaterThan(abs(shifts["off"]!), 2, "\(shifts)")
        XCTAssertLessThan(abs(shifts["auto"]!), 1, "\(shifts)")
        XCTAssertLessThan(abs(shifts["0.2"]!), 1, "\(shifts)")

        let plain = try restore(m.plain, ["--input", folder + "/clean.png", "--out", folder + "/plain.png"])
        XCTAssertEqual(plain.status, 0, plain.standardError)
        XCTAssertFalse(plain.standardOutput.contains("matched each restoration"), plain.standardOutput)

        for bad in ["0", "0.6", "-0.1", "often"] {
            let result = try restore(m.denoiser, ["--input", folder + "/clean.png", "--out", folder + "/bad.png", "--noise-consistency=\(bad)"])
            XCTAssertEqual(result.status, 2, result.standardError)
            XCTAssertTrue(result.standardError.hasPrefix("error: --noise-consistency must be auto, off or a sigma in (0, 0.5] (got \(bad))"),
                          result.standardError)
        }
        assertRefused(try restore(m.denoiser, ["--input", folder + "/clean.png", "--out", folder + "/masked.png",
                                               "--mask", folder + "/clean.png", "--noise-consistency", "0.1"]),
                      "--noise-consistency 0.1 cannot be used with --mask", "a given sigma with --mask")
        assertRefused(try restore(m.denoiser, ["--input", folder + "/clean.png", "--out", folder + "/masked.png",
                                               "--corrupt", "noise:0.1,mask:0.25", "--noise-consistency", "0.1"]),
                      "--noise-consistency 0.1 needs an input damaged by noise alone; --corrupt noise:0.1,mask:0.25 does more",
                      "a given sigma with a mask in --corrupt")
        let holes = try restore(m.denoiser, ["--input", folder + "/clean.png", "--out", folder + "/holes.png", "--corrupt", "noise:0.1,mask:0.25"])
        XCTAssertEqual(holes.status, 0, holes.standardError)
        XCTAssertFalse(holes.standardOutput.contains("matched each restoration"), holes.standardOutput)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/bad.png"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/masked.png"))
    }
}
