import Data
import Foundation
import XCTest

/// `vqvae encode` and `vqvae decode` run the way a user runs them: no output over an input or an
/// existing file (without --force), one process only, and uint8 output on request.
final class CodeCommandsTests: XCTestCase {
    /// An untrained VQ-VAE (0 steps) on MNIST: enough to encode and decode.
    static let checkpoint: Result<String, Error> = Result {
        let out = try CommandRunner.temporaryFolder("codes-model")
        let result = try CommandRunner.vqvae(["train", "--data", try PreparedData.mnist("train"), "--out", out.path, "--steps", "0",
                                              "--hidden", "32", "--res-hidden", "8", "--code-dim", "16", "--codes", "64"])
        guard result.status == 0 else {
            throw NSError(domain: "CodeCommandsTests", code: 1, userInfo: [NSLocalizedDescriptionKey: result.standardError])
        }
        return out.appendingPathComponent("checkpoints/step-00000000.h5").path
    }

    /// encode over its data or checkpoint, decode over its code file or checkpoint, and either over
    /// an existing file (or --png-out into a folder of files) are refused with one line, nothing
    /// written; --force replaces existing outputs.
    func testEncodeAndDecodeNeverOverwriteInputs() throws {
        let checkpoint = try Self.checkpoint.get()
        let folder = try CommandRunner.temporaryFolder("codes-safety").path
        let data = folder + "/test.h5"
        try FileManager.default.copyItem(atPath: try PreparedData.mnist("test"), toPath: data)
        let codes = folder + "/codes.h5", decoded = folder + "/decoded.h5", pngs = folder + "/pngs"
        let originals = [data, checkpoint].map { ($0, fileBytes($0)) }

        assertRefused(try CommandRunner.vqvae(["encode", "--checkpoint", checkpoint, "--data", data, "--out", data]), "is the input", "encode --out = --data")
        assertRefused(try CommandRunner.vqvae(["encode", "--checkpoint", checkpoint, "--data", data, "--out", checkpoint]), "is the input", "encode --out = --checkpoint")
        let encoded = try CommandRunner.vqvae(["encode", "--checkpoint", checkpoint, "--data", data, "--limit", "40", "--out", codes])
        XCTAssertEqual(encoded.status, 0, encoded.standardError)
        let codeBytes = fileBytes(codes)
        assertRefused(try CommandRunner.vqvae(["encode", "--checkpoint", checkpoint, "--data", data, "--limit", "20", "--out", codes]),
                      "already exists", "encode over an existing file")
        XCTAssertEqual(fileBytes(codes), codeBytes)

        assertRefused(try CommandRunner.vqvae(["decode", "--codes", codes, "--out", codes]), "is the input", "decode --out = --codes")
        assertRefused(try CommandRunner.vqvae(["decode", "--codes", codes, "--out", checkpoint]), "is the input", "decode --out = its checkpoint")
        for (path, original) in originals { XCTAssertEqual(fileBytes(path), original, "\(path) was changed") }
        XCTAssertEqual(fileBytes(codes), codeBytes)

        // --png-out into a folder that holds files: refused, and --out is not written either.
        try FileManager.default.createDirectory(atPath: pngs, withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: URL(fileURLWithPath: pngs + "/000000.png"))
        assertRefused(try CommandRunner.vqvae(["decode", "--codes", codes, "--out", decoded, "--png-out", pngs]), "--png-out \(pngs) already exists", "--png-out over files")
        XCTAssertFalse(FileManager.default.fileExists(atPath: decoded))
        XCTAssertEqual(fileBytes(pngs + "/000000.png"), Data("mine".utf8))
        let forced = try CommandRunner.vqvae(["decode", "--codes", codes, "--out", decoded, "--png-out", pngs, "--png-images", "3", "--force"])
        XCTAssertEqual(forced.status, 0, forced.standardError)
        XCTAssertEqual(try PNGImage.read(path: pngs + "/000000.png").height, 28)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: pngs).sorted(), ["000000.png", "000001.png", "000002.png"])
        let decodedBytes = fileBytes(decoded)
        assertRefused(try CommandRunner.vqvae(["decode", "--codes", codes, "--out", decoded]), "already exists", "decode over an existing file")
        XCTAssertEqual(fileBytes(decoded), decodedBytes)

        let again = try CommandRunner.vqvae(["encode", "--checkpoint", checkpoint, "--data", data, "--limit", "20", "--out", codes, "--force"])
        XCTAssertEqual(again.status, 0, again.standardError)
        XCTAssertTrue(again.standardOutput.hasPrefix("encoded 20 images"), again.standardOutput)
        let redecoded = try CommandRunner.vqvae(["decode", "--codes", codes, "--out", decoded, "--force"])
        XCTAssertEqual(redecoded.status, 0, redecoded.standardError)
        XCTAssertEqual(try ImageDataset(paths: [decoded]).count, 20)
    }

    /// Under `mpirun -np 2` encode and decode refuse on every rank (rank 0 says why, once) and
    /// write nothing.
    func testSeveralRanksAreRefused() throws {
        let checkpoint = try Self.checkpoint.get()
        let folder = try CommandRunner.temporaryFolder("codes-ranks").path
        let codes = folder + "/codes.h5"
        let encoded = try CommandRunner.vqvae(["encode", "--checkpoint", checkpoint, "--data", try PreparedData.mnist("test"),
                                               "--limit", "10", "--out", codes])
        XCTAssertEqual(encoded.status, 0, encoded.standardError)
        for (arguments, output) in [
            (["encode", "--checkpoint", checkpoint, "--data", try PreparedData.mnist("test"), "--out", folder + "/two.h5"], folder + "/two.h5"),
            (["decode", "--codes", codes, "--out", folder + "/decoded.h5"], folder + "/decoded.h5"),
        ] {
            let result = try CommandRunner.mpirun(ranks: 2, "vqvae", arguments, timeout: 120)
            XCTAssertNotEqual(result.status, 0, arguments[0])
            XCTAssertEqual(result.standardError.components(separatedBy: "vqvae \(arguments[0]) runs as one process").count, 2, result.standardError)
            XCTAssertTrue(result.standardError.contains("--threads"), result.standardError)
            XCTAssertFalse(FileManager.default.fileExists(atPath: output), "\(arguments[0]) wrote \(output)")
        }
    }

    /// --dtype uint8 writes the float32 output rounded and clipped, in a quarter of the space.
    func testDecodeWritesUint8OnRequest() throws {
        let checkpoint = try Self.checkpoint.get()
        let folder = try CommandRunner.temporaryFolder("codes-uint8").path
        let codes = folder + "/codes.h5", float = folder + "/float.h5", bytes8 = folder + "/uint8.h5"
        let encoded = try CommandRunner.vqvae(["encode", "--checkpoint", checkpoint, "--data", try PreparedData.mnist("test"),
                                               "--limit", "500", "--out", codes])
        XCTAssertEqual(encoded.status, 0, encoded.standardError)
        for (out, extra) in [(float, [String]()), (bytes8, ["--dtype", "uint8"])] {
            let result = try CommandRunner.vqvae(["decode", "--codes", codes, "--out", out] + extra)
            XCTAssertEqual(result.status, 0, result.standardError)
        }
        let a = try ImageDataset(paths: [float]), b = try ImageDataset(paths: [bytes8])
        XCTAssertEqual(a.elementType, .float32)
        XCTAssertEqual(b.elementType, .uint8)
        XCTAssertEqual([b.count, b.height, b.width, b.channels], [500, 28, 28, 1])
        var x = [Float](repeating: 0, count: 500 * 784), y = x
        try x.withUnsafeMutableBufferPointer { try a.read(indices: Array(0..<500), into: $0.baseAddress!) }
        try y.withUnsafeMutableBufferPointer { try b.read(indices: Array(0..<500), into: $0.baseAddress!) }
        var clipped = 0, mismatches = 0
        for (f, u) in zip(x, y) {
            if f + 0.5 < 0 || f + 0.5 > 1 { clipped += 1 }
            if PNGImage.quantize(f + 0.5) != UInt8(((u + 0.5) * 255).rounded()) { mismatches += 1 }
        }
        XCTAssertEqual(mismatches, 0, "uint8 = round(clip(float, 0, 1) * 255)")
        let floatSize = try FileManager.default.attributesOfItem(atPath: float)[.size] as? Int ?? 0
        let byteSize = try FileManager.default.attributesOfItem(atPath: bytes8)[.size] as? Int ?? 0
        print("decode: float32 \(floatSize) bytes, uint8 \(byteSize) bytes, \(clipped) values clipped")
        XCTAssertLessThan(Double(byteSize), Double(floatSize) / 3, "uint8 output takes about a quarter of the space")
        let wrong = try CommandRunner.vqvae(["decode", "--codes", codes, "--out", folder + "/x.h5", "--dtype", "int8"])
        XCTAssertNotEqual(wrong.status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/x.h5"))
    }
}
