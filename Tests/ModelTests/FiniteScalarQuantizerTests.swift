@testable import Model
import Foundation
import TestSupport
import XCTest

/// Finite scalar quantization: the levels it takes, its codes and their vectors, its
/// straight-through gradient, and the VQ-VAE built on it against the double-precision reference.
final class FiniteScalarQuantizerTests: XCTestCase {
    /// Every channel takes exactly its `L` values, evenly spaced in [-1, 1]; every code's vector is
    /// what the forward pass gives for a `z` with that code, bit for bit; the codes cover
    /// `0..<prod L` and agree with the mixed-radix definition.
    func testLevelsCodesAndVectors() throws {
        for levels in [[8, 5, 5, 5], [3], [7, 5, 5, 5, 5], [4, 6]] {
            try FiniteScalarQuantizer.validate(levels: levels)
            let fsq = FiniteScalarQuantizer(levels: levels)
            let d = levels.count, count = 50 * levels.reduce(1, *) + 1000
            let z = randomFloats(count * d, seed: 3, low: -1.5, high: 1.5)
            var q = [Float](repeating: 0, count: count * d), indices = [Int32](repeating: 0, count: count)
            fsq.forward(quantized: &q, indices: &indices, vectors: z, count: count)
            for j in 0..<d {
                let values = Set((0..<count).map { q[$0 * d + j] })
                let w = Float(levels[j] / 2)
                let expected = Set((0..<levels[j]).map { (Float($0) - w) / w })
                XCTAssertEqual(values, expected, "\(levels) channel \(j): the L values")
            }
            var vector = [Float](repeating: 0, count: d)
            for p in 0..<count {
                XCTAssertTrue((0..<Int32(fsq.codes)).contains(indices[p]))
                var index = 0, basis = 1
                for j in 0..<d { index += Int(q[p * d + j] * Float(levels[j] / 2) + Float(levels[j] / 2)) * basis; basis *= levels[j] }
                XCTAssertEqual(Int(indices[p]), index, "mixed radix")
                fsq.vector(of: Int(indices[p]), into: &vector)
                XCTAssertEqual(vector.map(\.bitPattern), Array(q[(p * d)..<(p * d + d)]).map(\.bitPattern), "code \(indices[p]) decodes exactly")
            }
            XCTAssertEqual(Set(indices).count, fsq.codes, "\(levels): a wide z reaches every code")
        }
        for bad in [[], [2, 5], [8, 5, 5, 5, 5, 5, 5, 5, 5, 5], [1000], Array(repeating: 3, count: 17)] {
            XCTAssertThrowsError(try FiniteScalarQuantizer.validate(levels: bad), "\(bad)")
        }
    }

    /// The gradient is the derivative of the bound divided by the half width (central differences
    /// in double of `tanh(z + s) h - o`).
    func testGradientIsTheBoundsDerivative() {
        let fsq = FiniteScalarQuantizer(levels: [8, 5, 3])
        let count = 50, d = 3
        let z = randomFloats(count * d, seed: 4, low: -3, high: 3), dq = randomFloats(count * d, seed: 5, low: -1, high: 1)
        var dz = [Float](repeating: 0, count: count * d)
        fsq.backward(vectorGradient: &dz, quantizedGradient: dq, vectors: z, count: count)
        for i in 0..<(count * d) {
            let j = i % d, level = Double([8, 5, 3][j])
            let half = (level - 1) * 1.001 / 2, offset = j == 0 ? 0.5 : 0, shift = atanh(offset / half)
            func bound(_ x: Double) -> Double { tanh(x + shift) * half - offset }
            let h = 1e-5, x = Double(z[i])
            let numeric = (bound(x + h) - bound(x - h)) / (2 * h) / Double(Int(level) / 2) * Double(dq[i])
            XCTAssertEqual(Double(dz[i]), numeric, accuracy: 1e-5 * max(1, abs(numeric)), "element \(i)")
        }
    }
}
