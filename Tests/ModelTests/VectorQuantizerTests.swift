@testable import Model
import TestSupport
import XCTest

final class VectorQuantizerTests: XCTestCase {
    private final class Fixture {
        let store = ParameterStore()
        let quantizer: VectorQuantizer
        let count: Int
        let quantized: FloatBuffer
        let indices: UnsafeMutableBufferPointer<Int32>
        let workspace: FloatBuffer

        init(codes: Int, dimension: Int, kind: CodebookKind, vectors: Int, commitment: Float = 0.25,
             decay: Double = 0.99, epsilon: Double = 1e-5) {
            quantizer = VectorQuantizer(codes: codes, dimension: dimension, kind: kind, commitment: commitment,
                                        decay: decay, epsilon: epsilon, parameters: store)
            store.allocate()
            count = vectors
            quantized = makeBuffer(count: vectors * dimension, filledWith: .nan)
            indices = .allocate(capacity: vectors)
            indices.initialize(repeating: -1)
            workspace = FloatBuffer(count: quantizer.workspaceCount(vectors: vectors))
        }

        deinit { indices.deallocate() }

        var codebook: UnsafeMutablePointer<Float> { quantizer.codebook(parameters: store) }

        func setCodebook(_ rows: [[Float]]) {
            for (k, row) in rows.enumerated() { for (j, v) in row.enumerated() { codebook[k * quantizer.dimension + j] = v } }
        }

        @discardableResult
        func forward(_ z: FloatBuffer, statistics: Bool = false) -> Double {
            quantizer.forward(quantized: quantized.pointer, indices: indices.baseAddress!, vectors: z.pointer, count: count,
                              codebook: codebook, collectStatistics: statistics, workspace: workspace.pointer)
        }

        var indexArray: [Int] { indices.map { Int($0) } }
    }

    /// Brute force in double: the nearest code and its distance, the smallest index on a tie.
    private func bruteForce(_ z: [Float], _ codebook: UnsafePointer<Float>, codes: Int, dimension d: Int)
        -> [(index: Int, distances: [Double])] {
        (0..<(z.count / d)).map { p in
            let distances = (0..<codes).map { k in
                (0..<d).reduce(0.0) { s, j in let diff = Double(z[p * d + j]) - Double(codebook[k * d + j]); return s + diff * diff }
            }
            var best = 0
            for k in 1..<codes where distances[k] < distances[best] { best = k }
            return (best, distances)
        }
    }

    /// Test 6a: the GEMM nearest-code search against brute force on random data, with the
    /// returned `mean((z - q)^2)` and `q = e_k`.
    func testNearestCodeMatchesBruteForce() {
        for (codes, dimension, vectors) in [(11, 5, 37), (1, 3, 4), (16, 4, 50)] {
            let f = Fixture(codes: codes, dimension: dimension, kind: .ema, vectors: vectors)
            f.quantizer.initializeEMA(seed: 77)
            let z = randomFloats(vectors * dimension, seed: 78, low: -1.5, high: 1.5)
            let sentinel = randomFloats(f.quantizer.batchStatistics.count, seed: 79)
            for (i, v) in sentinel.enumerated() { f.quantizer.batchStatistics[i] = v }
            let mean = f.forward(makeBuffer(z), statistics: false)
            XCTAssertEqual(f.quantizer.batchStatistics.array, sentinel, "collectStatistics: false must not touch the statistics")

            let expected = bruteForce(z, f.codebook, codes: codes, dimension: dimension)
            var smallestGap = Double.infinity, squared = 0.0
            for (p, reference) in expected.enumerated() {
                let chosen = f.indexArray[p]
                let sorted = reference.distances.sorted()
                if sorted.count > 1 { smallestGap = min(smallestGap, sorted[1] - sorted[0]) }
                // Float rounding may only decide between codes whose distances agree to ~1e-5.
                if sorted.count > 1 && sorted[1] - sorted[0] < 1e-5 {
                    XCTAssertLessThanOrEqual(reference.distances[chosen] - sorted[0], 1e-5, "vector \(p)")
                } else {
                    XCTAssertEqual(chosen, reference.index, "vector \(p): nearest code")
                }
                for j in 0..<dimension {
                    XCTAssertEqual(f.quantized[p * dimension + j], f.codebook[chosen * dimension + j], "q must be e_k exactly")
                }
                squared += reference.distances[chosen]
            }
            print("nearest code K=\(codes) D=\(dimension) P=\(vectors): smallest brute-force gap \(smallestGap)")
            assertClose(mean, squared / Double(vectors * dimension), tolerance: 1e-6, "quantizer mean((z-q)^2) K=\(codes)")
        }
    }

