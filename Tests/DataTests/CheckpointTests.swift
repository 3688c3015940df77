import Foundation
import XCTest
@testable import Data
@testable import Model

final class CheckpointTests: XCTestCase {
    func temporaryFolder(_ name: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vqvae-datatests-\(getpid())-\(name)").path
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func smallModel(_ codebook: CodebookKind = .ema) throws -> VQVAE {
        var c = ModelConfiguration(height: 8, width: 12, channels: 3)
        c.hidden = 8; c.residualHidden = 4; c.residualBlocks = 1; c.codeDimension = 4; c.codes = 16; c.codebook = codebook
        return try VQVAE(configuration: c, maxBatch: 2)
    }

    func state(step: Int64) -> CheckpointState {
        CheckpointState(step: step, epoch: 1, samplesSeen: step * 4, worldSize: 1, configuration: "{\"x\":1}",
                        data: ["seed": 3, "shuffle": 1, "samples_seen": step * 4, "epoch": 1])
    }

    /// Everything written comes back bit for bit, in our layout, after a round trip through
    /// PyTorch's layout on disk.
    func testRoundTripIsExact() throws {
        for kind in CodebookKind.allCases {
            let folder = try temporaryFolder("roundtrip-\(kind)")
            let model = try smallModel(kind)
            model.initialize(seed: 5)
            let adam = Adam(count: model.parameters.count)
            var random = SplitMix64(seed: 9)
            for i in 0..<adam.firstMoment.count { adam.firstMoment[i] = random.normal(); adam.secondMoment[i] = random.uniform(0, 1) }
            for i in 0..<model.quantizer!.emaState.count { model.quantizer!.emaState[i] = random.normal() }
            adam.step = 17
            let path = try Checkpoint.write(directory: folder, model: model, optimizer: adam, state: state(step: 42))
            XCTAssertTrue(path.hasSuffix("/step-00000042.h5"))

            let copy = try smallModel(kind)
            let adamCopy = Adam(count: copy.parameters.count)
            let loaded = try Checkpoint.load(path: path, into: copy, optimizer: adamCopy)
            XCTAssertEqual(loaded, state(step: 42))
            XCTAssertEqual(copy.parameters.values.array, model.parameters.values.array)
            XCTAssertEqual(adamCopy.firstMoment.array, adam.firstMoment.array)
            XCTAssertEqual(adamCopy.secondMoment.array, adam.secondMoment.array)
            XCTAssertEqual(copy.quantizer!.emaState.array, model.quantizer!.emaState.array)
            XCTAssertEqual(adamCopy.step, 17)
        }
    }

    /// Tensors are stored in PyTorch's layouts, chunked, with Fletcher-32, and the root attributes
    /// of spec/checkpoint.md are present with their types.
    func testLayoutFollowsTheSpec() throws {
        let folder = try temporaryFolder("layout")
        let model = try smallModel()
        model.initialize(seed: 1)
        let path = try Checkpoint.write(directory: folder, model: model, optimizer: Adam(count: model.parameters.count),
                                        state: state(step: 0))
        let file = try HDF5File.open(path)
        XCTAssertEqual(try file.stringAttribute("format"), "vqvae-checkpoint")
        XCTAssertEqual(try file.int64Attribute("format_version"), 1)
        XCTAssertEqual(try file.stringAttribute("model"), "vqvae")
        XCTAssertEqual(try file.int64Attribute("world_size"), 1)
        XCTAssertEqual(try file.stringAttribute("config"), "{\"x\":1}")
        XCTAssertTrue(try file.stringAttribute("created").hasSuffix("Z"))
        XCTAssertEqual(try file.int64Attribute("t", on: "/optimizer"), 0)
        XCTAssertEqual(try file.doubleAttribute("beta2", on: "/optimizer"), 0.999)

        let conv = try file.info("/model/encoder/down0/weight")
        XCTAssertEqual(conv.shape, [4, 3, 4, 4])            // (out, in, kh, kw)
        XCTAssertEqual(conv.elementType, .float32)
        XCTAssertEqual(conv.filters, ["fletcher32"])
        XCTAssertNotNil(conv.chunks)
        XCTAssertEqual(try file.info("/model/decoder/up0/weight").shape, [8, 4, 4, 4])  // (in, out, kh, kw)
        XCTAssertEqual(try file.info("/model/decoder/up1/weight").shape, [4, 3, 4, 4])
        XCTAssertEqual(try file.info("/model/decoder/up1/bias").shape, [3])
        XCTAssertEqual(try file.info("/model/quantizer/codebook").shape, [16, 4])
        XCTAssertEqual(try file.info("/optimizer/adam_v/pre_quant/weight").shape, [4, 8, 1, 1])

        // One value checked by hand: PyTorch's weight[o, i, ky, kx] is our [o, ky, kx, i].
        let slot = model.parameters.slot(named: "encoder/down1/weight")!
        var torch = [Float](repeating: 0, count: slot.count)
        try torch.withUnsafeMutableBufferPointer { try file.readFloats("/model/encoder/down1/weight", shape: slot.shape, into: $0.baseAddress!) }
        let (o, i, ky, kx) = (5, 2, 3, 1)
        let ours = model.parameters.values[slot.offset + ((o * 4 + ky) * 4 + kx) * 4 + i]
        XCTAssertEqual(torch[((o * 4 + i) * 4 + ky) * 4 + kx], ours)
    }

    /// A flipped byte inside a tensor fails its checksum with a message naming the file.
    func testDamagedCheckpointIsDetected() throws {
        let folder = try temporaryFolder("damage")
        let model = try smallModel()
        model.initialize(seed: 1)
        let path = try Checkpoint.write(directory: folder, model: model, optimizer: Adam(count: model.parameters.count),
                                        state: state(step: 3))
        // Find the raw bytes of a tensor on disk and flip one.
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let slot = model.parameters.slot(named: "encoder/conv/weight")!
        var torch = [Float](repeating: 0, count: slot.count)
        withExtendedLifetime(model) { slot.exportToTorch(model.parameters.values.pointer + slot.offset, into: &torch) }
        let needle = torch.prefix(8).withUnsafeBytes { Array($0) }
        let offset = try XCTUnwrap(bytes.indices.first { start in
            start + needle.count <= bytes.count && Array(bytes[start..<(start + needle.count)]) == needle
        })
        bytes[offset + 5] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try Checkpoint.load(path: path, into: try smallModel(), optimizer: nil)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains(path) && message.contains("checksum"), message)
        }

        // A truncated file is refused as well.
        let truncated = folder + "/step-00000004.h5"
        try Data(bytes.prefix(bytes.count / 2)).write(to: URL(fileURLWithPath: truncated))
        XCTAssertThrowsError(try Checkpoint.load(path: truncated, into: try smallModel(), optimizer: nil))
    }

    func testAnotherArchitectureIsRefused() throws {
        let folder = try temporaryFolder("arch")
        let model = try smallModel()
        model.initialize(seed: 1)
        let path = try Checkpoint.write(directory: folder, model: model, optimizer: Adam(count: model.parameters.count),
                                        state: state(step: 1))
        var c = model.configuration
        c.hidden = 16
        XCTAssertThrowsError(try Checkpoint.load(path: path, into: try VQVAE(configuration: c, maxBatch: 1), optimizer: nil)) { error in
            XCTAssertTrue("\(error)".contains("encoder/down0/weight"), "\(error)")
        }
    }

    func testWriteFailureLeavesNoFile() throws {
        let model = try smallModel()
        XCTAssertThrowsError(try Checkpoint.write(directory: "/nonexistent-folder", model: model,
                                                  optimizer: Adam(count: model.parameters.count), state: state(step: 1)))
    }
}
