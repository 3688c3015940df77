import Data
import Foundation
import Model
import XCTest

/// `train-prior`, `compress` and `decompress` through the built binary and `mpirun`: the prior on 1
/// and 2 ranks, its exact resume, the round trip against the model's own reconstruction, and the
/// refusals of the wrong model, prior and damaged files.
final class CodecCommandsTests: XCTestCase {
    static let model = ["--hidden", "16", "--res-hidden", "8", "--code-dim", "8", "--codes", "32", "--codebooks", "2",
                        "--quantizer-dropout"]

    /// A small residual-VQ model (2 codebooks of 32, down 2) trained 20 steps on crops of photos of
    /// different sizes as one process, and a second one of another seed on 2 ranks.
    static let checkpoints: Result<(String, String), Error> = Result {
        let data = try WholePhotosTests.data.get()
        var paths: [String] = []
        for seed in ["1", "2"] {
            let out = try CommandRunner.temporaryFolder("codec-model-\(seed)")
            let arguments = ["train", "--data", data, "--out", out.path, "--steps", "20", "--crop", "16",
                             "--global-batch-size", "8", "--seed", seed] + model
            let result = seed == "1" ? try CommandRunner.vqvae(arguments) : try CommandRunner.mpirun(ranks: 2, "vqvae", arguments)
            guard result.status == 0 else {
                throw NSError(domain: "CodecCommandsTests", code: 1, userInfo: [NSLocalizedDescriptionKey: result.standardError])
            }
            paths.append(out.appendingPathComponent("checkpoints/step-00000020.h5").path)
        }
        return (paths[0], paths[1])
    }

    static func trainPrior(ranks: Int, out: String, steps: Int, resume: Bool = false, checkpoint: String? = nil) throws -> CommandRunner.Result {
        let data = try WholePhotosTests.data.get()
        return try CommandRunner.mpirun(ranks: ranks, "vqvae", [
            "train-prior", "--checkpoint", try checkpoint ?? checkpoints.get().0, "--data", data, "--out", out, "--steps", "\(steps)",
            "--global-batch-size", "8", "--crops-per-image", "2", "--channels", "16", "--warmup-steps", "2", "--checkpoint-every", "3",
            "--seed", "5"] + (resume ? ["--resume", "auto"] : []))
    }

    /// The model of `checkpoints` trained 400 steps as one process (its second codebook then
    /// improves its reconstructions), with a prior of 12 steps.
    static let longer: Result<(model: String, prior: String), Error> = Result {
        let data = try WholePhotosTests.data.get()
        let out = try CommandRunner.temporaryFolder("codec-model-longer")
        let trained = try CommandRunner.vqvae(["train", "--data", data, "--out", out.path, "--steps", "400", "--crop", "16",
                                               "--global-batch-size", "8", "--lr", "3e-3", "--seed", "1", "--checkpoint-every", "400"] + model)
        guard trained.status == 0 else {
            throw NSError(domain: "CodecCommandsTests", code: 3, userInfo: [NSLocalizedDescriptionKey: trained.standardError])
        }
        let checkpoint = out.appendingPathComponent("checkpoints/step-00000400.h5").path
        let priorOut = try CommandRunner.temporaryFolder("codec-prior-longer")
        let result = try trainPrior(ranks: 1, out: priorOut.path, steps: 12, checkpoint: checkpoint)
        guard result.status == 0 else {
            throw NSError(domain: "CodecCommandsTests", code: 4, userInfo: [NSLocalizedDescriptionKey: result.standardError])
        }
        return (checkpoint, priorOut.appendingPathComponent("checkpoints/step-00000012.h5").path)
    }

    typealias RoundTrip = (psnr: Double, bytes: [UInt8], report: String)