    /// Test 6a': exact ties go to the smallest index (values exact in float, so the GEMM's
    /// distances tie exactly).
    func testExactTiesPickTheSmallestIndex() {
        let f = Fixture(codes: 5, dimension: 2, kind: .ema, vectors: 5)
        // e0 far away, e1 and e3 identical, e2 as far from (0.5, 0.5) as e1 and e3.
        f.setCodebook([[4, 4], [1, 0], [0, 1], [1, 0], [-2, -2]])
        let z = makeBuffer([
            0.5, 0.5,   // |z-e1|^2 = |z-e2|^2 = |z-e3|^2 = 0.5        -> 1
            2, 0,       // |z-e1|^2 = |z-e3|^2 = 1, |z-e2|^2 = 5       -> 1
            0, 2,       // |z-e2|^2 = 1, |z-e1|^2 = 5                   -> 2
            -1, -1,     // |z-e4|^2 = 2, |z-e1|^2 = 5                   -> 4
            4, 4,       // exactly e0                                   -> 0
        ])
        f.forward(z)
        XCTAssertEqual(f.indexArray, [1, 1, 2, 4, 0])

        // A tie involving code 0 and the last code, identical vectors.
        let g = Fixture(codes: 3, dimension: 2, kind: .grad, vectors: 2)
        g.setCodebook([[0.5, -1], [3, 3], [0.5, -1]])
        g.forward(makeBuffer([0.25, -0.75, 3, 2.5]))
        XCTAssertEqual(g.indexArray, [0, 1])
    }

