import Foundation
import XCTest
import Model
import TestSupport

/// MSE, PSNR and SSIM against scikit-image's values in Fixtures/image_metrics.json
/// (written by scripts/make_metric_fixture.py).
final class ImageMetricsTests: XCTestCase {
    struct Case: Decodable {
        let name: String
        let height: Int
        let width: Int
        let channels: Int
        let image: String
        let reference: String
        let mse: Double
        let psnr: Double?
        let ssim: Double

        var imagePixels: [UInt8] { [UInt8](Data(base64Encoded: image) ?? Data()) }
        var referencePixels: [UInt8] { [UInt8](Data(base64Encoded: reference) ?? Data()) }
        var imageFloats: [Float] { imagePixels.map { Float($0) / 255 } }
        var referenceFloats: [Float] { referencePixels.map { Float($0) / 255 } }
        var expectedPSNR: Double { psnr ?? .infinity }
    }

    struct Fixture: Decodable {
        let cases: [Case]
    }

    static func loadFixture(file: StaticString = #filePath, line: UInt = #line) throws -> [Case] {
        let url = URL(fileURLWithPath: "\(#filePath)").deletingLastPathComponent()
            .appendingPathComponent("Fixtures/image_metrics.json")
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        XCTAssertEqual(fixture.cases.count, 14, "cases in \(url.path)", file: file, line: line)
        for c in fixture.cases {
            XCTAssertEqual(c.imagePixels.count, c.height * c.width * c.channels, c.name, file: file, line: line)
            XCTAssertEqual(c.referencePixels.count, c.height * c.width * c.channels, c.name, file: file, line: line)
        }
        return fixture.cases
    }

    func testWindowMatchesScipy() {
        XCTAssertEqual(ImageMetrics.ssimRadius, 5)
        XCTAssertEqual(ImageMetrics.ssimWindow, 11)
        XCTAssertEqual(ImageMetrics.ssimWeights.count, 11)
        XCTAssertEqual(ImageMetrics.ssimWeights.reduce(0, +), 1, accuracy: 1e-15)
        // scipy.ndimage._filters._gaussian_kernel1d(1.5, 0, 5)
        XCTAssertEqual(ImageMetrics.ssimWeights[5], 0.26601172486179436, accuracy: 1e-15)
        XCTAssertEqual(ImageMetrics.ssimWeights[0], 0.00102838008447911, accuracy: 1e-15)
    }

    func testAgainstScikitImage() throws {
        let cases = try Self.loadFixture()
        var actual: [Double] = [], expected: [Double] = []
        for c in cases {
            let quality = try ImageMetrics.quality(c.imageFloats, c.referenceFloats,
                                                   height: c.height, width: c.width, channels: c.channels)
            print(String(format: "[%@] mse %.8g (skimage %.8g)  psnr %.8g (%.8g)  ssim %.8f (%.8f)", c.name,
                         quality.meanSquaredError, c.mse, quality.peakSignalToNoiseRatio, c.expectedPSNR,
                         quality.structuralSimilarity, c.ssim))
            XCTAssertEqual(quality.meanSquaredError, c.mse, accuracy: 1e-7 * max(c.mse, 1e-3), "\(c.name) MSE")
            if c.psnr == nil {
                XCTAssertEqual(quality.peakSignalToNoiseRatio, .infinity, "\(c.name): identical images")
            } else {
                XCTAssertEqual(quality.peakSignalToNoiseRatio, c.expectedPSNR, accuracy: 1e-5, "\(c.name) PSNR")
            }
            XCTAssertEqual(quality.structuralSimilarity, c.ssim, accuracy: 1e-6, "\(c.name) SSIM")
            actual.append(quality.structuralSimilarity)
            expected.append(c.ssim)

            // Symmetric in its arguments.
            let swapped = try ImageMetrics.quality(c.referenceFloats, c.imageFloats,
                                                   height: c.height, width: c.width, channels: c.channels)
            XCTAssertEqual(swapped.structuralSimilarity, quality.structuralSimilarity, accuracy: 1e-12, c.name)
            XCTAssertEqual(swapped.meanSquaredError, quality.meanSquaredError, c.name)
        }
        assertClose(actual, expected, tolerance: 1e-6, floor: 1, "SSIM vs scikit-image")
    }

