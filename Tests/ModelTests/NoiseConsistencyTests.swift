import XCTest
@testable import Model

/// `ClippedGaussian` and `NoiseConsistency` (`restore --noise-consistency`): the clipped mean and
/// its slope against quadrature and finite differences, the tables against the formulas, the
/// smoothing against products with cubed box matrices, the sigma estimate on noisy synthetic photos, and
/// the correction removing a regional bias without adding one.
final class NoiseConsistencyTests: XCTestCase {
    /// `E[clip(x + n, 0, 1)]` by the trapezoid rule over `n` in +-10 sigma.
    private func quadratureMean(_ x: Double, _ sigma: Double) -> Double {
        let steps = 200_000, low = -10 * sigma, step = 20 * sigma / Double(steps)
        var sum = 0.0
        for i in 0...steps {
            let n = low + Double(i) * step
            let weight = (i == 0 || i == steps) ? 0.5 : 1.0
            sum += weight * min(max(x + n, 0), 1) * exp(-0.5 * (n / sigma) * (n / sigma))
        }
        return sum * step / (sigma * (2 * Double.pi).squareRoot())
    }

    func testClippedMeanMatchesQuadratureAndSlopeMatchesFiniteDifferences() {
        for sigma in [0.01, 0.05, 0.2, 0.5] {
            for x in [-0.1, 0, 0.003, 0.02, 0.1, 0.5, 0.93, 1, 1.2] {
                let mean = ClippedGaussian.mean(x, sigma: sigma)
                XCTAssertEqual(mean, quadratureMean(x, sigma), accuracy: 1e-9, "x \(x), sigma \(sigma)")
                let h = 1e-6
                let difference = (ClippedGaussian.mean(x + h, sigma: sigma) - ClippedGaussian.mean(x - h, sigma: sigma)) / (2 * h)
                XCTAssertEqual(ClippedGaussian.slope(x, sigma: sigma), difference, accuracy: 1e-7, "x \(x), sigma \(sigma)")
            }
        }
        // The bias at black: sigma / sqrt(2 pi).
        XCTAssertEqual(ClippedGaussian.mean(0, sigma: 0.1), 0.1 / (2 * Double.pi).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(ClippedGaussian.mean(0.5, sigma: 0.2), 0.5, accuracy: 1e-12)
    }

    func testTablesMatchTheFormulas() {
        for sigma in [NoiseConsistency.smallestSigma, 0.05, 0.2] {
            let consistency = NoiseConsistency(sigma: sigma)
            var worst = 0.0
            for i in 0...10_007 {
                let x = Double(i) / 10_007
                let (mean, slope) = consistency.lookup(Float(x))
                worst = max(worst, abs(Double(mean) - ClippedGaussian.mean(x, sigma: sigma)),
                            abs(Double(slope) - ClippedGaussian.slope(x, sigma: sigma)) * 0.01)
            }
            XCTAssertLessThan(worst, 2e-6, "sigma \(sigma)")
        }
    }

    /// `B^3` for the zero-padded box matrix `B` of `n x n` (`B[i][j] = 1` when `|i - j| <= radius`).
    private func cubedBox(_ n: Int, radius: Int) -> [[Double]] {
        let box = (0..<n).map { i in (0..<n).map { j in abs(i - j) <= radius ? 1.0 : 0.0 } }
        func times(_ a: [[Double]], _ b: [[Double]]) -> [[Double]] {
            (0..<n).map { i in (0..<n).map { j in (0..<n).reduce(0.0) { $0 + a[i][$1] * b[$1][j] } } }
        }
        return times(times(box, box), box)
    }

    /// The smoothing equals `C P R^T` with `R`, `C` the cubed box matrices of the rows and columns
    /// (three zero-padded box passes per axis), and `G(1)`'s factors are their row sums.
    func testSmoothingEqualsThreeZeroPaddedBoxPassesPerAxis() {
        for (height, width, radius) in [(7, 5, 1), (40, 33, 4), (3, 60, 16), (20, 20, 0)] {
            var random = SplitMix64(seed: 5, stream: UInt64(height * 100 + width))
            let plane = (0..<(height * width)).map { _ in random.uniform(-1, 1) }
            var smoothed = plane, scratch = [Float](repeating: 0, count: plane.count)
            NoiseConsistency.smooth(&smoothed, height: height, width: width, radius: radius, scratch: &scratch)
            let rows = cubedBox(width, radius: radius), columns = cubedBox(height, radius: radius)
            for row in 0..<height {
                for column in 0..<width {
                    var sum = 0.0, mass = 0.0
                    for r in 0..<height {
                        for c in 0..<width {
                            let term = columns[row][r] * rows[column][c] * Double(plane[r * width + c])
                            sum += term
                            mass += abs(term)
                        }
                    }
                    // Float rounding between passes: relative to the terms' total size.
                    XCTAssertEqual(Double(smoothed[row * width + column]), sum, accuracy: 1e-6 * max(1, mass), "\(height)x\(width) r \(radius)")
                }
            }
            let rowSums = NoiseConsistency.boxed(ones: width, radius: radius)
            for column in 0..<width { XCTAssertEqual(Double(rowSums[column]), rows[column].reduce(0, +), accuracy: 1e-6 * rows[column].reduce(0, +)) }
        }
    }

    /// A smooth synthetic photo `[H, W, 3]` in [0, 1]: broad gradients and waves, a black band
    /// (the first channel at 0.01 over the top third) and a white one.
    private func photo(height: Int, width: Int) -> [Float] {
        var pixels = [Float](repeating: 0, count: height * width * 3)
        for row in 0..<height {
            for column in 0..<width {
                let u = Float(column) / Float(width), v = Float(row) / Float(height)
                let base = row * width * 3 + column * 3
                pixels[base] = row < height / 3 ? 0.01 : 0.2 + 0.5 * u
                pixels[base + 1] = 0.5 + 0.3 * sin(6 * u) * cos(4 * v)
                pixels[base + 2] = row > 2 * height / 3 ? 0.985 : 0.1 + 0.8 * v
            }
        }
        return pixels
    }

    /// `clip(x + sigma n)`, rounded to 8 bits as a PNG holds it.
    private func noisy(_ clean: [Float], sigma: Float, seed: UInt64) -> [Float] {
        var random = SplitMix64(seed: seed)
        return clean.map { (min(max($0 + sigma * random.normal(), 0), 1) * 255).rounded() / 255 }
    }

    func testSigmaEstimateIsCloseOnNoisyPhotosAndNilWhenNothingQualifies() {
        let (height, width) = (192, 256)
        let clean = photo(height: height, width: width)
        for (sigma, seed) in [(Float(0.03), UInt64(1)), (0.1, 2), (0.2, 3)] {
            let y = noisy(clean, sigma: sigma, seed: seed)
            let estimate = ClippedGaussian.estimateSigma(noisy: y, restored: clean, height: height, width: width, channels: 3)
            XCTAssertNotNil(estimate)
            XCTAssertEqual(estimate ?? 0, Double(sigma), accuracy: 0.04 * Double(sigma), "sigma \(sigma)")
        }
        // All black: no unclipped pixel.
        let black = [Float](repeating: 0, count: 64 * 64 * 3)
        XCTAssertNil(ClippedGaussian.estimateSigma(noisy: black, restored: black, height: 64, width: 64, channels: 3))
        XCTAssertNil(ClippedGaussian.estimateSigma(noisy: clean, restored: clean, height: 2, width: 200, channels: 3))
    }

    private func channelMeanShifts(_ a: [Float], _ b: [Float]) -> [Double] {
        (0..<3).map { c in stride(from: c, to: a.count, by: 3).reduce(0.0) { $0 + Double(a[$1] - b[$1]) } * 3 / Double(a.count) }
    }

    private func meanSquaredError(_ a: [Float], _ b: [Float], channel: Int? = nil) -> Double {
        let indices = channel.map { Array(stride(from: $0, to: a.count, by: 3)) } ?? Array(a.indices)
        return indices.reduce(0.0) { $0 + Double((a[$1] - b[$1]) * (a[$1] - b[$1])) } / Double(indices.count)
    }

    /// A restoration with a regional bias (the black band's channel 4/255 too bright, as an
    /// undertrained denoiser leaves it, and the last channel 1/255 too dark everywhere) comes back
    /// within 0.5/255 in every channel's mean, the first channel closer to the clean photo; an
    /// exact restoration moves by little.
    func testCorrectionRemovesARegionalBiasAndKeepsAnExactRestoration() {
        let (height, width) = (192, 256)
        let clean = photo(height: height, width: width)
        for (sigma, seed) in [(Float(0.1), UInt64(7)), (0.2, 8)] {
            let y = noisy(clean, sigma: sigma, seed: seed)
            var biased = clean
            for i in stride(from: 0, to: biased.count / 3, by: 3) { biased[i] += 4 / 255 }
            for i in stride(from: 2, to: biased.count, by: 3) { biased[i] -= 1 / 255 }
            let consistency = NoiseConsistency(sigma: Double(sigma))
            var corrected = biased
            consistency.apply(restored: &corrected, noisy: y, height: height, width: width, channels: 3)
            let before = channelMeanShifts(biased, clean), after = channelMeanShifts(corrected, clean)
            XCTAssertGreaterThan(abs(before[0]) * 255, 1.3)
            for shift in after { XCTAssertLessThan(abs(shift) * 255, 0.5, "sigma \(sigma): shifts \(after.map { $0 * 255 })") }
            XCTAssertLessThan(meanSquaredError(corrected, clean, channel: 0), 0.6 * meanSquaredError(biased, clean, channel: 0), "sigma \(sigma)")

            var exact = clean
            consistency.apply(restored: &exact, noisy: y, height: height, width: width, channels: 3)
            let moved = meanSquaredError(exact, clean).squareRoot() * 255
            XCTAssertLessThan(moved, Double(sigma) * 8, "sigma \(sigma): an exact restoration moved by \(moved)/255 RMS")
            for shift in channelMeanShifts(exact, clean) { XCTAssertLessThan(abs(shift) * 255, 0.5) }
        }
        // Zero rounds leave the restoration as it is, clipped to [0, 1] (NaN as 0, as 8 bits store it).
        var untouched: [Float] = [0.2, 1.3, -0.1, .nan]
        NoiseConsistency(sigma: 0.1, rounds: 0).apply(restored: &untouched, noisy: [0.2, 1, 0, 0], height: 1, width: 2, channels: 2)
        XCTAssertEqual(untouched, [0.2, 1, 0, 0])
    }
}
