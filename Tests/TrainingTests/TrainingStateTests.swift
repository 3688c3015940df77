import Data
import Model
import Training
import XCTest

/// The training state names every replicated buffer once; checkpoints and copies follow it.
final class TrainingStateTests: XCTestCase {
    func model(_ kind: ModelKind = .vqvae, codebook: CodebookKind = .ema) throws -> VQVAE {
        var c = ModelConfiguration(height: 8, width: 8, channels: 3)
        (c.model, c.codebook, c.hidden, c.residualHidden, c.residualBlocks, c.codeDimension, c.codes) =
            (kind, codebook, 16, 8, 1, 4, 8)
        return try VQVAE(configuration: c, maxBatch: 2)
    }

    func testBuffersCoverParametersQuantizerAndMoments() throws {
        let m = try model()
        let state = TrainingState(model: m, optimizer: Adam(count: m.parameters.count))
        XCTAssertEqual(state.buffers.map(\.group), ["model", "model", "optimizer/adam_m", "optimizer/adam_v"])
        XCTAssertTrue(state.buffers[0].buffer === m.parameters.values)
        XCTAssertTrue(state.buffers[1].buffer === m.quantizer!.emaState)
        XCTAssertEqual(state.buffers[1].tensors.map(\.name), ["quantizer/codebook", "quantizer/ema_count", "quantizer/ema_sum"])
        // The tensors of each buffer tile it exactly.
        for buffer in state.buffers {
            var offset = 0
            for tensor in buffer.tensors {
                XCTAssertEqual(tensor.offset, offset, tensor.name)
                offset += tensor.count
            }
            XCTAssertEqual(offset, buffer.buffer.count, buffer.group)
        }
        // A gradient-trained codebook is a parameter: no EMA buffer; the autoencoder has no quantizer.
        XCTAssertEqual(try model(codebook: .grad).stateBuffers.count, 1)
        XCTAssertEqual(try model(.ae).stateBuffers.count, 1)
    }

    func testFingerprintSeesEveryBufferAndCountersRoundTrip() throws {
        let m = try model()
        m.initialize(seed: 3)
        let state = TrainingState(model: m, optimizer: Adam(count: m.parameters.count))
        var seen: Set<UInt64> = [state.fingerprint]
        for buffer in state.buffers {
            let old = buffer.buffer[buffer.buffer.count - 1]
            buffer.buffer[buffer.buffer.count - 1] = old + 1
            XCTAssertTrue(seen.insert(state.fingerprint).inserted, "changing \(buffer.group) left the fingerprint unchanged")
            buffer.buffer[buffer.buffer.count - 1] = old
        }
        state.counters = [12, 10]
        XCTAssertEqual(state.step, 12)
        XCTAssertEqual(state.optimizer.step, 10)
    }

    func testCheckpointAndCopyCarryEveryBuffer() throws {
        let m = try model()
        m.initialize(seed: 5)
        let adam = Adam(count: m.parameters.count)
        for i in 0..<adam.firstMoment.count { adam.firstMoment[i] = Float(i % 13) * 0.25; adam.secondMoment[i] = Float(i % 7) }
        let state = TrainingState(model: m, optimizer: adam)
        let folder = try TrainingFixtures.folder("state-checkpoint")
        let metadata = CheckpointState(step: 3, epoch: 0, samplesSeen: 6, worldSize: 1, configuration: "{}", data: [:])
        let path = try Checkpoint.write(directory: folder, model: m, optimizer: adam, state: metadata)

        let copy = try model()
        let loaded = TrainingState(model: copy, optimizer: Adam(count: copy.parameters.count))
        _ = try Checkpoint.load(path: path, into: copy, optimizer: loaded.optimizer)
        TrainingFixtures.assertBitIdentical(TrainingFixtures.snapshot(loaded), TrainingFixtures.snapshot(state))

        // A model of another image size takes the same state.
        var c = m.configuration
        (c.height, c.width) = (16, 24)
        let larger = try VQVAE(configuration: c, maxBatch: 1)
        larger.copyState(from: m)
        TrainingFixtures.assertBitIdentical(larger.stateBuffers.map(\.buffer.array), m.stateBuffers.map(\.buffer.array))
    }
}
