import Codec
@testable import Model
import TestSupport
import XCTest

/// The code prior in double precision, written from its definition (CodePrior's documentation)
/// with plain loops: the loss of a batch, and the logits of one head at one position.
private struct NaivePrior {
    let k: Int, l: Int, c: Int, height: Int, width: Int
    var values: [Double]   // the parameter buffer, in the store's layout
    let prior: CodePrior

    init(_ prior: CodePrior) {
        self.prior = prior
        k = prior.configuration.codes
        l = prior.configuration.levels
        c = prior.configuration.channels
        height = prior.height
        width = prior.width
        values = prior.parameters.values.array.map(Double.init)
    }

    func at(_ slot: ParameterSlot, _ index: Int) -> Double { values[slot.offset + index] }

    /// The trunk's output h2 `[h, w, C]` of one image drawn as `draw`.
    func trunk(codes: [Int32], image n: Int, draw: CodePrior.Draw) -> [Double] {
        let grid = height * width
        var h0 = [Double](repeating: 0, count: grid * c)
        for y in 0..<height {
            for x in 0..<width {
                let q = y * width + x
                let known = CodeOrder.phase(y: y, x: x) < draw.phase
                for j in 0..<c {
                    var v = at(prior.embedBias, j)
                    for level in 0..<l {
                        let index = known && level < draw.levels ? Int(codes[(n * grid + q) * l + level]) : k
                        v += at(prior.embed, (level * (k + 1) + index) * c + j)
                    }
                    h0[q * c + j] = max(v, 0)
                }
            }
        }
        func conv(_ input: [Double], _ layer: Conv2d) -> [Double] {
            var out = [Double](repeating: 0, count: grid * c)
            for y in 0..<height {
                for x in 0..<width {
                    for o in 0..<c {
                        var v = at(layer.bias, o)
                        for ky in 0..<3 {
                            for kx in 0..<3 {
                                let (yy, xx) = (y + ky - 1, x + kx - 1)
                                guard yy >= 0, yy < height, xx >= 0, xx < width else { continue }
                                for i in 0..<c {
                                    v += input[(yy * width + xx) * c + i] * at(layer.weight, ((o * 3 + ky) * 3 + kx) * c + i)
                                }
                            }
                        }
                        out[(y * width + x) * c + o] = max(v, 0)
                    }
                }
            }
            return out
        }
        return conv(conv(h0, prior.convs[0]), prior.convs[1])
    }

    /// The logits of head (draw.phase, level) at position q.
    func logits(trunk t: [Double], codes: [Int32], image n: Int, position q: Int, phase: Int, level: Int) -> [Double] {
        let grid = height * width, head = phase * l + level
        var u = [Double](repeating: 0, count: c)
        for j in 0..<c {
            var v = t[q * c + j] + at(prior.headBias, head * c + j)
            for earlier in 0..<level {
                v += at(prior.same!, (earlier * k + Int(codes[(n * grid + q) * l + earlier])) * c + j)
            }
            u[j] = max(v, 0)
        }
        return (0..<k).map { s in
            var v = at(prior.headOutput, head * k + s)
            for j in 0..<c { v += at(prior.headWeight, (head * k + s) * c + j) * u[j] }
            return v
        }
    }

    func loss(codes: [Int32], draws: [CodePrior.Draw]) -> Double {
        let grid = height * width
        var total = 0.0
        for (n, draw) in draws.enumerated() {
            let t = trunk(codes: codes, image: n, draw: draw)
            let positions = CodeOrder.positions(phase: draw.phase, height: height, width: width)
            var sum = 0.0
            for q in positions {
                for level in 0..<draw.levels {
                    let z = logits(trunk: t, codes: codes, image: n, position: q, phase: draw.phase, level: level)
                    let largest = z.max()!
                    let lse = largest + log(z.map { exp($0 - largest) }.reduce(0, +))
                    sum += lse - z[Int(codes[(n * grid + q) * l + level])]
                }
            }
            total += sum / Double(positions.count * draw.levels)
        }
        return total / Double(draws.count)
    }
}

final class CodePriorTests: XCTestCase {
    // K = 5 codes, 2 levels, 16 channels, an odd 5x4 grid, 3 images at different phases and levels.
    let configuration = PriorConfiguration(codes: 5, levels: 2, channels: 16)
    let (batch, height, width) = (3, 5, 4)
    let draws = [CodePrior.Draw(phase: 0, levels: 2), CodePrior.Draw(phase: 1, levels: 1), CodePrior.Draw(phase: 3, levels: 2)]

