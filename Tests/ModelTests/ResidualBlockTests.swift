@testable import Model
import TestSupport
import XCTest

final class ResidualBlockTests: XCTestCase {
    // Odd, non-square: N=2, 5x3 positions, 5 channels, 3 residual channels.
    let (batch, height, width, channels, residual) = (2, 5, 3, 5, 3)

    private func reference(_ block: ResidualBlock, _ store: ParameterStore) -> NaiveResidualBlock {
        NaiveResidualBlock(weight3: torchTensor(block.conv3x3.weight, in: store.values),
                           bias3: torchTensor(block.conv3x3.bias, in: store.values),
                           weight1: torchTensor(block.conv1x1.weight, in: store.values),
                           bias1: torchTensor(block.conv1x1.bias, in: store.values),
                           channels: channels, residualChannels: residual)
    }

    /// Test 5: forward against the composed naive ops; backward against the composed naive backward
    /// (exact) and central differences of the block's own forward on sampled entries of the input and
    /// of all four tensors, avoiding entries whose perturbation crosses a ReLU kink.
    func testForwardAndBackwardMatchComposedNaiveOps() {
        let store = ParameterStore()
        let block = ResidualBlock(name: "res", channels: channels, residualChannels: residual, parameters: store)
        store.allocate()
        store.initialize(seed: 2024)
        XCTAssertEqual(store.slots.map(\.name), ["res/conv3x3/weight", "res/conv3x3/bias", "res/conv1x1/weight", "res/conv1x1/bias"])
        let positions = batch * height * width
        let count = positions * channels
        let x = randomFloats(count, seed: 31)
        let input = makeBuffer(x)
        let tensor = Tensor4(batch: batch, height: height, width: width, channels: channels, values: x.map(Double.init))
        let saved = FloatBuffer(count: block.savedCount(positions: positions))
        let workspace = FloatBuffer(count: block.workspaceCount(batch: batch, height: height, width: width))
        let scratch = FloatBuffer(count: positions * residual)
        let naive = reference(block, store)

        func forward() -> FloatBuffer {
            let output = makeBuffer(count: count, filledWith: .nan)
            block.forward(output: output.pointer, input: input.pointer, saved: saved.pointer, batch: batch, height: height,
                          width: width, parameters: store.values.pointer, workspace: workspace.pointer)
            return output
        }
        let output = forward()
        assertClose(output.array, naive.forward(tensor).values, tolerance: 1e-5, "residual block forward")
        // Both ReLUs must be active somewhere and cut somewhere, or the test would not exercise them.
        let savedMask = saved.array.map { $0 > 0 }
        let inner = savedMask[count...]
        XCTAssertTrue(savedMask[..<count].contains(true) && savedMask[..<count].contains(false))
        XCTAssertTrue(inner.contains(true) && inner.contains(false), "the inner ReLU is never/always cut")

        let rFloats = randomFloats(count, seed: 32)
        let r = rFloats.map(Double.init)
        let rBuffer = makeBuffer(rFloats)
        let before = store.fillGradients(seed: 33)
        let inputGradient = makeBuffer(count: count, filledWith: 7)
        block.backward(inputGradient: inputGradient.pointer, outputGradient: rBuffer.pointer, saved: saved.pointer,
                       batch: batch, height: height, width: width, parameters: store.values.pointer,
                       gradients: store.gradients.pointer, workspace: workspace.pointer, scratch: scratch.pointer)
        let expected = naive.backward(Tensor4(batch: batch, height: height, width: width, channels: channels, values: r),
                                      input: tensor)
        assertClose(inputGradient.array, expected.input.values, tolerance: 1e-4, "residual block dx vs naive")
        assertClose(store.accumulatedGradient(block.conv3x3.weight, since: before), expected.weight3, tolerance: 1e-4,
                    "residual block dW3 vs naive")
        assertClose(store.accumulatedGradient(block.conv3x3.bias, since: before), expected.bias3, tolerance: 1e-4,
                    "residual block db3 vs naive")
        assertClose(store.accumulatedGradient(block.conv1x1.weight, since: before), expected.weight1, tolerance: 1e-4,
                    "residual block dW1 vs naive")
        assertClose(store.accumulatedGradient(block.conv1x1.bias, since: before), expected.bias1, tolerance: 1e-4,
                    "residual block db1 vs naive")

        // Central differences in float, h = 1e-3; an entry whose +-h evaluation changes either ReLU's
        // pattern is replaced by the next candidate (the loss is piecewise linear-quadratic there).
        let h: Float = 1e-3
        var numeric: [Double] = [], analytic: [Double] = []
        var crossings = 0
        func check(_ buffer: FloatBuffer, _ indices: [Int], wanted: Int, gradient: (Int) -> Float) {
            var accepted = 0
            for i in indices where accepted < wanted {
                let value = buffer[i]
                buffer[i] = value + h
                let plus = dot(forward(), r), plusMask = saved.array.map { $0 > 0 }
                buffer[i] = value - h
                let minus = dot(forward(), r), minusMask = saved.array.map { $0 > 0 }
                buffer[i] = value
                if plusMask != savedMask || minusMask != savedMask { crossings += 1; continue }
                numeric.append((plus - minus) / Double(2 * h))
                analytic.append(Double(gradient(i)))
                accepted += 1
            }
            XCTAssertEqual(accepted, wanted, "not enough entries away from a ReLU kink")
        }
        check(input, sampleIndices(count: count, samples: 16, seed: 34), wanted: 8) { inputGradient[$0] }
        for slot in store.slots {
            let candidates = sampleIndices(count: slot.count, samples: min(slot.count, 10), seed: 35).map { $0 + slot.offset }
            check(store.values, candidates, wanted: min(slot.count, 5)) { store.gradients[$0] - before[$0] }
        }
        print("residual block: \(crossings) candidate entries skipped for crossing a ReLU kink")
        assertClose(analytic, numeric, tolerance: 1e-2, "residual block gradients vs finite differences")
        withExtendedLifetime((input, saved, workspace, scratch, rBuffer, inputGradient, output)) {}
    }
}