    /// Test 6b: the EMA update of spec/model.md on a hand-computed example, K = 3, D = 2,
    /// gamma = 0.75, eps = 0.25 (large, so that the Laplace smoothing shows).
    func testEMAUpdateMatchesHandComputedExample() {
        let f = Fixture(codes: 3, dimension: 2, kind: .ema, vectors: 4, commitment: 0.25, decay: 0.75, epsilon: 0.25)
        // Start as the spec says: E, N = 0, M = E.
        f.setCodebook([[0, 0], [2, 0], [0, 4]])
        for k in 0..<3 { f.quantizer.emaCount[k] = 0 }
        for i in 0..<6 { f.quantizer.emaSum[i] = f.codebook[i] }
        let z = makeBuffer([0.2, 0.2, 1.8, 0.4, 2.2, -0.4, -0.2, 0.6])

        // Step 1. Distances:
        //   z0 = ( 0.2, 0.2): e0 0.08, e1 3.28, e2 14.48  -> 0
        //   z1 = ( 1.8, 0.4): e0 3.40, e1 0.20, e2 16.20  -> 1
        //   z2 = ( 2.2,-0.4): e0 5.00, e1 0.20, e2 24.20  -> 1
        //   z3 = (-0.2, 0.6): e0 0.40, e1 5.20, e2 11.60  -> 0
        // n = (2, 2, 0); s0 = z0 + z3 = (0, 0.8), s1 = z1 + z2 = (4, 0), s2 = (0, 0).
        // mean((z-q)^2) = (0.08 + 0.2 + 0.2 + 0.4) / 8 = 0.11
        var mean = f.forward(z, statistics: true)
        XCTAssertEqual(f.indexArray, [0, 1, 1, 0])
        assertClose(mean, 0.11, tolerance: 1e-6, "EMA step 1 mean((z-q)^2)")
        assertClose(f.quantizer.batchStatistics.array, [2, 2, 0, 0, 0.8, 4, 0, 0, 0], tolerance: 1e-6, "EMA step 1 [n | s]")
        f.quantizer.applyEMA()
        // N = 0.75*0 + 0.25*n = (0.5, 0.5, 0), sum N = 1
        // M = 0.75*E + 0.25*s: M0 = (0, 0.2), M1 = (1.5 + 1, 0) = (2.5, 0), M2 = (0, 3)
        // Ntilde_k = (N_k + 0.25) / (1 + 3*0.25) * 1 = (3/7, 3/7, 1/7)
        // E = M / Ntilde: e0 = (0, 0.2*7/3) = (0, 1.4/3), e1 = (2.5*7/3, 0) = (17.5/3, 0), e2 = (0, 3*7) = (0, 21)
        assertClose(doubles(f.quantizer.emaCount, count: 3), [0.5, 0.5, 0], tolerance: 1e-6, "EMA step 1 N")
        assertClose(doubles(f.quantizer.emaSum, count: 6), [0, 0.2, 2.5, 0, 0, 3], tolerance: 1e-6, "EMA step 1 M")
        assertClose(doubles(f.codebook, count: 6), [0, 1.4 / 3, 17.5 / 3, 0, 0, 21], tolerance: 1e-6, floor: 1e-3,
                    "EMA step 1 E")

        // Step 2, same z, new codebook e0 = (0, 0.4667), e1 = (5.8333, 0), e2 = (0, 21):
        //   z0: e0 0.04 + 0.0711 = 0.1111; z1: e0 3.24 + 0.0044 = 3.2444 (e1 16.27);
        //   z2: e0 4.84 + 0.7511 = 5.5911 (e1 13.2); z3: e0 0.04 + 0.0178 = 0.0578  -> all 0
        // n = (4, 0, 0), s0 = (4, 0.8).
        // mean = (0.111111 + 3.244444 + 5.591111 + 0.057778) / 8 = 9.004444 / 8 = 1.1255556
        mean = f.forward(z, statistics: true)
        XCTAssertEqual(f.indexArray, [0, 0, 0, 0])
        assertClose(mean, 9.0044444444 / 8, tolerance: 1e-6, "EMA step 2 mean((z-q)^2)")
        assertClose(f.quantizer.batchStatistics.array, [4, 0, 0, 4, 0.8, 0, 0, 0, 0], tolerance: 1e-6, "EMA step 2 [n | s]")
        f.quantizer.applyEMA()
        // N = 0.75*(0.5, 0.5, 0) + 0.25*(4, 0, 0) = (1.375, 0.375, 0), sum N = 1.75
        // M0 = 0.75*(0, 0.2) + 0.25*(4, 0.8) = (1, 0.35); M1 = 0.75*(2.5, 0) = (1.875, 0); M2 = 0.75*(0, 3) = (0, 2.25)
        // Ntilde_k = (N_k + 0.25) / (1.75 + 0.75) * 1.75 = (N_k + 0.25) * 0.7 = (1.1375, 0.4375, 0.175)
        // E: e0 = (1/1.1375, 0.35/1.1375) = (0.8791209, 0.3076923), e1 = (1.875/0.4375, 0) = (4.2857143, 0),
        //    e2 = (0, 2.25/0.175) = (0, 12.857143)
        assertClose(doubles(f.quantizer.emaCount, count: 3), [1.375, 0.375, 0], tolerance: 1e-6, "EMA step 2 N")
        assertClose(doubles(f.quantizer.emaSum, count: 6), [1, 0.35, 1.875, 0, 0, 2.25], tolerance: 1e-6, "EMA step 2 M")
        assertClose(doubles(f.codebook, count: 6), [1 / 1.1375, 0.35 / 1.1375, 1.875 / 0.4375, 0, 0, 2.25 / 0.175],
                    tolerance: 1e-6, floor: 1e-3, "EMA step 2 E")
    }