    /// `original` (whose 8-bit samples are `pixels`) through `compress` with `flags` to
    /// `<folder>/<name>.vqz` and `decompress` back to `<name>.png`: the decoded image's PSNR, the
    /// file's bytes and compress's report.
    static func roundTrip(_ name: String, _ flags: [String], checkpoint: String, prior: String, original: String,
                          pixels: [UInt8], folder: String) throws -> RoundTrip {
        let compressed = try CommandRunner.vqvae(["compress", "--checkpoint", checkpoint, "--prior", prior, original, "-o",
                                                  "\(folder)/\(name).vqz"] + flags)
        XCTAssertEqual(compressed.status, 0, compressed.standardError)
        let decompressed = try CommandRunner.vqvae(["decompress", "--checkpoint", checkpoint, "--prior", prior, "\(folder)/\(name).vqz",
                                                    "-o", "\(folder)/\(name).png"])
        XCTAssertEqual(decompressed.status, 0, decompressed.standardError)
        let decoded = try PNGImage.read(path: "\(folder)/\(name).png").pixels
        let sse = zip(decoded, pixels).reduce(0.0) { $0 + (Double($1.0) - Double($1.1)) * (Double($1.0) - Double($1.1)) }
        return (10 * log10(255 * 255 * Double(pixels.count) / sse),
                [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(folder)/\(name).vqz"))), compressed.standardOutput)
    }

    /// The PSNR a `compress --psnr` or `--lambda` report names.
    static func reportedPSNR(_ report: String) throws -> Double {
        try XCTUnwrap(report.range(of: #"PSNR [0-9.]+ dB"#, options: .regularExpression).map { Double(report[$0].dropFirst(5).dropLast(3))! },
                      report)
    }

    /// A prior trained 12 steps on one rank.
    static let prior: Result<String, Error> = Result {
        let out = try CommandRunner.temporaryFolder("codec-prior")
        let result = try trainPrior(ranks: 1, out: out.path, steps: 12)
        guard result.status == 0 else {
            throw NSError(domain: "CodecCommandsTests", code: 2, userInfo: [NSLocalizedDescriptionKey: result.standardError])
        }
        return out.appendingPathComponent("checkpoints/step-00000012.h5").path
    }

    /// W = 1 and 2 with the same global batch train the same prior: the first step's gradients
    /// (Adam's first moment after one step is 0.1 g) agree to rounding, and after 6 steps every
    /// weight is close (Adam divides each gradient by its own size, so an entry whose gradient is
    /// rounding noise moves by up to the learning rate, 2e-3, either way at each step: the two runs
    /// can differ by up to 2.4e-2 there; they must stay within half of that).
    func testPriorTrainsTheSameOnOneAndTwoRanks() throws {
        let names = ["embed", "embed_bias", "conv0/weight", "conv1/weight", "same", "head_bias", "head/weight", "head/bias"]
        for (steps, group, tolerance) in [(1, "optimizer/exp_avg", ["--tolerance", "1e-5"]), (6, "prior", ["--absolute-tolerance", "1.2e-2"])] {
            var files: [String] = []
            for ranks in [1, 2] {
                let out = try CommandRunner.temporaryFolder("codec-prior-w\(ranks)-\(steps)")
                let result = try Self.trainPrior(ranks: ranks, out: out.path, steps: steps)
                XCTAssertEqual(result.status, 0, result.standardError)
                XCTAssertTrue(result.standardOutput.contains("\(ranks) rank(s) x batch \(8 / ranks)"), result.standardOutput)
                files.append(out.appendingPathComponent("checkpoints/step-0000000\(steps).h5").path)
            }
            let compared = try CommandRunner.script("compare_hdf5_datasets.py", files + tolerance
                                                    + names.flatMap { ["--dataset", "\(group)/\($0)"] })
            XCTAssertEqual(compared.status, 0, compared.standardError)
            print("prior, W = 2 vs W = 1 after \(steps) step(s), \(group): largest difference (\(tolerance[0])) \(compared.standardOutput)")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: try Self.prior.get()))
    }

    /// On 2 ranks, 6 steps straight and 3 + 3 resumed end bit for bit alike.
    func testPriorResumesBitIdentically() throws {
        let straight = try CommandRunner.temporaryFolder("codec-prior-straight"), split = try CommandRunner.temporaryFolder("codec-prior-split")
        for (out, steps) in [(straight, 6), (split, 3)] {
            let result = try Self.trainPrior(ranks: 2, out: out.path, steps: steps)
            XCTAssertEqual(result.status, 0, result.standardError)
        }
        let resumed = try Self.trainPrior(ranks: 2, out: split.path, steps: 6, resume: true)
        XCTAssertEqual(resumed.status, 0, resumed.standardError)
        XCTAssertTrue(resumed.standardOutput.contains("resuming from"), resumed.standardOutput)
        let compared = try CommandRunner.script("compare_hdf5_datasets.py", [
            straight.appendingPathComponent("checkpoints/step-00000006.h5").path,
            split.appendingPathComponent("checkpoints/step-00000006.h5").path, "--min-datasets", "27"])
        XCTAssertEqual(compared.status, 0, compared.standardError)
    }

    /// An image of a size that needs no padding decompresses to exactly what `restore --whole`
    /// makes of it (the model's forward pass), for the model trained as one process and the one
    /// trained on 2 ranks; an odd-sized one comes back at its own size; one codebook of two costs
    /// about half the bytes; the prior codes below log2(K) bits per code.
    func testCompressDecompressReproducesTheReconstruction() throws {
        let (checkpoint, twoRanks) = try Self.checkpoints.get()
        let prior = try Self.prior.get()
        let folder = try CommandRunner.temporaryFolder("codec-round-trip").path
        var random = SplitMix64(seed: 4)
        for (name, h, w) in [("even", 40, 56), ("odd", 37, 23)] {
            var pixels = [UInt8](repeating: 0, count: h * w * 3)
            for y in 0..<h { for x in 0..<w { for c in 0..<3 {
                let ramp: Float = Float(x * (c + 1) + y * 3) / Float(3 * (w + h)) * 180
                let value: Float = min(255, (ramp + random.uniform(0, 60)).rounded())
                pixels[(y * w + x) * 3 + c] = UInt8(value)
            } } }
            try PNGImage(height: h, width: w, channels: 3, pixels: pixels).write(to: "\(folder)/\(name).png")
        }
        let restored = try CommandRunner.vqvae(["restore", "--checkpoint", checkpoint, "--input", "\(folder)/even.png", "--out",
                                                "\(folder)/even-restored.png", "--whole"])
        XCTAssertEqual(restored.status, 0, restored.standardError)
        var sizes: [String: Int] = [:]
        for name in ["even", "odd"] {
            for (levels, withPrior) in [("2", true), ("1", true), ("2", false)] {
                let tag = "\(name)-\(levels)\(withPrior ? "" : "-uniform")"
                let priorFlags = withPrior ? ["--prior", prior] : []
                let compressed = try CommandRunner.vqvae(["compress", "--checkpoint", checkpoint, "\(folder)/\(name).png", "-o",
                                                          "\(folder)/\(tag).vqz", "--levels", levels] + priorFlags)
                XCTAssertEqual(compressed.status, 0, compressed.standardError)
                XCTAssertTrue(compressed.standardOutput.contains("bits per pixel"), compressed.standardOutput)
                let decompressed = try CommandRunner.vqvae(["decompress", "--checkpoint", checkpoint, "\(folder)/\(tag).vqz", "-o",
                                                            "\(folder)/\(tag).png"] + priorFlags)
                XCTAssertEqual(decompressed.status, 0, decompressed.standardError)
                let image = try PNGImage.read(path: "\(folder)/\(tag).png")
                let original = try PNGImage.read(path: "\(folder)/\(name).png")
                XCTAssertEqual([image.height, image.width], [original.height, original.width], tag)
                sizes[tag] = try FileManager.default.attributesOfItem(atPath: "\(folder)/\(tag).vqz")[.size] as? Int
            }
        }
        XCTAssertEqual(try PNGImage.read(path: "\(folder)/even-2.png").pixels, try PNGImage.read(path: "\(folder)/even-restored.png").pixels,
                       "decompress differs from the model's reconstruction")
        XCTAssertEqual(try PNGImage.read(path: "\(folder)/even-2.png").pixels, try PNGImage.read(path: "\(folder)/even-2-uniform.png").pixels)
        for (arguments, label) in [
            (["restore", "--checkpoint", twoRanks, "--input", "\(folder)/even.png", "--out", "\(folder)/w2-restored.png", "--whole"], "restore"),
            (["compress", "--checkpoint", twoRanks, "\(folder)/even.png", "-o", "\(folder)/w2.vqz"], "compress"),
            (["decompress", "--checkpoint", twoRanks, "\(folder)/w2.vqz", "-o", "\(folder)/w2.png"], "decompress"),
        ] {
            let result = try CommandRunner.vqvae(arguments)
            XCTAssertEqual(result.status, 0, "\(label): \(result.standardError)")
        }
        XCTAssertEqual(try PNGImage.read(path: "\(folder)/w2.png").pixels, try PNGImage.read(path: "\(folder)/w2-restored.png").pixels,
                       "decompress differs from the 2-rank model's reconstruction")
        // Uniform coding: 42 bytes of header and checksum, 4 of rANS state, 5 bits per code.
        let codes = 10 * 14 * 2
        XCTAssertEqual(Double(sizes["even-2-uniform"]! - 46), Double(codes * 5) / 8, accuracy: 2)
        XCTAssertLessThan(sizes["even-2"]!, sizes["even-2-uniform"]!, "the prior codes no better than log2(K)")
        XCTAssertLessThan(Double(sizes["even-1"]! - 46), 0.6 * Double(sizes["even-2"]! - 46))
    }

    /// `compress --psnr`: a version-2 file whose positions code their own number of codebooks.
    /// Between the PSNRs of one and two codebooks everywhere, the target is reached (the PSNR the
    /// command reports is that of the decompressed image, to rounding: decode reproduces what the
    /// encoder chose) with no more bytes than the uniform file that reaches it; an unreachable
    /// target gives at least the best uniform file; `--lambda` at its extremes; `inspect` names
    /// version 2. (That the mixes save bytes on real photos is measured in bench/codec.md, with a
    /// trained model.)
    func testPSNRTargetGivesEachPositionItsOwnLevels() throws {
        let (checkpoint, prior) = try Self.longer.get()
        let folder = try CommandRunner.temporaryFolder("codec-psnr").path
        var random = SplitMix64(seed: 9)
        let (h, w) = (48, 64)
        var pixels = [UInt8](repeating: 0, count: h * w * 3)
        for y in 0..<h { for x in 0..<w { for c in 0..<3 {
            // Flat on the left, a noisy ramp on the right: the right needs more codebooks.
            let ramp: Float = x < w / 2 ? 90 : Float(x * (c + 1) + y * 3) / Float(3 * (w + h)) * 180 + random.uniform(0, 60)
            pixels[(y * w + x) * 3 + c] = UInt8(min(255, ramp.rounded()))
        } } }
        let original = "\(folder)/image.png"
        try PNGImage(height: h, width: w, channels: 3, pixels: pixels).write(to: original)
        func run(_ name: String, _ flags: [String]) throws -> RoundTrip {
            try Self.roundTrip(name, flags, checkpoint: checkpoint, prior: prior, original: original, pixels: pixels, folder: folder)
        }
        let one = try run("one", ["--levels", "1"]), two = try run("two", ["--levels", "2"])
        print("psnr target test: 1 codebook \(one.psnr) dB, \(one.bytes.count) bytes; 2 codebooks \(two.psnr) dB, \(two.bytes.count) bytes")
        for (name, target) in [("middle", (one.psnr + two.psnr) / 2), ("top", 99.0)] {
            let result = try run(name, ["--psnr", "\(target)"])
            XCTAssertEqual(result.bytes[3], 2, "\(name): a version-2 file")
            XCTAssertEqual(try Self.reportedPSNR(result.report), result.psnr, accuracy: 0.006, "\(name): the report and the decoded image disagree")
            if name == "middle" {
                // Reachable with one or two codebooks everywhere, so reached, at no more bytes than
                // the uniform file that reaches it (its level map aside).
                XCTAssertGreaterThanOrEqual(result.psnr, target, result.report)
                let uniform = [one, two].filter { $0.psnr >= target }.map(\.bytes.count).min()!
                XCTAssertLessThanOrEqual(result.bytes.count, uniform + 4, result.report)
            } else {
                XCTAssertGreaterThanOrEqual(result.psnr, max(one.psnr, two.psnr), result.report)
            }
            print("psnr target \(target): \(result.psnr) dB, \(result.bytes.count) bytes")
        }
        // --lambda: a huge one leaves every position at one codebook, the image of --levels 1 bit
        // for bit (plus a few bytes of level map); 0 takes each position's best number.
        let cheapest = try run("cheapest", ["--lambda", "1e9"])
        XCTAssertEqual(try PNGImage.read(path: "\(folder)/cheapest.png").pixels, try PNGImage.read(path: "\(folder)/one.png").pixels)
        XCTAssertLessThanOrEqual(cheapest.bytes.count, one.bytes.count + 4)
        let finest = try run("finest", ["--lambda", "0"])
        XCTAssertTrue(finest.report.contains("PSNR"), finest.report)
        let both = try CommandRunner.vqvae(["compress", "--checkpoint", checkpoint, original, "-o", "\(folder)/both.vqz", "--psnr", "20",
                                            "--lambda", "5"])
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.standardError.contains("give --psnr or --lambda, not both"), both.standardError)
        let described = try CommandRunner.vqvae(["inspect", "\(folder)/middle.vqz"])
        XCTAssertTrue(described.standardOutput.contains("(format version 2)"), described.standardOutput)
        let refused = try CommandRunner.vqvae(["compress", "--checkpoint", checkpoint, original, "-o", "\(folder)/bad.vqz", "--psnr", "-3"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.standardError.contains("--psnr must be a positive number"), refused.standardError)
    }

    /// `compress --refine`: codes chosen for the decoded image decode (through `decompress`, whose
    /// decoding is unchanged) to a better image than the encoder's codes at the same number of
    /// codebooks, the same bytes on every run; with `--lambda` the reported PSNR is the decoded
    /// image's, and error + lambda x bits is no higher than the unrefined file's; a negative number
    /// of rounds is refused.
    func testRefineChoosesCodesForTheDecodedImage() throws {
        let (checkpoint, prior) = try Self.longer.get()
        let folder = try CommandRunner.temporaryFolder("codec-refine").path
        var random = SplitMix64(seed: 11)
        let (h, w) = (40, 56)
        var pixels = [UInt8](repeating: 0, count: h * w * 3)
        for y in 0..<h { for x in 0..<w { for c in 0..<3 {
            let value = Float(x * 3 + y * (c + 2)) + 40 * sin(Float(x + c) / 3) + random.uniform(0, 30)
            pixels[(y * w + x) * 3 + c] = UInt8(min(255, max(0, value.rounded())))
        } } }
        let original = "\(folder)/image.png"
        try PNGImage(height: h, width: w, channels: 3, pixels: pixels).write(to: original)
        func run(_ name: String, _ flags: [String]) throws -> RoundTrip {
            try Self.roundTrip(name, flags, checkpoint: checkpoint, prior: prior, original: original, pixels: pixels, folder: folder)
        }
        for levels in ["1", "2"] {
            let plain = try run("plain\(levels)", ["--levels", levels])
            let refined = try run("refined\(levels)", ["--levels", levels, "--refine", "12"])
            let again = try run("again\(levels)", ["--levels", levels, "--refine", "12"])
            print("refine at \(levels) codebooks: \(plain.psnr) dB, \(plain.bytes.count) bytes -> \(refined.psnr) dB, \(refined.bytes.count) bytes")
            XCTAssertGreaterThan(refined.psnr, plain.psnr + 0.05, "\(levels) codebooks: \(refined.report)")
            XCTAssertEqual(refined.bytes, again.bytes, "\(levels) codebooks: the same file on every run")
            XCTAssertEqual(refined.bytes[3], 1, "a version-1 file, as without --refine")
        }
        let plain = try run("lambda", ["--lambda", "300"])
        let refined = try run("lambda-refined", ["--lambda", "300", "--refine", "12"])
        for result in [plain, refined] {
            XCTAssertEqual(try Self.reportedPSNR(result.report), result.psnr, accuracy: 0.006,
                           "the report and the decoded image disagree: \(result.report)")
        }
        // Kept only when error + lambda x bits fell: the file's bytes stand for the bits (the same
        // level map; 4 bytes of slack for the coder's flush).
        func cost(_ result: RoundTrip) -> Double {
            255 * 255 * Double(pixels.count) / pow(10, result.psnr / 10) + 300 * 8 * Double(result.bytes.count)
        }
        XCTAssertLessThanOrEqual(cost(refined), cost(plain) + 300 * 8 * 4, refined.report)
        let refused = try CommandRunner.vqvae(["compress", "--checkpoint", checkpoint, original, "-o", "\(folder)/bad.vqz", "--refine", "-2"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.standardError.contains("--refine must be in 0...10000"), refused.standardError)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(folder)/bad.vqz"))
    }

    /// The wrong model, a missing or other prior, a damaged, truncated or foreign file, an
    /// impossible --levels and an existing output are each refused in one line, nothing written.
    func testRefusals() throws {
        let (checkpoint, other) = try Self.checkpoints.get()
        let prior = try Self.prior.get()
        let folder = try CommandRunner.temporaryFolder("codec-refusals").path
        let pixels = (0..<(24 * 32 * 3)).map { UInt8(truncatingIfNeeded: $0 * 5) }
        try PNGImage(height: 24, width: 32, channels: 3, pixels: pixels).write(to: "\(folder)/a.png")
        let made = try CommandRunner.vqvae(["compress", "--checkpoint", checkpoint, "--prior", prior, "\(folder)/a.png", "-o", "\(folder)/a.vqz"])
        XCTAssertEqual(made.status, 0, made.standardError)
        let good = try Data(contentsOf: URL(fileURLWithPath: "\(folder)/a.vqz"))
        var flipped = good
        flipped[50] ^= 0x10
        try flipped.write(to: URL(fileURLWithPath: "\(folder)/flipped.vqz"))
        try good.prefix(good.count - 7).write(to: URL(fileURLWithPath: "\(folder)/short.vqz"))
        try Data("not a vqz file at all, just text........................".utf8).write(to: URL(fileURLWithPath: "\(folder)/text.vqz"))
        let out = "\(folder)/out.png"
        let decode = ["decompress", "--checkpoint", checkpoint, "--prior", prior, "-o", out]
        assertRefused(try CommandRunner.vqvae(decode + ["\(folder)/flipped.vqz"]), "the file is damaged (its CRC-32 does not match)", "a flipped bit")
        assertRefused(try CommandRunner.vqvae(decode + ["\(folder)/short.vqz"]), "truncated", "a truncated file")
        assertRefused(try CommandRunner.vqvae(decode + ["\(folder)/text.vqz"]), "not a .vqz file", "a text file")
        assertRefused(try CommandRunner.vqvae(decode + ["\(folder)/missing.vqz"]), "no such file", "a missing file")
        assertRefused(try CommandRunner.vqvae(["decompress", "--checkpoint", other, "--prior", prior, "-o", out, "\(folder)/a.vqz"]),
                      "was trained on the codes of another model", "a prior of another model")
        assertRefused(try CommandRunner.vqvae(["decompress", "--checkpoint", checkpoint, "-o", out, "\(folder)/a.vqz"]),
                      "was written with a prior", "no prior")
        assertRefused(try CommandRunner.vqvae(["decompress", "--checkpoint", prior, "-o", out, "\(folder)/a.vqz"]),
                      "is a prior's checkpoint (vqvae train-prior), not a model's checkpoint", "the prior as the model")
        assertRefused(try CommandRunner.vqvae(["compress", "--checkpoint", checkpoint, "\(folder)/a.png", "-o", "\(folder)/b.vqz", "--levels", "3"]),
                      "--levels 3 is outside 1...2", "too many levels")
        assertRefused(try CommandRunner.vqvae(["compress", "--checkpoint", checkpoint, "\(folder)/a.png", "-o", "\(folder)/a.vqz"]),
                      "already exists", "an existing output")
        assertRefused(try CommandRunner.vqvae(["compress", "--checkpoint", checkpoint, "\(folder)/a.png", "-o", "\(folder)/a.png", "--force"]),
                      "is the input", "the input as output")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(folder)/b.vqz"))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: "\(folder)/a.vqz")), good)
        // inspect describes the file and the prior, and refuses the damaged file in one line.
        let described = try CommandRunner.vqvae(["inspect", "\(folder)/a.vqz", prior])
        XCTAssertEqual(described.status, 0, described.standardError)
        XCTAssertTrue(described.standardOutput.contains(".vqz image file (format version 1), \(good.count) bytes, CRC-32 verified"), described.standardOutput)
        XCTAssertTrue(described.standardOutput.contains("32x24x3: "), described.standardOutput)
        XCTAssertTrue(described.standardOutput.contains("a 8x6 grid of 2 of 2 codebook(s) of 32 codes"), described.standardOutput)
        XCTAssertTrue(described.standardOutput.contains("prior checkpoint (format version 1)"), described.standardOutput)
        XCTAssertTrue(described.standardOutput.contains("every tensor's checksum verifies"), described.standardOutput)
        assertRefused(try CommandRunner.vqvae(["inspect", "\(folder)/flipped.vqz"]), "CRC-32 does not match", "inspect of a damaged file")
        // Under mpirun, one process only.
        let ranks = try CommandRunner.mpirun(ranks: 2, "vqvae", ["compress", "--checkpoint", checkpoint, "\(folder)/a.png", "-o", "\(folder)/c.vqz"], timeout: 120)
        XCTAssertNotEqual(ranks.status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(folder)/c.vqz"))
    }

    /// `sample` draws grids from the prior and decodes them into one PNG grid; the same seed gives
    /// the same picture, another seed another; impossible settings are refused in one line.
    func testSampleDrawsReproducibleGrids() throws {
        let (checkpoint, _) = try Self.checkpoints.get()
        let prior = try Self.prior.get()
        let folder = try CommandRunner.temporaryFolder("codec-sample").path
        var pictures: [[UInt8]] = []
        for (name, seed) in [("a", "3"), ("b", "3"), ("c", "4")] {
            let result = try CommandRunner.vqvae(["sample", "--checkpoint", checkpoint, "--prior", prior, "-o", "\(folder)/\(name).png",
                                                  "-n", "4", "--size", "16", "--temperature", "0.8", "--top-k", "10", "--seed", seed])
            XCTAssertEqual(result.status, 0, result.standardError)
            let image = try PNGImage.read(path: "\(folder)/\(name).png")
            XCTAssertEqual([image.height, image.width], [34, 34])  // 2 x 2 images of 16 with a 2-pixel separator
            pictures.append(image.pixels)
        }
        XCTAssertEqual(pictures[0], pictures[1])
        XCTAssertNotEqual(pictures[0], pictures[2])
        let base = ["sample", "--checkpoint", checkpoint, "--prior", prior, "-o", "\(folder)/d.png"]
        assertRefused(try CommandRunner.vqvae(base + ["--size", "10"]), "--size 10 must be a multiple of 2^down = 4", "an odd size")
        assertRefused(try CommandRunner.vqvae(base + ["--temperature", "0"]), "--temperature must be positive", "temperature 0")
        assertRefused(try CommandRunner.vqvae(base + ["--levels", "3"]), "--levels 3 is outside 1...2", "too many levels")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(folder)/d.png"))
    }
}