    func makePrior() throws -> (CodePrior, [Int32]) {
        let prior = try CodePrior(configuration: configuration, maxBatch: batch, height: height, width: width)
        prior.initialize(seed: 7)
        // Larger weights than the initialisation's, so that every ReLU is cut somewhere.
        let noise = randomFloats(prior.parameters.count, seed: 8, low: -0.3, high: 0.3)
        for i in 0..<prior.parameters.count { prior.parameters.values[i] += noise[i] }
        var random = SplitMix64(seed: 9)
        let codes = (0..<(batch * height * width * configuration.levels)).map { _ in Int32(random.below(configuration.codes)) }
        return (prior, codes)
    }

    /// The loss against the double-precision reference; every gradient against the reference's
    /// central differences (all entries of every tensor but the large head, sampled there).
    func testLossAndGradientsMatchTheReference() throws {
        let (prior, codes) = try makePrior()
        var naive = NaivePrior(prior)
        let loss = codes.withUnsafeBufferPointer { prior.forward(codes: $0.baseAddress!, draws: draws, batch: batch) }
        let expected = naive.loss(codes: codes, draws: draws)
        XCTAssertEqual(loss, expected, accuracy: 1e-5 * max(1, abs(expected)))
        prior.parameters.zeroGradients()
        prior.backward()
        let gradients = prior.parameters.gradients.array
        let h = 1e-5
        var checked = 0
        for slot in prior.parameters.slots {
            let indices = slot.count <= 300 ? Array(0..<slot.count) : sampleIndices(count: slot.count, samples: 300, seed: 10)
            for i in indices {
                let index = slot.offset + i
                let value = naive.values[index]
                naive.values[index] = value + h
                let plus = naive.loss(codes: codes, draws: draws)
                naive.values[index] = value - h
                let minus = naive.loss(codes: codes, draws: draws)
                naive.values[index] = value
                let numeric = (plus - minus) / (2 * h)
                XCTAssertEqual(Double(gradients[index]), numeric, accuracy: 2e-4 + 2e-3 * abs(numeric), "\(slot.name)[\(i)]")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 1000)
        // Unknown rows and the known rows both receive gradient.
        XCTAssertTrue(prior.lastLevelCounts.allSatisfy { $0 > 0 })
    }

    /// The fixed-order evaluator gives the reference's logits at every phase and level, on a grid
    /// of another size than training's, and the same bits from a second instance.
    func testEvaluatorMatchesTheReferenceAndIsRepeatable() throws {
        let (prior, _) = try makePrior()
        let (gh, gw) = (7, 6)
        var random = SplitMix64(seed: 11)
        let l = configuration.levels, k = configuration.codes
        let codes = (0..<(gh * gw * l)).map { _ in Int32(random.below(k)) }
        let big = try CodePrior(configuration: configuration, maxBatch: 1, height: gh, width: gw)
        big.parameters.values.pointer.update(from: prior.parameters.values.pointer, count: prior.parameters.count)
        let naive = NaivePrior(big)
        let evaluator = try PriorEvaluator(prior: big, height: gh, width: gw)
        let second = try PriorEvaluator(prior: big, height: gh, width: gw)
        for phase in 0..<4 {
            for levels in 1...l {
                let t = naive.trunk(codes: codes, image: 0, draw: .init(phase: phase, levels: levels))
                codes.withUnsafeBufferPointer { evaluator.prepare(phase: phase, levels: levels, codes: $0.baseAddress!) }
                codes.withUnsafeBufferPointer { second.prepare(phase: phase, levels: levels, codes: $0.baseAddress!) }
                for level in 0..<levels {
                    let got = codes.withUnsafeBufferPointer { evaluator.logits(level: level, codes: $0.baseAddress!) }
                    let again = codes.withUnsafeBufferPointer { second.logits(level: level, codes: $0.baseAddress!) }
                    for (r, q) in evaluator.positions.enumerated() {
                        let expected = naive.logits(trunk: t, codes: codes, image: 0, position: q, phase: phase, level: level)
                        let row = Array(UnsafeBufferPointer(start: got + r * evaluator.logitStride, count: k))
                        _ = assertClose(row, expected, tolerance: 1e-5, "phase \(phase) level \(level) position \(q)")
                        for s in 0..<k { XCTAssertEqual(row[s].bitPattern, again[r * evaluator.logitStride + s].bitPattern) }
                    }
                }
            }
        }
    }

    /// The fixed-order product does not depend on how rows are blocked: any row count gives each
    /// row the bits it gets alone.
    func testFixedOrderProductsDoNotDependOnBlocking() {
        let (inputs, outputs) = (37, 32)
        let x = randomFloats(7 * inputs, seed: 12), w = randomFloats(inputs * outputs, seed: 13), b = randomFloats(outputs, seed: 14)
        var all = [Float](repeating: 0, count: 7 * outputs), one = [Float](repeating: 0, count: outputs)
        fixedOrderProducts(rows: 7, input: x, inputs: inputs, weights: w, bias: b, outputs: outputs, output: &all, relu: false)
        for r in 0..<7 {
            x.withUnsafeBufferPointer {
                fixedOrderProducts(rows: 1, input: $0.baseAddress! + r * inputs, inputs: inputs, weights: w, bias: b, outputs: outputs,
                                   output: &one, relu: false)
            }
            XCTAssertEqual(Array(all[(r * outputs)..<((r + 1) * outputs)]).map(\.bitPattern), one.map(\.bitPattern))
            for o in 0..<outputs {
                var expected = Double(b[o])
                for i in 0..<inputs { expected += Double(x[r * inputs + i]) * Double(w[i * outputs + o]) }
                XCTAssertEqual(Double(one[o]), expected, accuracy: 1e-5)
            }
        }
    }

    /// Each image's draw depends on its place in the global batch, not on the split over ranks.
    func testDrawsDoNotDependOnTheSplit() {
        let whole = CodePrior.draws(key: NoiseKey(seed: 3, step: 17, firstImage: 0), batch: 8, levels: 4)
        let parts = CodePrior.draws(key: NoiseKey(seed: 3, step: 17, firstImage: 0), batch: 4, levels: 4)
            + CodePrior.draws(key: NoiseKey(seed: 3, step: 17, firstImage: 4), batch: 4, levels: 4)
        XCTAssertEqual(whole, parts)
        let many = CodePrior.draws(key: NoiseKey(seed: 3, step: 18, firstImage: 0), batch: 400, levels: 4)
        XCTAssertEqual(Set(many.map(\.phase)), [0, 1, 2, 3])
        XCTAssertEqual(Set(many.map(\.levels)), [1, 2, 3, 4])
    }

    /// The coding phases cover the grid once, and phases 1-3 see coded neighbours.
    func testCodeOrderCoversTheGrid() {
        let all = (0..<4).flatMap { CodeOrder.positions(phase: $0, height: 5, width: 3) }
        XCTAssertEqual(all.sorted(), Array(0..<15))
        XCTAssertEqual(CodeOrder.positions(phase: 0, height: 3, width: 3), [0, 2, 6, 8])
        XCTAssertEqual(CodeOrder.positions(phase: 1, height: 3, width: 3), [4])
    }

    /// The fixed exp is within 1e-6 of the library's, and a table from logits sums to 2^16 with
    /// every symbol possible and the likely ones likely.
    func testFixedExpAndTablesFromLogits() throws {
        for i in 0...2000 {
            let x = -Float(i) * 0.04
            XCTAssertEqual(Double(FixedExp.exp(x)), Foundation.exp(Double(x)), accuracy: 1e-6 * Foundation.exp(Double(x)) + 1e-38)
        }
        let logits: [Float] = [2, -1, 0.5, -30, 2, 7]
        let table = try logits.withUnsafeBufferPointer { try FrequencyTable(logits: $0.baseAddress!, count: $0.count) }
        XCTAssertEqual(table.frequencies.reduce(0, +), 1 << 16)
        XCTAssertTrue(table.frequencies.allSatisfy { $0 >= 1 })
        let softmax = logits.map { Foundation.exp(Double($0 - 7)) }
        let sum = softmax.reduce(0, +)
        for s in 0..<logits.count {
            XCTAssertEqual(Double(table.frequencies[s]) / 65536, softmax[s] / sum, accuracy: 1e-3)
        }
    }
}
