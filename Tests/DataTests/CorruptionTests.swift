import XCTest
@testable import Data
import Model
import TestSupport

/// Corruptions of restoration training's inputs: parsing, each corruption's statistics against
/// its definition, a naive 2-D reference for the blur, and the keyed random streams.
final class CorruptionTests: XCTestCase {
    /// `values` (normalised, `[H, W, C]`) after `spec` with the given key.
    func corrupted(_ spec: String, _ values: [Float], height: Int, width: Int, channels: Int,
                   seed: UInt64 = 7, epoch: Int = 0, sampleIndex: Int = 0,
                   file: StaticString = #filePath, line: UInt = #line) throws -> [Float] {
        XCTAssertEqual(values.count, height * width * channels, "image size", file: file, line: line)
        let pipeline = try CorruptionPipeline(spec: spec)
        let image = makeBuffer(values)
        let scratch = FloatBuffer(count: CorruptionPipeline.scratchCount(height: height, width: width, channels: channels))
        pipeline.apply(to: image.pointer, height: height, width: width, channels: channels,
                       seed: seed, epoch: epoch, sampleIndex: sampleIndex, scratch: scratch.pointer)
        return image.array
    }

    func meanAndStandardDeviation(_ values: [Double]) -> (mean: Double, std: Double) {
        let mean = values.reduce(0, +) / Double(values.count)
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1)
        return (mean, variance.squareRoot())
    }

    // MARK: - Parsing

    func testParsingAndCanonicalRoundTrip() throws {
        XCTAssertTrue(try CorruptionPipeline(spec: "").isEmpty)
        XCTAssertTrue(try CorruptionPipeline(spec: "  \t ").isEmpty)
        XCTAssertEqual(try CorruptionPipeline(spec: "").description, "")

        let simple = try CorruptionPipeline(spec: "noise:0.1,mask:0.25")
        XCTAssertEqual(simple.corruptions, [.noise(sigma: 0.1), .mask(area: 0.25, fill: .value(0))])
        XCTAssertEqual(simple.description, "noise:0.1,mask:0.25")
        XCTAssertFalse(simple.isEmpty)

        let spec = " noise : 0.1 , SP:0.05,saltpepper:1, mask:0.5:Noise, mask:1:0.5 ,mask:0.2:0,blur:1.5, blur:0,dark:2.2:0.6, dark:0.5 ,dark:2:1, noise:1e-5 "
        let pipeline = try CorruptionPipeline(spec: spec)
        XCTAssertEqual(pipeline.corruptions, [
            .noise(sigma: 0.1), .saltAndPepper(fraction: 0.05), .saltAndPepper(fraction: 1),
            .mask(area: 0.5, fill: .noise), .mask(area: 1, fill: .value(0.5)), .mask(area: 0.2, fill: .value(0)),
            .blur(sigma: 1.5), .blur(sigma: 0), .darken(gamma: 2.2, gain: 0.6), .darken(gamma: 0.5, gain: 1),
            .darken(gamma: 2, gain: 1), .noise(sigma: 1e-5),
        ])
        let canonical = "noise:0.1,saltpepper:0.05,saltpepper:1,mask:0.5:noise,mask:1:0.5,mask:0.2,blur:1.5,blur:0,dark:2.2:0.6,dark:0.5,dark:2,noise:1e-05"
        print("canonical: \(pipeline)")
        XCTAssertEqual(pipeline.description, canonical)
        let again = try CorruptionPipeline(spec: pipeline.description)
        XCTAssertEqual(again, pipeline)
        XCTAssertEqual(again.description, canonical)

        // Awkward floats survive the round trip bit for bit.
        for value: Float in [0.1, 1.0 / 3.0, 0.123456789, 1e-7, 0.999999] {
            let text = try CorruptionPipeline(spec: "noise:\(value),mask:\(value):\(value),dark:\(value):\(value)").description
            let parsed = try CorruptionPipeline(spec: text)
            XCTAssertEqual(parsed.corruptions, [.noise(sigma: ValueRange(value)), .mask(area: ValueRange(value), fill: .value(value)),
                                                .darken(gamma: ValueRange(value), gain: ValueRange(value))], text)
        }
    }

    /// Ranges `LOW..HIGH` for every parameter but the mask's fill; whitespace around the ends is
    /// tolerated, equal ends are one value, and the canonical form round-trips.
    func testRangesParseAndRoundTrip() throws {
        let pipeline = try CorruptionPipeline(spec: "noise:0.02..0.2, sp:0..0.1, mask: 0.05 .. 0.5 :noise, blur:0.5..2,dark:1.5..3:0.4..1, dark:2:0.5..0.9, noise:0.1..0.1")
        XCTAssertEqual(pipeline.corruptions, [
            .noise(sigma: ValueRange(0.02, 0.2)), .saltAndPepper(fraction: ValueRange(0, 0.1)),
            .mask(area: ValueRange(0.05, 0.5), fill: .noise), .blur(sigma: ValueRange(0.5, 2)),
            .darken(gamma: ValueRange(1.5, 3), gain: ValueRange(0.4, 1)), .darken(gamma: 2, gain: ValueRange(0.5, 0.9)),
            .noise(sigma: 0.1),
        ])
        let canonical = "noise:0.02..0.2,saltpepper:0..0.1,mask:0.05..0.5:noise,blur:0.5..2,dark:1.5..3:0.4..1,dark:2:0.5..0.9,noise:0.1"
        XCTAssertEqual(pipeline.description, canonical)
        XCTAssertEqual(try CorruptionPipeline(spec: canonical), pipeline)
        XCTAssertTrue(pipeline.hasRanges)
        XCTAssertFalse(try CorruptionPipeline(spec: "noise:0.1,blur:1..1").hasRanges)
        for value: Float in [1.0 / 3.0, 0.123456789] {
            let text = try CorruptionPipeline(spec: "noise:\(value / 2)..\(value)").description
            XCTAssertEqual(try CorruptionPipeline(spec: text).corruptions, [.noise(sigma: ValueRange(value / 2, value))], text)
        }
    }

    func testEveryErrorIsOneClearLine() {
        let cases: [(spec: String, message: String)] = [
            ("foo:1", "unknown corruption 'foo' in --corrupt 'foo:1'; use noise:SIGMA, saltpepper:FRACTION, mask:AREA[:VALUE|noise], blur:SIGMA, dark:GAMMA[:GAIN]"),
            ("noise:0.1,\nfoo", "unknown corruption 'foo' in --corrupt 'noise:0.1, foo'; use noise:SIGMA"),
            ("noise:0.1,,mask:0.2", "empty item in --corrupt 'noise:0.1,,mask:0.2'; separate corruptions with single commas, e.g. noise:0.1,mask:0.25"),
            ("noise:0.1,", "empty item in --corrupt 'noise:0.1,'"),
            ("noise", "--corrupt noise needs a sigma >= 0, e.g. noise:0.1 (got 'noise')"),
            ("noise:-0.1", "--corrupt noise needs a sigma >= 0, e.g. noise:0.1 (got 'noise:-0.1')"),
            ("noise:abc", "--corrupt noise needs a sigma >= 0, e.g. noise:0.1 (got 'noise:abc')"),
            ("noise:nan", "--corrupt noise needs a sigma >= 0"),
            ("noise:inf", "--corrupt noise needs a sigma >= 0"),
            ("noise:0.1:2", "--corrupt noise takes one argument, e.g. noise:0.1 (got 'noise:0.1:2')"),
            ("saltpepper:1.5", "--corrupt saltpepper needs a fraction in [0, 1], e.g. saltpepper:0.05 (got 'saltpepper:1.5')"),
            ("sp:-0.01", "--corrupt sp needs a fraction in [0, 1], e.g. sp:0.05 (got 'sp:-0.01')"),
            ("saltpepper:0.1:0.2", "--corrupt saltpepper takes one argument, e.g. saltpepper:0.05"),
            ("mask:0", "--corrupt mask needs an area in (0, 1], e.g. mask:0.25 (got 'mask:0')"),
            ("mask:1.01", "--corrupt mask needs an area in (0, 1], e.g. mask:0.25 (got 'mask:1.01')"),
            ("mask", "--corrupt mask needs an area in (0, 1], e.g. mask:0.25 (got 'mask')"),
            ("mask:0.25:2", "--corrupt mask fill must be a value in [0, 1] or 'noise', e.g. mask:0.25:0.5 or mask:0.25:noise (got 'mask:0.25:2')"),
            ("mask:0.25:gray", "--corrupt mask fill must be a value in [0, 1] or 'noise'"),
            ("mask:0.25:", "--corrupt mask fill must be a value in [0, 1] or 'noise'"),
            ("mask:0.25:0:1", "--corrupt mask takes at most 2 arguments, e.g. mask:0.25:noise (got 'mask:0.25:0:1')"),
            ("blur:-1", "--corrupt blur needs a sigma in [0, 100] pixels, e.g. blur:1 (got 'blur:-1')"),
            ("blur:1e30", "--corrupt blur needs a sigma in [0, 100] pixels"),
            ("blur:1:2", "--corrupt blur takes one argument, e.g. blur:1"),
            ("dark:0", "--corrupt dark needs a gamma > 0, e.g. dark:2.2 or dark:2.2:0.6 (got 'dark:0')"),
            ("dark", "--corrupt dark needs a gamma > 0"),
            ("dark:2.2:-1", "--corrupt dark gain must be >= 0, e.g. dark:2.2:0.6 (got 'dark:2.2:-1')"),
            ("dark:2.2:x", "--corrupt dark gain must be >= 0"),
            ("dark:2.2:0.6:1", "--corrupt dark takes at most 2 arguments, e.g. dark:2.2:0.6"),
            ("noise:0.2..0.02", "--corrupt noise range 0.2..0.02 runs from high to low; write LOW..HIGH, e.g. noise:0.02..0.2 (got 'noise:0.2..0.02')"),
            ("noise:-0.1..0.2", "--corrupt noise range needs two sigmas >= 0, LOW..HIGH, e.g. noise:0.02..0.2 (got 'noise:-0.1..0.2')"),
            ("noise:0.1..", "--corrupt noise range needs two sigmas >= 0, LOW..HIGH"),
            ("noise:..0.2", "--corrupt noise range needs two sigmas >= 0, LOW..HIGH"),
            ("noise:0.1..0.2..0.3", "--corrupt noise range needs two sigmas >= 0, LOW..HIGH"),
            ("noise:0.1...0.2", "--corrupt noise range needs two sigmas >= 0, LOW..HIGH"),
            ("noise:0.1..nan", "--corrupt noise range needs two sigmas >= 0, LOW..HIGH"),
            ("noise:0.1..0.2:0.3", "--corrupt noise takes one argument, e.g. noise:0.1"),
            ("sp:0.5..2", "--corrupt sp range needs two fractions in [0, 1], LOW..HIGH, e.g. sp:0.01..0.1 (got 'sp:0.5..2')"),
            ("mask:0..0.5", "--corrupt mask range needs two areas in (0, 1], LOW..HIGH, e.g. mask:0.05..0.5 (got 'mask:0..0.5')"),
            ("mask:0.5..0.1:noise", "--corrupt mask range 0.5..0.1 runs from high to low; write LOW..HIGH, e.g. mask:0.05..0.5"),
            ("mask:0.1..0.5:0..1", "--corrupt mask fill must be a value in [0, 1] or 'noise'"),
            ("blur:1..200", "--corrupt blur range needs two sigmas in [0, 100] pixels, LOW..HIGH, e.g. blur:0.5..2 (got 'blur:1..200')"),
            ("blur:3..1", "--corrupt blur range 3..1 runs from high to low"),
            ("dark:0..2", "--corrupt dark range needs two gammas > 0, LOW..HIGH, e.g. dark:1.5..3 (got 'dark:0..2')"),
            ("dark:2:1..0.5", "--corrupt dark range 1..0.5 runs from high to low; write LOW..HIGH, e.g. dark:2.2:0.4..1"),
            ("dark:2:-1..0.5", "--corrupt dark gain range needs two gains >= 0, LOW..HIGH, e.g. dark:2.2:0.4..1"),
            ("holes", "--corrupt holes needs a largest number of holes from 1 to 64, e.g. holes:4 (got 'holes')"),
            ("holes:0", "--corrupt holes needs a largest number of holes from 1 to 64, e.g. holes:4 (got 'holes:0')"),
            ("holes:65", "--corrupt holes needs a largest number of holes from 1 to 64"),
            ("holes:2.5", "--corrupt holes needs a largest number of holes from 1 to 64"),
            ("holes:4:2", "--corrupt holes fill must be a value in [0, 1] or 'noise', e.g. holes:4:0.5 or holes:4:noise (got 'holes:4:2')"),
            ("holes:4:0:1:1", "--corrupt holes takes at most 3 arguments, e.g. holes:8:0:2"),
            ("holes:4:0:0", "--corrupt holes scale must be a number in (0, 8], e.g. holes:8:0:2 (holes twice as large) (got 'holes:4:0:0')"),
            ("holes:4:0:9", "--corrupt holes scale must be a number in (0, 8]"),
            ("holes:4:noise:x", "--corrupt holes scale must be a number in (0, 8]"),
            ("holes:4:2:2", "--corrupt holes fill must be a value in [0, 1] or 'noise'"),
        ]
        for (spec, message) in cases {
            XCTAssertThrowsError(try CorruptionPipeline(spec: spec), "'\(spec)' was accepted") { error in
                guard let error = error as? DataError else { return XCTFail("'\(spec)': \(type(of: error)), not DataError") }
                let text = error.description
                XCTAssertTrue(text.hasPrefix(message), "'\(spec)': got \(text)")
                XCTAssertFalse(text.contains("\n") || text.contains("\r"), "'\(spec)': more than one line: \(text)")
            }
        }
        for spec in ["foo:1", "noise:-1"] {
            do { _ = try CorruptionPipeline(spec: spec) } catch { print("--corrupt '\(spec)': \(error)") }
        }
    }

    // MARK: - Noise

    /// Mid-grey (p = 0.5) plus N(0, 0.1^2): the measured std and mean match; two noises in one list
    /// draw from different streams (positions), so their variances add.
    func testNoiseOnMidGreyHasTheRequestedStandardDeviation() throws {
        let (h, w, c) = (128, 128, 3)
        let grey = [Float](repeating: 0, count: h * w * c)
        let once = try corrupted("noise:0.1", grey, height: h, width: w, channels: c).map { Double($0) + 0.5 }
        let (mean, std) = meanAndStandardDeviation(once)
        print(String(format: "noise:0.1 on mid-grey, %d elements: mean %.5f, std %.5f (%.2f%% off)", once.count, mean, std, 100 * (std / 0.1 - 1)))
        XCTAssertEqual(std, 0.1, accuracy: 0.003)
        XCTAssertEqual(mean, 0.5, accuracy: 0.005)

        let twice = try corrupted("noise:0.1,noise:0.1", grey, height: h, width: w, channels: c).map { Double($0) + 0.5 }
        let (mean2, std2) = meanAndStandardDeviation(twice)
        print(String(format: "noise:0.1,noise:0.1: mean %.5f, std %.5f (independent: %.5f, same stream would give 0.2)", mean2, std2, 0.1 * 2.0.squareRoot()))
        XCTAssertEqual(std2, 0.1 * 2.0.squareRoot(), accuracy: 0.03 * 0.1 * 2.0.squareRoot())

        let strong = try corrupted("noise:1", grey, height: h, width: w, channels: c).map { Double($0) + 0.5 }
        let zeros = strong.filter { $0 == 0 }.count, ones = strong.filter { $0 == 1 }.count
        print("noise:1 clipped \(zeros) elements to 0 and \(ones) to 1 of \(strong.count)")
        XCTAssertTrue(strong.allSatisfy { $0 >= 0 && $0 <= 1 })
        XCTAssertGreaterThan(zeros, strong.count / 4)  // P(n < -0.5) = 0.31
        XCTAssertGreaterThan(ones, strong.count / 4)

        let image = randomFloats(6 * 5 * 2, seed: 3, low: -0.5, high: 0.5)
        XCTAssertEqual(try corrupted("noise:0", image, height: 6, width: 5, channels: 2), image)
    }

    // MARK: - Salt and pepper

    func testSaltAndPepperChangesTheRequestedFractionOfPixelsToZeroOrOne() throws {
        let (h, w, c) = (128, 128, 3)
        let image = randomFloats(h * w * c, seed: 11, low: -0.4, high: 0.4)  // p in (0.1, 0.9)
        for fraction: Float in [0.05, 0.2, 0.5] {
            let out = try corrupted("saltpepper:\(fraction)", image, height: h, width: w, channels: c, sampleIndex: 3)
            var salt = 0, pepper = 0, partial = 0
            for pixel in 0..<(h * w) {
                let base = pixel * c
                let changed = (0..<c).filter { out[base + $0].bitPattern != image[base + $0].bitPattern }.count
                if changed == 0 { continue }
                let values = Set((0..<c).map { out[base + $0] })
                if changed == c && values == [0.5] { salt += 1 } else if changed == c && values == [-0.5] { pepper += 1 } else { partial += 1 }
            }
            let measured = Double(salt + pepper) / Double(h * w)
            let saltShare = Double(salt) / Double(max(salt + pepper, 1))
            let standardError = (Double(fraction) * (1 - Double(fraction)) / Double(h * w)).squareRoot()
            print(String(format: "saltpepper:%.2f on %d pixels: measured %.4f (%.1f standard errors), salt share %.3f", fraction, h * w, measured,
                         (measured - Double(fraction)) / standardError, saltShare))
            XCTAssertEqual(partial, 0, "pixels changed in some channels only, or to values other than 0/1")
            XCTAssertEqual(measured, Double(fraction), accuracy: 5 * standardError)
            XCTAssertEqual(saltShare, 0.5, accuracy: 5 * (0.25 / Double(salt + pepper)).squareRoot())
        }
        XCTAssertEqual(try corrupted("sp:0", image, height: h, width: w, channels: c), image)
        XCTAssertTrue(try corrupted("sp:1", image, height: h, width: w, channels: c).allSatisfy { $0 == 0.5 || $0 == -0.5 })
    }

    // MARK: - Mask

    /// The changed elements form exactly one filled rectangle whose area is `AREA * H * W` up to
    /// the rounding of its sides, with an aspect ratio in [1/2, 2] unless clamped by the image; its
    /// position is uniform (mean centre at the image centre).
    func testMaskCoversTheAreaWithTheFill() throws {
        let c = 3
        let fill: Float = 0.3
        for (h, w) in [(32, 32), (32, 48), (17, 9), (64, 16)] {
            let image = randomFloats(h * w * c, seed: UInt64(h * w), low: 0.05, high: 0.45)  // p in (0.55, 0.95), never the fill
            for area: Float in [0.05, 0.1, 0.25, 0.5, 0.75, 1] {
                let samples = 200
                var totalFraction = 0.0, worstExcess = 0.0, centreY = 0.0, centreX = 0.0
                var corners = Set<Int>()
                for sample in 0..<samples {
                    let out = try corrupted("mask:\(area):\(fill)", image, height: h, width: w, channels: c, sampleIndex: sample)
                    var top = h, bottom = -1, left = w, right = -1, changed = 0
                    for y in 0..<h {
                        for x in 0..<w {
                            for k in 0..<c where out[(y * w + x) * c + k].bitPattern != image[(y * w + x) * c + k].bitPattern {
                                changed += 1
                                top = min(top, y); bottom = max(bottom, y); left = min(left, x); right = max(right, x)
                            }
                        }
                    }
                    let rows = bottom - top + 1, columns = right - left + 1
                    guard rows > 0, columns > 0 else { return XCTFail("\(h)x\(w) mask:\(area): nothing masked") }
                    XCTAssertEqual(changed, rows * columns * c, "\(h)x\(w) mask:\(area): the changed elements are not one rectangle")
                    for y in top...bottom {
                        for x in left...right {
                            for k in 0..<c where out[(y * w + x) * c + k] != fill - 0.5 {
                                XCTFail("\(h)x\(w) mask:\(area): (\(y), \(x), \(k)) is \(out[(y * w + x) * c + k] + 0.5), not the fill \(fill)")
                            }
                        }
                    }
                    let target = Double(area) * Double(h * w)
                    let roundingBound = 0.5 * Double(rows + columns) + 0.25
                    let excess = abs(Double(rows * columns) - target)
                    XCTAssertLessThanOrEqual(excess, roundingBound + 1e-9, "\(h)x\(w) mask:\(area): \(rows)x\(columns) for a target of \(target) pixels")
                    worstExcess = max(worstExcess, excess / roundingBound)
                    if rows < h && columns < w {
                        XCTAssertLessThanOrEqual(rows, 2 * columns + 2, "\(h)x\(w) mask:\(area): aspect \(rows)x\(columns)")
                        XCTAssertLessThanOrEqual(columns, 2 * rows + 2, "\(h)x\(w) mask:\(area): aspect \(rows)x\(columns)")
                    }
                    totalFraction += Double(rows * columns) / Double(h * w)
                    centreY += Double(top) + Double(rows) / 2
                    centreX += Double(left) + Double(columns) / 2
                    corners.insert(top * w + left)
                }
                let meanFraction = totalFraction / Double(samples)
                centreY /= Double(samples); centreX /= Double(samples)
                print(String(format: "%2dx%2d mask:%.2f: mean masked fraction %.4f (%+.2f%%), worst |area - target| %.2f of the rounding bound, mean centre (%.2f, %.2f) of (%.1f, %.1f), %d positions",
                             h, w, area, meanFraction, 100 * (meanFraction / Double(area) - 1), worstExcess, centreY, centreX, Double(h) / 2, Double(w) / 2, corners.count))
                if h * w >= 1024 { XCTAssertEqual(meanFraction, Double(area), accuracy: 0.03 * Double(area)) }
                if area < 0.5 {
                    XCTAssertEqual(centreY, Double(h) / 2, accuracy: 0.1 * Double(h))
                    XCTAssertEqual(centreX, Double(w) / 2, accuracy: 0.1 * Double(w))
                    XCTAssertGreaterThan(corners.count, 10, "positions do not vary")
                }
                if area == 1 { XCTAssertEqual(meanFraction, 1) }
            }
        }
    }

    func testMaskNoiseFillIsUniformAndDefaultFillIsBlack() throws {
        let (h, w, c) = (32, 48, 3)
        let outside = [Float](repeating: 1, count: h * w * c)  // out of range: every fill value differs
        let out = try corrupted("mask:0.5:noise", outside, height: h, width: w, channels: c)
        let filled = out.filter { $0 != 1 }.map { Double($0) + 0.5 }
        let (mean, std) = meanAndStandardDeviation(filled)
        print(String(format: "mask:0.5:noise: %d elements filled (%.3f of the image), mean %.4f, std %.4f (uniform: 0.5, %.4f)",
                     filled.count, Double(filled.count) / Double(out.count), mean, std, (1.0 / 12).squareRoot()))
        XCTAssertTrue(filled.allSatisfy { $0 >= 0 && $0 <= 1 })
        XCTAssertEqual(Double(filled.count) / Double(out.count), 0.5, accuracy: 0.03)
        XCTAssertEqual(mean, 0.5, accuracy: 0.03)
        XCTAssertEqual(std, (1.0 / 12).squareRoot(), accuracy: 0.02)

        let black = try corrupted("mask:0.25", outside, height: h, width: w, channels: c)
        XCTAssertEqual(black.filter { $0 == -0.5 }.count, black.filter { $0 != 1 }.count)
        XCTAssertGreaterThan(black.filter { $0 == -0.5 }.count, 0)
    }

    // MARK: - Blur

    func gaussian(sigma: Double) -> [Double] {
        let radius = Int((3 * sigma).rounded(.up))
        let raw = (-radius...radius).map { exp(-Double($0 * $0) / (2 * sigma * sigma)) }
        let sum = raw.reduce(0, +)
        return raw.map { $0 / sum }
    }

    func testBlurKeepsConstantsAndSpreadsAnImpulseIntoTheGaussian() throws {
        // A constant image stays constant.
        let constant = [Float](repeating: 0.2, count: 20 * 13 * 3)
        let flat = try corrupted("blur:2", constant, height: 20, width: 13, channels: 3)
        let flatError = flat.map { abs(Double($0) - 0.2) }.max()!
        print(String(format: "blur:2 on a constant image: largest change %.2e", flatError))
        XCTAssertLessThan(flatError, 1e-6)

        // Sigma 0 is the identity, bit for bit.
        let random = randomFloats(9 * 7 * 3, seed: 5, low: -0.5, high: 0.5)
        XCTAssertEqual(try corrupted("blur:0", random, height: 9, width: 7, channels: 3), random)

        // A unit impulse (normalised space, so the background is exactly 0) becomes the outer
        // product of the 1-D kernel with itself; it sums to 1.
        let sigma = 1.5, (h, w) = (41, 41)
        let g = gaussian(sigma: sigma), radius = g.count / 2
        XCTAssertEqual(radius, 5)
        var impulse = [Float](repeating: 0, count: h * w)
        impulse[20 * w + 20] = 1
        let response = try corrupted("blur:\(sigma)", impulse, height: h, width: w, channels: 1).map(Double.init)
        let sum = response.reduce(0, +)
        var expected = [Double](repeating: 0, count: h * w)
        for dy in -radius...radius { for dx in -radius...radius { expected[(20 + dy) * w + 20 + dx] = g[dy + radius] * g[dx + radius] } }
        print(String(format: "blur:1.5 impulse: response sums to %.8f, centre %.6f (expected %.6f), 1-D weights %@", sum, response[20 * w + 20],
                     g[radius] * g[radius], g[radius...].map { String(format: "%.5f", $0) }.joined(separator: " ")))
        XCTAssertEqual(sum, 1, accuracy: 1e-6)
        assertClose(response, expected, tolerance: 1e-7, "impulse response vs outer product of the 1-D Gaussian")
        // Row sums through the impulse's column give the 1-D weights.
        let rowSums = (20 - radius...20 + radius).map { y in (0..<w).map { response[y * w + $0] }.reduce(0, +) }
        assertClose(rowSums, g, tolerance: 1e-7, "row sums vs 1-D Gaussian")
        assertClose(CorruptionPipeline.halfKernel(sigma: Float(sigma)).map(Double.init), Array(g[radius...]), tolerance: 1e-7, "half kernel")

        // The same in pixel space: one white pixel on black.
        let white = impulse.map { $0 - 0.5 }
        let spread = try corrupted("blur:\(sigma)", white, height: h, width: w, channels: 1).map { Double($0) + 0.5 }
        assertClose(spread, expected, tolerance: 1e-6, "white pixel on black vs outer product")
    }

    /// Against a direct 2-D convolution with clamped (replicated) edges, on odd non-square images
    /// whose kernel is wider than the image.
    func testBlurMatchesNaiveTwoDimensionalConvolutionWithReplicatedEdges() throws {
        for (h, w, c, sigma) in [(7, 5, 3, 1.3), (6, 9, 2, 3.0), (16, 11, 1, 0.7), (1, 8, 3, 1.0)] {
            let image = randomFloats(h * w * c, seed: UInt64(h * 100 + w), low: -0.5, high: 0.5)
            let g = gaussian(sigma: sigma), radius = g.count / 2
            var expected = [Double](repeating: 0, count: h * w * c)
            for y in 0..<h {
                for x in 0..<w {
                    for k in 0..<c {
                        var total = 0.0
                        for dy in -radius...radius {
                            for dx in -radius...radius {
                                let yy = min(max(y + dy, 0), h - 1), xx = min(max(x + dx, 0), w - 1)
                                total += g[dy + radius] * g[dx + radius] * (Double(image[(yy * w + xx) * c + k]) + 0.5)
                            }
                        }
                        expected[(y * w + x) * c + k] = total
                    }
                }
            }
            let out = try corrupted("blur:\(sigma)", image, height: h, width: w, channels: c).map { Double($0) + 0.5 }
            assertClose(out, expected, tolerance: 1e-6, "blur:\(sigma) on \(h)x\(w)x\(c) vs naive 2-D convolution")
        }
    }

    // MARK: - Dark

    func testDarkenFollowsTheFormula() throws {
        let (h, w, c) = (8, 6, 3)
        var image = randomFloats(h * w * c, seed: 21, low: -0.5, high: 0.5)
        image[0] = -0.5; image[1] = 0.5
        for (gamma, gain) in [(2.2, 0.6), (0.5, 1.0), (1.0, 1.0), (2.0, 3.0)] {
            let spec = gain == 1 ? "dark:\(gamma)" : "dark:\(gamma):\(gain)"
            let out = try corrupted(spec, image, height: h, width: w, channels: c).map { Double($0) + 0.5 }
            let expected = image.map { min(1, Double(Float(gain)) * pow(Double($0) + 0.5, Double(Float(gamma)))) }
            assertClose(out, expected, tolerance: 1e-6, "\(spec) vs gain * p^gamma")
            XCTAssertEqual(out[0], 0)
            XCTAssertEqual(out[1], min(1, Double(Float(gain))), accuracy: 1e-7)
        }
        let clipped = try corrupted("dark:2:3", image, height: h, width: w, channels: c)
        print("dark:2:3 clipped \(clipped.filter { $0 == 0.5 }.count) of \(clipped.count) elements to 1")
        XCTAssertTrue(clipped.allSatisfy { $0 >= -0.5 && $0 <= 0.5 })
    }

    // MARK: - Random streams

    func testSameKeyGivesBitIdenticalResultsAndAnyOtherKeyDiffers() throws {
        let (h, w, c) = (16, 24, 3)
        let spec = "noise:0.1,sp:0.05,mask:0.3:noise,blur:0.8,dark:1.5:0.8"
        let image = randomFloats(h * w * c, seed: 2, low: -0.5, high: 0.5)
        func run(seed: UInt64 = 7, epoch: Int = 3, sample: Int = 1234) throws -> [UInt32] {
            try corrupted(spec, image, height: h, width: w, channels: c, seed: seed, epoch: epoch, sampleIndex: sample).map(\.bitPattern)
        }
        let reference = try run()
        XCTAssertEqual(try run(), reference, "same key, different result")
        for (label, other) in [("sample", try run(sample: 1235)), ("epoch", try run(epoch: 4)), ("seed", try run(seed: 8))] {
            let differing = zip(other, reference).filter { $0 != $1 }.count
            print("changing the \(label) changes \(differing) of \(reference.count) elements")
            XCTAssertGreaterThan(differing, reference.count / 2, "another \(label) gives (nearly) the same corruption")
        }

        // A batch corrupted in any order, with one shared scratch buffer, gives the same images:
        // nothing but the key and the pixels matters.
        let pipeline = try CorruptionPipeline(spec: spec)
        let scratch = FloatBuffer(count: CorruptionPipeline.scratchCount(height: h, width: w, channels: c))
        func batch(_ order: [Int]) -> [[Float]] {
            var images = [[Float]](repeating: [], count: order.count)
            for index in order {
                let buffer = makeBuffer(image)
                pipeline.apply(to: buffer.pointer, height: h, width: w, channels: c, seed: 7, epoch: 3, sampleIndex: 100 + index, scratch: scratch.pointer)
                images[index] = buffer.array
            }
            return images
        }
        let forward = batch(Array(0..<8))
        XCTAssertEqual(batch(Array((0..<8).reversed())), forward)
        XCTAssertEqual(batch([5, 2, 7, 0, 1, 6, 4, 3]), forward)
        XCTAssertNotEqual(forward[0], forward[1])
    }

    /// A range's value is the first draw of the item's keyed stream, uniform in the range: a
    /// blurred or darkened image equals the fixed spec with the drawn value bit for bit; noise
    /// drawn in 0.02..0.2 has, per image, the standard deviation of its own draw, and the draws
    /// spread over the range; the same key gives the same image, another key another value; equal
    /// ends damage exactly like the single value.
    func testRangesDrawEachImagesValueFromItsKeyedStream() throws {
        let (h, w, c) = (24, 20, 3)
        let image = randomFloats(h * w * c, seed: 3, low: -0.4, high: 0.4)
        func firstDraw(sample: Int, position: Int = 0) -> Double {
            var random = CorruptionPipeline.randomStream(seed: 7, epoch: 2, sampleIndex: sample, position: position)
            return random.nextUnit()
        }
        for sample in [0, 17, 4096] {
            let u = firstDraw(sample: sample)
            let sigma = 0.5 + 2.5 * Float(u)
            XCTAssertEqual(try corrupted("blur:0.5..3", image, height: h, width: w, channels: c, epoch: 2, sampleIndex: sample),
                           try corrupted("blur:\(sigma)", image, height: h, width: w, channels: c, epoch: 2, sampleIndex: sample),
                           "blur sample \(sample)")
            var random = CorruptionPipeline.randomStream(seed: 7, epoch: 2, sampleIndex: sample, position: 1)
            let gamma = 1.5 + (3 - 1.5) * Float(random.nextUnit()), gain = 0.4 + (1 - 0.4) * Float(random.nextUnit())
            XCTAssertEqual(try corrupted("noise:0,dark:1.5..3:0.4..1", image, height: h, width: w, channels: c, epoch: 2, sampleIndex: sample),
                           try corrupted("dark:\(gamma):\(gain)", image, height: h, width: w, channels: c, epoch: 2, sampleIndex: sample),
                           "dark sample \(sample)")
        }
        let fixed = try corrupted("noise:0.1,mask:0.3,blur:1", image, height: h, width: w, channels: c, sampleIndex: 5)
        XCTAssertEqual(try corrupted("noise:0.1..0.1,mask:0.3..0.3,blur:1..1", image, height: h, width: w, channels: c, sampleIndex: 5), fixed)

        // Noise on mid-grey 64x64x3: each image's std is its own draw.
        let (gh, gw) = (64, 64)
        let grey = [Float](repeating: 0, count: gh * gw * c)
        var measured: [Double] = []
        for sample in 0..<40 {
            var random = CorruptionPipeline.randomStream(seed: 7, epoch: 0, sampleIndex: sample, position: 0)
            let sigma = 0.02 + 0.18 * random.nextUnit()
            let noisy = try corrupted("noise:0.02..0.2", grey, height: gh, width: gw, channels: c, sampleIndex: sample)
            let std = meanAndStandardDeviation(noisy.map(Double.init)).std
            XCTAssertEqual(std, sigma, accuracy: 0.05 * sigma + 1e-3, "sample \(sample)")
            measured.append(std)
        }
        print("noise:0.02..0.2 over 40 images: std from \(measured.min()!) to \(measured.max()!)")
        XCTAssertLessThan(measured.min()!, 0.06)
        XCTAssertGreaterThan(measured.max()!, 0.16)
        XCTAssertTrue(measured.allSatisfy { $0 > 0.018 && $0 < 0.21 })

        // Masks of 0.05..0.5 of the image: the covered area follows each image's draw.
        var areas: [Double] = []
        for sample in 0..<30 {
            let masked = try corrupted("mask:0.05..0.5:1", grey, height: gh, width: gw, channels: c, sampleIndex: sample)
            areas.append(Double(masked.filter { $0 == 0.5 }.count) / Double(gh * gw * c))
        }
        XCTAssertLessThan(areas.min()!, 0.15)
        XCTAssertGreaterThan(areas.max()!, 0.4)
        XCTAssertTrue(areas.allSatisfy { $0 > 0.03 && $0 < 0.55 }, "\(areas)")

        let spec = "noise:0.02..0.2,blur:0..1.5,mask:0.1..0.3"
        let reference = try corrupted(spec, image, height: h, width: w, channels: c, sampleIndex: 9)
        XCTAssertEqual(try corrupted(spec, image, height: h, width: w, channels: c, sampleIndex: 9), reference)
        XCTAssertNotEqual(try corrupted(spec, image, height: h, width: w, channels: c, sampleIndex: 10), reference)
    }

    /// `LOW~HIGH`: log-uniform draws (the blur equals the fixed spec at `LOW * (HIGH/LOW)^u` bit for
    /// bit), half of the noise sigmas below the geometric mean, the canonical form round-trips,
    /// and a range that does not start above 0 is one clear line.
    func testLogarithmicRangesDrawEveryOctaveEquallyOften() throws {
        let pipeline = try CorruptionPipeline(spec: "noise:0.02~0.2, blur: 0.5 ~ 2, dark:1.5~3:0.4..1, noise:0.1~0.1")
        XCTAssertEqual(pipeline.corruptions, [
            .noise(sigma: ValueRange(0.02, 0.2, logarithmic: true)), .blur(sigma: ValueRange(0.5, 2, logarithmic: true)),
            .darken(gamma: ValueRange(1.5, 3, logarithmic: true), gain: ValueRange(0.4, 1)), .noise(sigma: 0.1),
        ])
        XCTAssertEqual(pipeline.description, "noise:0.02~0.2,blur:0.5~2,dark:1.5~3:0.4..1,noise:0.1")
        XCTAssertEqual(try CorruptionPipeline(spec: pipeline.description), pipeline)
        XCTAssertNotEqual(ValueRange(0.02, 0.2, logarithmic: true), ValueRange(0.02, 0.2))
        XCTAssertTrue(pipeline.hasRanges)

        let (h, w, c) = (24, 20, 3)
        let image = randomFloats(h * w * c, seed: 3, low: -0.4, high: 0.4)
        for sample in [0, 17, 4096] {
            var random = CorruptionPipeline.randomStream(seed: 7, epoch: 2, sampleIndex: sample, position: 0)
            let sigma = Float(0.5 * exp(random.nextUnit() * log(2.0 / 0.5)))
            XCTAssertEqual(try corrupted("blur:0.5~2", image, height: h, width: w, channels: c, epoch: 2, sampleIndex: sample),
                           try corrupted("blur:\(sigma)", image, height: h, width: w, channels: c, epoch: 2, sampleIndex: sample),
                           "blur sample \(sample)")
        }
        var sigmas: [Double] = []
        for sample in 0..<2000 {
            var random = CorruptionPipeline.randomStream(seed: 7, epoch: 0, sampleIndex: sample, position: 0)
            sigmas.append(0.02 * exp(random.nextUnit() * log(10.0)))
        }
        let below = Double(sigmas.filter { $0 < 0.02 * 10.0.squareRoot() }.count) / Double(sigmas.count)
        XCTAssertEqual(below, 0.5, accuracy: 0.04)
        XCTAssertTrue(sigmas.allSatisfy { $0 >= 0.02 && $0 <= 0.2 })
        // Noise on mid-grey: each image's std is its own log-uniform draw.
        let grey = [Float](repeating: 0, count: 64 * 64 * c)
        for sample in 0..<10 {
            let noisy = try corrupted("noise:0.02~0.2", grey, height: 64, width: 64, channels: c, sampleIndex: sample)
            let std = meanAndStandardDeviation(noisy.map(Double.init)).std
            XCTAssertEqual(std, sigmas[sample], accuracy: 0.05 * sigmas[sample] + 1e-3, "sample \(sample)")
        }
        for (spec, message) in [("noise:0~0.2", "--corrupt noise logarithmic range 0~0.2 must start above 0, e.g. noise:0.02~0.2 (got 'noise:0~0.2')"),
                                ("noise:0.2~0.02", "--corrupt noise range 0.2~0.02 runs from high to low"),
                                ("blur:1~x", "--corrupt blur range needs two sigmas")] {
            XCTAssertThrowsError(try CorruptionPipeline(spec: spec), spec) { error in
                XCTAssertTrue("\(error)".contains(message), "\(error)")
                XCTAssertFalse("\(error)".contains("\n"))
            }
        }
    }

    /// `quantize:STEPS`: every value clipped and on the grid of `STEPS + 1` levels, rounded half to
    /// even as an 8-bit save rounds; the canonical form round-trips; bad counts are one line.
    func testQuantizeRoundsToTheGrid() throws {
        let pipeline = try CorruptionPipeline(spec: "blur:1, quantize:255")
        XCTAssertEqual(pipeline.corruptions.last, .quantize(steps: 255))
        XCTAssertEqual(pipeline.description, "blur:1,quantize:255")
        XCTAssertFalse(pipeline.hasRanges)
        let (h, w, c) = (8, 8, 3)
        let image = randomFloats(h * w * c, seed: 5, low: -0.7, high: 0.7)
        let rounded = try corrupted("quantize:255", image, height: h, width: w, channels: c)
        for (before, after) in zip(image, rounded) {
            let p = min(max(before + 0.5, 0), 1)
            XCTAssertEqual(after, (p * 255).rounded(.toNearestOrEven) / 255 - 0.5)
            XCTAssertEqual(((after + 0.5) * 255).rounded(), (after + 0.5) * 255, accuracy: 1e-3)
        }
        XCTAssertEqual(try corrupted("quantize:1", [-0.3, 0.01, 0.4], height: 1, width: 1, channels: 3), [-0.5, 0.5, 0.5])
        for spec in ["quantize", "quantize:0", "quantize:70000", "quantize:2.5", "quantize:255:1"] {
            XCTAssertThrowsError(try CorruptionPipeline(spec: spec), spec) {
                XCTAssertTrue("\($0)".contains("--corrupt quantize needs a number of steps from 1 to 65535, e.g. quantize:255 (8-bit)"), "\($0)")
            }
        }
    }

    /// `holes:COUNT[:fill]`: parsing and round trip; per image 1 to COUNT strokes and boxes whose
    /// covered share varies widely from image to image, which change exactly the marked pixels
    /// (all channels) to the fill and nothing else; the same key gives the same holes.
    func testHolesAreStrokesAndBoxesOfManySizes() throws {
        let pipeline = try CorruptionPipeline(spec: "holes:4, HOLES:1:noise, holes:8:0.5, holes:64:0")
        XCTAssertEqual(pipeline.corruptions, [.holes(count: 4, fill: .value(0)), .holes(count: 1, fill: .noise),
                                              .holes(count: 8, fill: .value(0.5)), .holes(count: 64, fill: .value(0))])
        XCTAssertEqual(pipeline.description, "holes:4,holes:1:noise,holes:8:0.5,holes:64")
        XCTAssertEqual(try CorruptionPipeline(spec: pipeline.description), pipeline)

        let (h, w, c) = (48, 40, 3)
        let image = randomFloats(h * w * c, seed: 5, low: -0.45, high: 0.45)  // never exactly the fill
        var shares: [Double] = []
        for sample in 0..<60 {
            let damaged = try corrupted("holes:6:1", image, height: h, width: w, channels: c, sampleIndex: sample)
            var holes = 0
            for pixel in 0..<(h * w) {
                let changed = (0..<c).map { damaged[pixel * c + $0] != image[pixel * c + $0] }
                XCTAssertTrue(changed.allSatisfy { $0 } || changed.allSatisfy { !$0 }, "sample \(sample) pixel \(pixel): some channels only")
                if changed[0] {
                    holes += 1
                    XCTAssertTrue((0..<c).allSatisfy { damaged[pixel * c + $0] == 0.5 }, "a hole holds the fill")
                }
            }
            shares.append(Double(holes) / Double(h * w))
            // The marks of the same key are the holes found.
            var random = CorruptionPipeline.randomStream(seed: 7, epoch: 0, sampleIndex: sample, position: 0)
            let marks = FloatBuffer(count: h * w)
            CorruptionPipeline.markHoles(marks.pointer, height: h, width: w, most: 6, random: &random)
            XCTAssertEqual(marks.array.filter { $0 != 0 }.count, holes, "sample \(sample)")
        }
        print("holes:6 on 48x40: covered share from \(shares.min()!) to \(shares.max()!), mean \(shares.reduce(0, +) / Double(shares.count))")
        XCTAssertGreaterThan(shares.min()!, 0, "every image has a hole")
        XCTAssertLessThan(shares.min()!, 0.02, "some images have only small holes")
        XCTAssertGreaterThan(shares.max()!, 0.3, "some images lose a large part")
        XCTAssertLessThan(shares.max()!, 1)

        let noisy = try corrupted("holes:3:noise", image, height: h, width: w, channels: c, sampleIndex: 3)
        XCTAssertEqual(try corrupted("holes:3:noise", image, height: h, width: w, channels: c, sampleIndex: 3), noisy)
        XCTAssertNotEqual(try corrupted("holes:3:noise", image, height: h, width: w, channels: c, sampleIndex: 4), noisy)
        XCTAssertTrue(noisy.allSatisfy { $0 >= -0.5 && $0 < 0.5 })
        // One-pixel images still work.
        XCTAssertEqual(try corrupted("holes:2:1", [0.1], height: 1, width: 1, channels: 1), [0.5])
    }

    /// `holes:COUNT:FILL:SCALE`: parsing and round trip (scale 1 is the default and is left out);
    /// scale 1 marks exactly what no scale marks; another scale takes the same draws (the stream
    /// goes on identically) and marks larger holes: on 64x64 images, scale 2 covers a larger share
    /// on average, with wider strokes and boxes up to the whole side.
    func testHolesScaleMultipliesTheirSizes() throws {
        let pipeline = try CorruptionPipeline(spec: "holes:8:0:2, holes:4:noise:1.5, holes:3:0.5:1, holes:2:0:0.5")
        XCTAssertEqual(pipeline.corruptions, [.holes(count: 8, fill: .value(0), scale: 2), .holes(count: 4, fill: .noise, scale: 1.5),
                                              .holes(count: 3, fill: .value(0.5)), .holes(count: 2, fill: .value(0), scale: 0.5)])
        XCTAssertEqual(pipeline.description, "holes:8:0:2,holes:4:noise:1.5,holes:3:0.5,holes:2:0:0.5")
        XCTAssertEqual(try CorruptionPipeline(spec: pipeline.description), pipeline)
        XCTAssertEqual(try CorruptionPipeline(spec: "holes:8:0:1").description, "holes:8")

        let (h, w) = (64, 64)
        let marks = FloatBuffer(count: h * w), scaled = FloatBuffer(count: h * w)
        var shares: [Double] = [], scaledShares: [Double] = []
        for sample in 0..<200 {
            var plain = CorruptionPipeline.randomStream(seed: 3, epoch: 1, sampleIndex: sample, position: 0)
            CorruptionPipeline.markHoles(marks.pointer, height: h, width: w, most: 4, random: &plain)
            var one = CorruptionPipeline.randomStream(seed: 3, epoch: 1, sampleIndex: sample, position: 0)
            CorruptionPipeline.markHoles(scaled.pointer, height: h, width: w, most: 4, scale: 1, random: &one)
            XCTAssertEqual(scaled.array, marks.array, "sample \(sample): scale 1 is the default")
            XCTAssertEqual(one.next(), plain.next(), "sample \(sample)")
            var two = CorruptionPipeline.randomStream(seed: 3, epoch: 1, sampleIndex: sample, position: 0)
            CorruptionPipeline.markHoles(scaled.pointer, height: h, width: w, most: 4, scale: 2, random: &two)
            var again = CorruptionPipeline.randomStream(seed: 3, epoch: 1, sampleIndex: sample, position: 0)
            CorruptionPipeline.markHoles(marks.pointer, height: h, width: w, most: 4, random: &again)
            XCTAssertEqual(two.next(), again.next(), "sample \(sample): the same draws at scale 2")
            shares.append(Double(marks.array.filter { $0 != 0 }.count) / Double(h * w))
            scaledShares.append(Double(scaled.array.filter { $0 != 0 }.count) / Double(h * w))
        }
        let mean = shares.reduce(0, +) / 200, scaledMean = scaledShares.reduce(0, +) / 200
        print("holes:4 on 64x64: mean covered share \(mean) at scale 1, \(scaledMean) at scale 2")
        XCTAssertGreaterThan(scaledMean, 1.4 * mean)
        XCTAssertGreaterThan(scaledShares.max()!, 0.75)
        XCTAssertEqual(try corrupted("holes:2:1:8", [0.1], height: 1, width: 1, channels: 1), [0.5])
    }

    /// `noise,mask`: the rectangle is clean black. `mask,noise`: about half the rectangle's
    /// elements stay at 0 (negative noise clipped), the rest are noisy.
    /// `apply(missing:)` marks exactly the pixels `mask` and `holes` filled (here with a value no
    /// clean pixel has, so the filled pixels are known), nothing for the other items, and damages
    /// the image exactly as without it.
    func testMissingPixelsAreMarkedExactlyWhereMasksAndHolesFill() throws {
        let (height, width, channels) = (24, 20, 3)
        let clean = (0..<(height * width * channels)).map { Float($0 % 7) * 0.05 - 0.45 }
        for spec in ["holes:6:1", "mask:0.3:1", "noise:0.1", "holes:3:1,mask:0.1:1"] {
            let pipeline = try CorruptionPipeline(spec: spec)
            XCTAssertEqual(pipeline.onlyFillsMissingPixels, spec != "noise:0.1", spec)
            let image = makeBuffer(clean), marks = FloatBuffer(count: height * width)
            marks.pointer.update(repeating: 7, count: height * width)
            let scratch = FloatBuffer(count: CorruptionPipeline.scratchCount(height: height, width: width, channels: channels))
            pipeline.apply(to: image.pointer, height: height, width: width, channels: channels, seed: 3, epoch: 1, sampleIndex: 9,
                           scratch: scratch.pointer, missing: marks.pointer)
            XCTAssertEqual(image.array, try corrupted(spec, clean, height: height, width: width, channels: channels, seed: 3, epoch: 1, sampleIndex: 9),
                           "\(spec): the marks change nothing else")
            let filled = (0..<(height * width)).map { p in (0..<channels).allSatisfy { image[p * channels + $0] == 0.5 } }
            let marked = marks.array.map { $0 == 1 }
            XCTAssertTrue(marks.array.allSatisfy { $0 == 0 || $0 == 1 }, "\(spec): marks are 0 or 1")
            XCTAssertEqual(marked, spec == "noise:0.1" ? [Bool](repeating: false, count: height * width) : filled, "\(spec): marked = filled")
            if spec != "noise:0.1" { XCTAssertTrue(marked.contains(true), "\(spec): something is missing") }
        }
        XCTAssertFalse(try CorruptionPipeline(spec: "").onlyFillsMissingPixels)
        XCTAssertFalse(try CorruptionPipeline(spec: "holes:4,noise:0.1").onlyFillsMissingPixels)
    }

    /// What `restore --noise-consistency` asks of a spec: noise and rounding alone, and the noise's
    /// sigma when it is one fixed value.
    func testNoiseAloneAndItsFixedSigma() throws {
        let cases: [(String, Bool, Float?)] = [
            ("noise:0.1", true, 0.1), ("noise:0.2,quantize:255", true, 0.2), ("noise:0.02..0.2", true, nil),
            ("noise:0.1,noise:0.05", true, nil), ("noise:0", true, nil), ("quantize:255", false, nil), ("", false, nil),
            ("noise:0.1,mask:0.25", false, 0.1), ("blur:2", false, nil),
        ]
        for (spec, alone, sigma) in cases {
            let pipeline = try CorruptionPipeline(spec: spec)
            XCTAssertEqual(pipeline.addsNoiseAlone, alone, spec)
            XCTAssertEqual(pipeline.fixedNoiseSigma, sigma, spec)
        }
    }

    func testOrderOfCorruptionsMatters() throws {
        let (h, w, c) = (32, 32, 3)
        let grey = [Float](repeating: 0, count: h * w * c)
        let noiseThenMask = try corrupted("noise:0.1,mask:0.25", grey, height: h, width: w, channels: c)
        let maskThenNoise = try corrupted("mask:0.25,noise:0.1", grey, height: h, width: w, channels: c)
        XCTAssertNotEqual(noiseThenMask, maskThenNoise)

        // The rectangles each order draws: the mask is at position 1, then 0.
        func rectangle(position: Int) -> (top: Int, left: Int, height: Int, width: Int) {
            var random = CorruptionPipeline.randomStream(seed: 7, epoch: 0, sampleIndex: 0, position: position)
            return CorruptionPipeline.maskRectangle(imageHeight: h, imageWidth: w, area: 0.25, random: &random)
        }
        func inside(_ i: Int, _ box: (top: Int, left: Int, height: Int, width: Int)) -> Bool {
            let y = i / (w * c), x = (i / c) % w
            return y >= box.top && y < box.top + box.height && x >= box.left && x < box.left + box.width
        }
        let first = rectangle(position: 1), second = rectangle(position: 0)
        let blackFirst = noiseThenMask.indices.filter { noiseThenMask[$0] == -0.5 }
        XCTAssertEqual(blackFirst.count, first.height * first.width * c)
        XCTAssertTrue(blackFirst.allSatisfy { inside($0, first) })

        let insideSecond = maskThenNoise.indices.filter { inside($0, second) }
        let blackSecond = insideSecond.filter { maskThenNoise[$0] == -0.5 }.count
        let share = Double(blackSecond) / Double(insideSecond.count)
        print(String(format: "noise,mask: %d black elements (rectangle %dx%d); mask,noise: %.3f of the rectangle's %d elements still black",
                     blackFirst.count, first.height, first.width, share, insideSecond.count))
        XCTAssertEqual(share, 0.5, accuracy: 0.1)
        XCTAssertTrue(maskThenNoise.indices.filter { !inside($0, second) }.allSatisfy { maskThenNoise[$0] != -0.5 })
    }

    /// Time per 32x32x3 image of each corruption and of a full pipeline (printed, not asserted).
    func testThroughputOfAFullPipeline() throws {
        let (h, w, c) = (32, 32, 3)
        let image = makeBuffer(randomFloats(h * w * c, seed: 9, low: -0.5, high: 0.5))
        let scratch = FloatBuffer(count: CorruptionPipeline.scratchCount(height: h, width: w, channels: c))
        let full = "noise:0.1,sp:0.02,mask:0.25:noise,blur:1,dark:2.2:0.6"
        for spec in ["noise:0.1", "sp:0.02", "mask:0.25:noise", "blur:1", "dark:2.2:0.6", full] {
            let pipeline = try CorruptionPipeline(spec: spec)
            let count = 1000
            let start = DispatchTime.now().uptimeNanoseconds
            for sample in 0..<count {
                pipeline.apply(to: image.pointer, height: h, width: w, channels: c, seed: 1, epoch: 0, sampleIndex: sample, scratch: scratch.pointer)
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            print(String(format: "%@ on 32x32x3: %.1f us per image (%.0f images/s)", pipeline.description, 1e6 * seconds / Double(count), Double(count) / seconds))
        }
        XCTAssertTrue(image.array.allSatisfy { $0.isFinite && $0 >= -0.5 && $0 <= 0.5 })
    }
}