    /// Test 6c: straight-through and commitment gradients, `dz = dq + beta * 2 (z - q) / (P*D)`, and
    /// the `.grad` codebook gradient `2 (q - z) / (P*D)` summed per code; both also against central
    /// differences of the quantizer's own `mean((z - q)^2)` with the assignment held fixed.
    func testStraightThroughCommitmentAndCodebookGradients() {
        let (codes, d, vectors) = (6, 3, 13)
        let beta: Float = 0.25
        for kind in CodebookKind.allCases {
            let f = Fixture(codes: codes, dimension: d, kind: kind, vectors: vectors, commitment: beta)
            f.store.initialize(seed: 90)
            f.quantizer.initializeEMA(seed: 90)
            let zValues = randomFloats(vectors * d, seed: 91, low: -1.5, high: 1.5)
            let z = makeBuffer(zValues)
            f.forward(z)
            let q = f.quantized.array, k = f.indexArray
            XCTAssertGreaterThan(Set(k).count, 2, "the test should use several codes")
            let dqValues = randomFloats(vectors * d, seed: 92)
            let dq = makeBuffer(dqValues)
            let dz = makeBuffer(count: vectors * d, filledWith: .nan)
            // `.ema` has no parameters: give it a sentinel buffer that must stay untouched.
            let gradients = f.store.count > 0 ? f.store.gradients : makeBuffer(count: 4, filledWith: 3)
            let before = randomFloats(gradients.count, seed: 93)
            for i in 0..<gradients.count { gradients[i] = before[i] }
            f.quantizer.backward(vectorGradient: dz.pointer, quantizedGradient: dq.pointer, vectors: z.pointer,
                                 quantized: f.quantized.pointer, indices: f.indices.baseAddress!, count: vectors,
                                 gradients: gradients.pointer)
            let scale = 2.0 / Double(vectors * d)
            let expectedDz = (0..<(vectors * d)).map {
                Double(dqValues[$0]) + Double(beta) * scale * (Double(zValues[$0]) - Double(q[$0]))
            }
            assertClose(dz.array, expectedDz, tolerance: 1e-6, "\(kind) straight-through dz")

            var expectedCodebook = [Double](repeating: 0, count: codes * d)
            for p in 0..<vectors { for j in 0..<d {
                expectedCodebook[k[p] * d + j] += scale * (Double(q[p * d + j]) - Double(zValues[p * d + j]))
            } }
            if let slot = f.quantizer.codebookSlot {
                let accumulated = (0..<slot.count).map { Double(gradients[slot.offset + $0]) - Double(before[slot.offset + $0]) }
                assertClose(accumulated, expectedCodebook, tolerance: 1e-5, floor: 1e-3, "grad codebook gradient")
            } else {
                XCTAssertEqual(gradients.array, before, "the EMA quantizer must not write parameter gradients")
            }

            // Central differences of m = mean((z - q)^2), h = 1e-2 (m is quadratic with k fixed):
            // beta * dm/dz = dz - dq, and dm/dE = the .grad codebook gradient.
            let h: Float = 1e-2
            var numeric: [Double] = [], analytic: [Double] = []
            func central(_ buffer: UnsafeMutablePointer<Float>, _ i: Int) -> Double {
                let value = buffer[i]
                buffer[i] = value + h; let plus = f.forward(z); XCTAssertEqual(f.indexArray, k, "assignment changed at +h")
                buffer[i] = value - h; let minus = f.forward(z); XCTAssertEqual(f.indexArray, k, "assignment changed at -h")
                buffer[i] = value
                return (plus - minus) / Double(2 * h)
            }
            for i in 0..<(vectors * d) {
                numeric.append(Double(beta) * central(z.pointer, i))
                analytic.append(Double(dz[i]) - Double(dqValues[i]))
            }
            for i in 0..<(codes * d) {
                numeric.append(central(f.codebook, i))
                analytic.append(expectedCodebook[i])
            }
            assertClose(analytic, numeric, tolerance: 1e-3, floor: 1e-3, "\(kind) quantizer gradients vs finite differences")
            withExtendedLifetime((z, dq, dz, gradients)) {}
        }
    }
    /// Residual VQ's k-means start and restarts: level by level on the residuals the levels
    /// before leave. Three levels of 8 codes quantize 400 random vectors with a smaller error than
    /// one level; level 1's centres start from level-0 residuals (each re-seeded code of level 1 is
    /// one of them), and a dead code of level 1 is re-seeded from the residuals too, from its own
    /// stream.
    func testResidualLevelsStartAndRestartOnTheirResiduals() {
        let (count, d, k) = (400, 4, 8)
        let vectors = makeBuffer(randomFloats(count * d, seed: 171, low: -1, high: 1))
        func quantizer(levels: Int) -> (VectorQuantizer, ParameterStore) {
            let store = ParameterStore()
            let q = VectorQuantizer(codes: k, dimension: d, kind: .ema, commitment: 0.25, decay: 0.99, epsilon: 1e-5,
                                    parameters: store, levels: levels, maxVectors: count)
            store.allocate()
            return (q, store)
        }
        let workspace = FloatBuffer(count: count * k)
        var errors: [Double] = []
        for levels in [1, 3] {
            let (q, store) = quantizer(levels: levels)
            let placed = q.initializeWithKMeans(vectors: vectors.pointer, count: count, iterations: 10, seed: 5,
                                                parameters: store, workspace: workspace.pointer)
            XCTAssertEqual(placed, k)
            let out = FloatBuffer(count: count * d)
            let codes = UnsafeMutableBufferPointer<Int32>.allocate(capacity: count * levels)
            defer { codes.deallocate() }
            _ = q.forwardLevels(quantized: out.pointer, indices: codes.baseAddress!, vectors: vectors.pointer, count: count,
                                parameters: store, collectStatistics: false, workspace: workspace.pointer)
            errors.append(zip(out.array, vectors.array).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } / Double(count * d))
            if levels == 3 {
                // Level 1's EMA counts sum to the vectors clustered, as level 0's.
                let total = (0..<k).reduce(Float(0)) { $0 + q.emaCount(level: 1)[$1] }
                XCTAssertEqual(total, Float(count))
                // A dead code of level 1 (numbered K + k) is re-seeded from a level-1 residual.
                q.emaCount(level: 1)[3] = 0
                XCTAssertEqual(q.deadCodes(threshold: 0.5), [k + 3])
                let reseeded = q.restart(codes: [k + 3], candidates: vectors.pointer, count: count, weight: 1, seed: 9, step: 4,
                                         parameters: store, workspace: workspace.pointer)
                XCTAssertEqual(reseeded, 1)
                XCTAssertEqual(q.emaCount(level: 1)[3], 1)
                let row = Array(UnsafeBufferPointer(start: q.codebook(level: 1, parameters: store) + 3 * d, count: d))
                let level0 = FloatBuffer(count: count * d)
                let first = UnsafeMutableBufferPointer<Int32>.allocate(capacity: count)
                defer { first.deallocate() }
                _ = q.forward(quantized: level0.pointer, indices: first.baseAddress!, vectors: vectors.pointer, count: count,
                              codebook: q.codebook(level: 0, parameters: store), collectStatistics: false, workspace: workspace.pointer)
                let residuals = (0..<count).map { p in (0..<d).map { vectors[p * d + $0] - level0[p * d + $0] } }
                XCTAssertTrue(residuals.contains(row), "the re-seeded row is a level-1 residual")
            }
        }
        print("residual VQ on 400 random 4-d vectors, 8 codes: mean squared error 1 level \(errors[0]), 3 levels \(errors[1])")
        XCTAssertLessThan(errors[1], 0.5 * errors[0])
    }

    /// The restart's order is a Fisher-Yates permutation computed lazily: its prefixes agree for
    /// every length and equal the dense shuffle's first entries, and the whole order is a
    /// permutation.
    func testRestartOrderPrefixesAgree() {
        let count = 5000
        var random = SplitMix64(seed: 7 &+ 1, stream: 0x5245_5354_4152_54 &+ 12)
        var dense = Array(0..<count)
        for slot in 0..<count { dense.swapAt(slot, slot + random.below(count - slot)) }
        let whole = VectorQuantizer.restartOrder(count: count, limit: count, seed: 7, level: 1, step: 12)
        XCTAssertEqual(whole, dense)
        XCTAssertEqual(Set(whole).count, count)
        for limit in [0, 1, 64, 300] {
            XCTAssertEqual(VectorQuantizer.restartOrder(count: count, limit: limit, seed: 7, level: 1, step: 12), Array(dense.prefix(limit)))
        }
        XCTAssertEqual(VectorQuantizer.restartOrder(count: 3, limit: 10, seed: 7, level: 1, step: 12).count, 3)
    }

    /// A restart from a prefix of the order (only the candidates it names, as rank 0 receives them)
    /// re-seeds exactly as one from all the candidates, or says it ran out: a batch where most
    /// vectors copy a live code (an image with large uniform areas) needs longer prefixes, grown
    /// until it no longer runs out, as the trainer grows them. Single and residual VQ.
    func testRestartFromAPrefixEqualsTheWholeRestart() {
        let (count, d, k) = (2000, 4, 16)
        let vectors = makeBuffer(randomFloats(count * d, seed: 31, low: -1, high: 1))
        for levels in [1, 2] {
            let store = ParameterStore()
            let q = VectorQuantizer(codes: k, dimension: d, kind: .ema, commitment: 0.25, decay: 0.99, epsilon: 1e-5,
                                    parameters: store, levels: levels, maxVectors: count)
            store.allocate()
            let workspace = FloatBuffer(count: count * k)
            XCTAssertEqual(q.initializeWithKMeans(vectors: vectors.pointer, count: count, iterations: 5, seed: 3,
                                                  parameters: store, workspace: workspace.pointer), k)
            // 95% of the vectors copy code 0 of level 0 (their level-0 residual is zero).
            let batch = FloatBuffer(count: count * d)
            batch.pointer.update(from: vectors.pointer, count: count * d)
            for i in 0..<count where i % 20 != 0 { (batch.pointer + i * d).update(from: q.codebook(level: 0, parameters: store), count: d) }
            let dead = (0..<levels).flatMap { level in [2, 5, 9, 11, 13].map { level * k + $0 } }
            let before = Array(q.emaState.buffer)
            q.restart(codes: dead, candidates: batch.pointer, count: count, weight: 1, seed: 11, step: 6,
                      parameters: store, workspace: workspace.pointer)
            let whole = Array(q.emaState.buffer)
            XCTAssertNotEqual(whole, before)

            var limit = 8, rounds = 0, exhausted = true
            while exhausted {
                _ = before.withUnsafeBufferPointer { q.emaState.buffer.update(fromContentsOf: $0) }
                let orders = (0..<levels).map { VectorQuantizer.restartOrder(count: count, limit: limit, seed: 11, level: $0, step: 6) }
                let indices = Array(Set(orders.joined())).sorted()
                let part = FloatBuffer(count: indices.count * d)
                for (i, index) in indices.enumerated() { (part.pointer + i * d).update(from: batch.pointer + index * d, count: d) }
                let result = q.restart(codes: dead, candidates: part.pointer, indices: indices, orders: orders, weight: 1,
                                       parameters: store, workspace: workspace.pointer)
                exhausted = result.exhausted
                rounds += 1
                limit *= 4
            }
            XCTAssertGreaterThan(rounds, 1, "\(levels) levels: the first prefix should run out")
            XCTAssertEqual(Array(q.emaState.buffer), whole, "\(levels) levels")
        }
    }
}