    /// With `quantize`, values off the 8-bit grid and outside [0, 1] give the metrics of the
    /// 8-bit images they round to.
    func testQuantizedMetricsUseEightBitPixels() throws {
        let cases = try Self.loadFixture()
        for c in cases {
            func perturbed(_ pixels: [UInt8], seed: UInt64) -> [Float] {
                let jitter = randomFloats(pixels.count, seed: seed, low: -0.45 / 255, high: 0.45 / 255)
                return pixels.indices.map { i in
                    switch pixels[i] {
                    case 0: return i % 2 == 0 ? -0.3 : -jitter[i].magnitude
                    case 255: return i % 2 == 0 ? 1.7 : 1 + jitter[i].magnitude
                    default: return Float(pixels[i]) / 255 + jitter[i]
                    }
                }
            }
            let image = perturbed(c.imagePixels, seed: 1), reference = perturbed(c.referencePixels, seed: 2)
            XCTAssertEqual(image.map(ImageMetrics.quantized), c.imageFloats, c.name)
            let quantized = try ImageMetrics.quality(image, reference, height: c.height, width: c.width,
                                                     channels: c.channels, quantize: true)
            XCTAssertEqual(quantized.meanSquaredError, c.mse, accuracy: 1e-7 * max(c.mse, 1e-3), c.name)
            XCTAssertEqual(quantized.structuralSimilarity, c.ssim, accuracy: 1e-6, c.name)
            XCTAssertEqual(quantized.peakSignalToNoiseRatio, c.expectedPSNR, accuracy: c.psnr == nil ? 0 : 1e-5, c.name)
            let raw = try ImageMetrics.quality(image, reference, height: c.height, width: c.width, channels: c.channels)
            XCTAssertNotEqual(raw.meanSquaredError, c.mse, "\(c.name): the perturbation must matter unquantized")
        }
    }

    func testBatchesGivePerImageValues() throws {
        let cases = try Self.loadFixture().filter { $0.height == 32 && $0.width == 32 && $0.channels == 3 }
        XCTAssertEqual(cases.count, 3)
        let images = cases.flatMap(\.imageFloats), references = cases.flatMap(\.referenceFloats)
        let qualities = try ImageMetrics.qualities(images, references, count: cases.count, height: 32, width: 32, channels: 3)
        try images.withUnsafeBufferPointer { a in
            try references.withUnsafeBufferPointer { b in
                let mse = try ImageMetrics.meanSquaredErrors(a, b, count: cases.count, height: 32, width: 32, channels: 3)
                let psnr = try ImageMetrics.peakSignalToNoiseRatios(a, b, count: cases.count, height: 32, width: 32, channels: 3)
                let ssim = try ImageMetrics.structuralSimilarities(a, b, count: cases.count, height: 32, width: 32, channels: 3)
                XCTAssertEqual(mse, qualities.map(\.meanSquaredError))
                XCTAssertEqual(psnr, qualities.map(\.peakSignalToNoiseRatio))
                XCTAssertEqual(ssim, qualities.map(\.structuralSimilarity))
                XCTAssertThrowsError(try ImageMetrics.meanSquaredErrors(a, b, count: 2, height: 32, width: 32, channels: 3),
                                     "buffers of 3 images given as 2")
            }
        }
        for (quality, c) in zip(qualities, cases) {
            XCTAssertEqual(quality.meanSquaredError, c.mse, accuracy: 1e-7 * max(c.mse, 1e-3), c.name)
            XCTAssertEqual(quality.peakSignalToNoiseRatio, c.expectedPSNR, accuracy: 1e-5, c.name)
            XCTAssertEqual(quality.structuralSimilarity, c.ssim, accuracy: 1e-6, c.name)
        }
    }

    func testEdgeCasesAndErrors() throws {
        // Identical images: MSE 0, PSNR +infinity, SSIM 1.
        let image = randomFloats(12 * 13 * 3, seed: 5, low: 0, high: 1)
        let same = try ImageMetrics.quality(image, image, height: 12, width: 13, channels: 3)
        XCTAssertEqual(same.meanSquaredError, 0)
        XCTAssertEqual(same.peakSignalToNoiseRatio, .infinity)
        XCTAssertEqual(same.structuralSimilarity, 1, accuracy: 1e-12)
        XCTAssertEqual(ImageMetrics.peakSignalToNoiseRatio(meanSquaredError: 0.01), 20, accuracy: 1e-12)
        XCTAssertEqual(ImageMetrics.peakSignalToNoiseRatio(meanSquaredError: 1), 0)

        // Smaller than the 11x11 window, mismatched sizes, empty images: ModelError.
        let small = [Float](repeating: 0.5, count: 10 * 20)
        XCTAssertThrowsError(try ImageMetrics.quality(small, small, height: 10, width: 20, channels: 1)) { error in
            XCTAssertTrue(error is ModelError)
            XCTAssertTrue("\(error)".contains("11x11"), "\(error)")
        }
        XCTAssertNoThrow(try small.withUnsafeBufferPointer { try ImageMetrics.meanSquaredError($0, $0) },
                         "MSE has no size limit")
        XCTAssertThrowsError(try ImageMetrics.quality(image, Array(image.dropLast()), height: 12, width: 13, channels: 3))
        XCTAssertThrowsError(try ImageMetrics.quality(image, image, height: 12, width: 12, channels: 3))
        XCTAssertThrowsError(try ImageMetrics.quality([], [], height: 0, width: 0, channels: 1))
        XCTAssertThrowsError(try ImageMetrics.qualities(image, image, count: 2, height: 12, width: 13, channels: 3))
        let empty: [Float] = []
        try empty.withUnsafeBufferPointer { e in
            XCTAssertThrowsError(try ImageMetrics.meanSquaredError(e, e))
        }

        // NaN is not hidden.
        var broken = image
        broken[7] = .nan
        let nan = try ImageMetrics.quality(broken, image, height: 12, width: 13, channels: 3, quantize: true)
        XCTAssertTrue(nan.meanSquaredError.isNaN && nan.structuralSimilarity.isNaN)
    }
}
