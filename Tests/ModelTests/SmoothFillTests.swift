import XCTest
import Model
import TestSupport

/// `SmoothFill` (`--hole-fill smooth`): against the plain double-precision pyramid for odd, thin
/// and square images with fractional masks, known pixels kept bit for bit, missing pixels unread,
/// constants and linear ramps reproduced, and an image with nothing known filled with 0.
final class SmoothFillTests: XCTestCase {
    private func fill(_ image: [Float], _ missing: [Float], _ h: Int, _ w: Int, _ c: Int, using filler: SmoothFill = SmoothFill()) -> [Float] {
        var out = image
        out.withUnsafeMutableBufferPointer { o in
            missing.withUnsafeBufferPointer { m in filler.fill(o.baseAddress!, missing: m.baseAddress!, height: h, width: w, channels: c) }
        }
        return out
    }

    /// Random images of odd, thin, single-pixel and square sizes with fractional masks: `filler`
    /// against the naive pyramid (with `plateSweeps`), known pixels kept bit for bit, and the
    /// values under the mask unread.
    private func checkAgainstNaivePyramid(_ filler: SmoothFill, plateSweeps: Int, seed: UInt64) {
        var random = SplitMix64(seed: seed)
        for (h, w, c) in [(1, 1, 3), (1, 7, 1), (7, 1, 3), (13, 9, 3), (32, 32, 3), (33, 17, 1), (5, 64, 3)] {
            let image = (0..<(h * w * c)).map { _ in Float(random.nextUnit()) }
            var missing = (0..<(h * w)).map { _ in Float(random.nextUnit() < 0.4 ? 1 : 0) }
            if h * w > 4 { missing[h * w / 2] = 0.5; for q in 0..<min(h * w, 2 * w) { missing[q] = 1 } }
            let name = "\(h)x\(w)x\(c), \(plateSweeps) plate sweeps"
            let out = fill(image, missing, h, w, c, using: filler)
            let reference = naiveSmoothFill(image.map(Double.init), missing: missing.map(Double.init), height: h, width: w, channels: c,
                                            plateSweeps: plateSweeps)
            assertClose(out.map(Double.init), reference, tolerance: 1e-5, "\(name): against the naive pyramid")
            for q in 0..<(h * w) where missing[q] == 0 {
                for k in 0..<c { XCTAssertEqual(out[q * c + k].bitPattern, image[q * c + k].bitPattern, "\(name): known pixel \(q)") }
            }
            var scribbled = image
            for q in 0..<(h * w) where missing[q] == 1 { for k in 0..<c { scribbled[q * c + k] = 9 - scribbled[q * c + k] } }
            XCTAssertEqual(fill(scribbled, missing, h, w, c, using: filler), out, "\(name): missing pixels are not read")
        }
    }

    func testMatchesTheNaivePyramidAndKeepsKnownPixels() {
        checkAgainstNaivePyramid(SmoothFill(), plateSweeps: 0, seed: 7)   // one filler for every size: its buffers are reused
    }

    /// `--hole-fill plate`: against the naive pyramid with the same thin plate sweeps on its coarse
    /// levels, known pixels kept bit for bit, missing pixels unread; on a quadratic (which solves
    /// the thin plate equation but not Laplace's) it comes closer than the membrane.
    func testPlateMatchesTheNaivePyramidAndBendsLikeAPlate() throws {
        let filler = try XCTUnwrap(SmoothFill(.plate))
        XCTAssertEqual(filler.plateSweeps, SmoothFill.platePerLevel)
        XCTAssertNil(SmoothFill(.zero))
        XCTAssertEqual(SmoothFill(.smooth)?.plateSweeps, 0)
        checkAgainstNaivePyramid(filler, plateSweeps: SmoothFill.platePerLevel, seed: 11)
        let (h, w) = (48, 64)
        var missing = [Float](repeating: 0, count: h * w)
        for row in 8..<40 { for col in 16..<48 { missing[row * w + col] = 1 } }
        let bowl = (0..<(h * w)).map { q -> Float in let x = Float(q % w - 32) / 32; return x * x }
        func error(_ filled: [Float]) -> Float { zip(filled, bowl).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) }
        let membrane = error(fill(bowl, missing, h, w, 1)), plate = error(fill(bowl, missing, h, w, 1, using: filler))
        print("a quadratic across a 32x32 hole: squared error \(membrane) (smooth), \(plate) (plate)")
        XCTAssertLessThan(plate, 0.7 * membrane, "the plate continues the curve")
    }

    func testReproducesConstantsAndRampsAndFillsNothingKnownWithZero() {
        let (h, w) = (24, 40)
        var missing = [Float](repeating: 0, count: h * w)
        for row in 4..<20 { for col in 10..<26 { missing[row * w + col] = 1 } }
        let constant = fill([Float](repeating: 0.3, count: h * w * 3), missing, h, w, 3)
        for value in constant { XCTAssertEqual(value, 0.3, accuracy: 1e-6, "a constant image stays constant") }
        // A horizontal ramp: the membrane through its known pixels is the ramp itself.
        let ramp = (0..<(h * w)).map { Float($0 % w) / Float(w) }
        let filled = fill(ramp, missing, h, w, 1)
        let worst = zip(filled, ramp).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(worst, 0.03, "a ramp is continued across a 16x16 hole")
        let nothing = fill([Float](repeating: 0.7, count: 6 * 5 * 3), [Float](repeating: 1, count: 6 * 5), 6, 5, 3)
        XCTAssertEqual(nothing, [Float](repeating: 0, count: 6 * 5 * 3), "nothing known: 0")
        let none = (0..<(h * w)).map { Float($0) / 1000 }
        XCTAssertEqual(fill(none, [Float](repeating: 0, count: h * w), h, w, 1), none, "nothing missing: unchanged")
    }
}
