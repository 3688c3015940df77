#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The quality of one image against its reference (see `ImageMetrics`).
public struct ImageQuality: Equatable, Sendable {
    /// Mean squared error over every sample, pixels in [0, 1].
    public var meanSquaredError: Double
    /// `10 log10(1 / MSE)` dB; `+infinity` for identical images.
    public var peakSignalToNoiseRatio: Double
    /// Mean SSIM (Wang et al. 2004), averaged over channels; 1 for identical images.
    public var structuralSimilarity: Double

    public init(meanSquaredError: Double, peakSignalToNoiseRatio: Double, structuralSimilarity: Double) {
        self.meanSquaredError = meanSquaredError
        self.peakSignalToNoiseRatio = peakSignalToNoiseRatio
        self.structuralSimilarity = structuralSimilarity
    }
}

/// Full-reference image quality metrics on images `[H, W, C]` (rows, columns, interleaved
/// channels) with pixels in [0, 1] (data range 1), computed in `Double`, with the definitions of
/// scikit-image's `skimage.metrics`:
///
/// - **MSE** `mean((x - y)^2)` over all `H * W * C` samples (`mean_squared_error`).
/// - **PSNR** `10 log10(1 / MSE)` in dB (`peak_signal_noise_ratio(..., data_range=1)`). When MSE
///   is 0 (identical images) it is `+infinity`, as in scikit-image; an average over images that
///   must stay finite has to treat such images itself.
/// - **SSIM** the mean structural similarity of Wang et al. 2004 exactly as
///   `structural_similarity(x, y, data_range=1, gaussian_weights=True, sigma=1.5,
///   use_sample_covariance=False, channel_axis=-1)` computes it: local means, variances and
///   covariance under an 11-tap Gaussian window (sigma 1.5, radius `int(3.5 * 1.5 + 0.5) = 5`,
///   weights normalised to sum 1, applied separably),
///   `S = (2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2))` with
///   `C1 = (0.01)^2`, `C2 = (0.03)^2` and population (co)variances, averaged over the pixels at
///   least 5 pixels from every border (skimage crops `(win_size - 1) / 2` before the mean; those
///   pixels' windows lie inside the image, so no padding rule enters), then averaged over the
///   channels. Images must be at least 11x11 pixels (skimage refuses smaller ones too).
///
/// With `quantize`, both images are first clipped to [0, 1] and rounded to 8 bits,
/// `round(clip(x, 0, 1) * 255) / 255` (what a PNG of the image holds), as evaluation reports
/// metrics on displayable pixels. NaN samples give NaN metrics. MSE, PSNR and SSIM are symmetric
/// in their two arguments.
public enum ImageMetrics {
    /// Gaussian window of SSIM: standard deviation, radius and width in pixels.
    public static let ssimSigma = 1.5
    public static let ssimRadius = Int(3.5 * 1.5 + 0.5)
    public static var ssimWindow: Int { 2 * ssimRadius + 1 }
    public static let ssimK1 = 0.01
    public static let ssimK2 = 0.03

    /// The 1-D window: `exp(-k^2 / (2 sigma^2))` for `k = -5...5`, normalised to sum 1 (SciPy's
    /// `gaussian_filter` kernel).
    public static let ssimWeights: [Double] = {
        let raw = (-ssimRadius...ssimRadius).map { exp(-0.5 * Double($0 * $0) / (ssimSigma * ssimSigma)) }
        let total = raw.reduce(0, +)
        return raw.map { $0 / total }
    }()

    /// `round(clip(x, 0, 1) * 255) / 255`; NaN stays NaN.
    @inline(__always)
    public static func quantized(_ value: Float) -> Float {
        if value.isNaN { return value }
        return (min(max(value, 0), 1) * 255).rounded() / 255
    }

    // MARK: - One image

    /// MSE of `image` against `reference`, both `[H, W, C]` with the same number of samples.
    public static func meanSquaredError(_ image: UnsafeBufferPointer<Float>, _ reference: UnsafeBufferPointer<Float>,
                                        quantize: Bool = false) throws -> Double {
        guard image.count == reference.count, image.count > 0 else {
            throw ModelError("image metrics need two non-empty images of the same size (got \(image.count) and \(reference.count) values)")
        }
        var sum = 0.0
        if quantize {
            for i in 0..<image.count {
                let d = Double(quantized(image[i])) - Double(quantized(reference[i]))
                sum += d * d
            }
        } else {
            for i in 0..<image.count {
                let d = Double(image[i]) - Double(reference[i])
                sum += d * d
            }
        }
        return sum / Double(image.count)
    }

    /// PSNR in dB for data range 1: `10 log10(1 / mse)`; `+infinity` when `mse` is 0.
    public static func peakSignalToNoiseRatio(meanSquaredError mse: Double) -> Double {
        mse == 0 ? .infinity : 10 * log10(1 / mse)
    }

    /// PSNR in dB of `image` against `reference` (see the type's documentation).
    public static func peakSignalToNoiseRatio(_ image: UnsafeBufferPointer<Float>, _ reference: UnsafeBufferPointer<Float>,
                                              quantize: Bool = false) throws -> Double {
        peakSignalToNoiseRatio(meanSquaredError: try meanSquaredError(image, reference, quantize: quantize))
    }

    /// Mean SSIM of `image` against `reference`, both `[height, width, channels]`, averaged over
    /// channels. Throws a `ModelError` when the sizes disagree or the image is smaller than 11x11.
    public static func structuralSimilarity(_ image: UnsafeBufferPointer<Float>, _ reference: UnsafeBufferPointer<Float>,
                                            height: Int, width: Int, channels: Int, quantize: Bool = false) throws -> Double {
        try checkShape(image, reference, height: height, width: width, channels: channels, ssim: true)
        var workspace = SSIMWorkspace(height: height, width: width)
        var total = 0.0
        for c in 0..<channels {
            for p in 0..<(height * width) {
                let x = image[p * channels + c], y = reference[p * channels + c]
                workspace.x[p] = Double(quantize ? quantized(x) : x)
                workspace.y[p] = Double(quantize ? quantized(y) : y)
            }
            total += workspace.meanSSIM()
        }
        return total / Double(channels)
    }

    /// MSE, PSNR and SSIM of `image` against `reference`, both `[height, width, channels]`.
    public static func quality(_ image: UnsafeBufferPointer<Float>, _ reference: UnsafeBufferPointer<Float>,
                               height: Int, width: Int, channels: Int, quantize: Bool = false) throws -> ImageQuality {
        try checkShape(image, reference, height: height, width: width, channels: channels, ssim: true)
        let mse = try meanSquaredError(image, reference, quantize: quantize)
        let ssim = try structuralSimilarity(image, reference, height: height, width: width, channels: channels, quantize: quantize)
        return ImageQuality(meanSquaredError: mse, peakSignalToNoiseRatio: peakSignalToNoiseRatio(meanSquaredError: mse),
                            structuralSimilarity: ssim)
    }

    public static func quality(_ image: [Float], _ reference: [Float],
                               height: Int, width: Int, channels: Int, quantize: Bool = false) throws -> ImageQuality {
        try image.withUnsafeBufferPointer { a in
            try reference.withUnsafeBufferPointer { b in
                try quality(a, b, height: height, width: width, channels: channels, quantize: quantize)
            }
        }
    }

    // MARK: - Batches

    /// Per-image MSE of batches `[count, H, W, C]`.
    public static func meanSquaredErrors(_ images: UnsafeBufferPointer<Float>, _ references: UnsafeBufferPointer<Float>,
                                         count: Int, height: Int, width: Int, channels: Int,
                                         quantize: Bool = false) throws -> [Double] {
        try perImage(images, references, count: count, height: height, width: width, channels: channels, ssim: false) { a, b in
            try meanSquaredError(a, b, quantize: quantize)
        }
    }

    /// Per-image PSNR in dB of batches `[count, H, W, C]` (`+infinity` for an identical pair).
    public static func peakSignalToNoiseRatios(_ images: UnsafeBufferPointer<Float>, _ references: UnsafeBufferPointer<Float>,
                                               count: Int, height: Int, width: Int, channels: Int,
                                               quantize: Bool = false) throws -> [Double] {
        try meanSquaredErrors(images, references, count: count, height: height, width: width, channels: channels,
                              quantize: quantize).map { peakSignalToNoiseRatio(meanSquaredError: $0) }
    }

    /// Per-image mean SSIM of batches `[count, H, W, C]`.
    public static func structuralSimilarities(_ images: UnsafeBufferPointer<Float>, _ references: UnsafeBufferPointer<Float>,
                                              count: Int, height: Int, width: Int, channels: Int,
                                              quantize: Bool = false) throws -> [Double] {
        try perImage(images, references, count: count, height: height, width: width, channels: channels, ssim: true) { a, b in
            try structuralSimilarity(a, b, height: height, width: width, channels: channels, quantize: quantize)
        }
    }

    /// Per-image MSE, PSNR and SSIM of batches `[count, H, W, C]`.
    public static func qualities(_ images: UnsafeBufferPointer<Float>, _ references: UnsafeBufferPointer<Float>,
                                 count: Int, height: Int, width: Int, channels: Int,
                                 quantize: Bool = false) throws -> [ImageQuality] {
        try perImage(images, references, count: count, height: height, width: width, channels: channels, ssim: true) { a, b in
            try quality(a, b, height: height, width: width, channels: channels, quantize: quantize)
        }
    }

    public static func qualities(_ images: [Float], _ references: [Float], count: Int, height: Int, width: Int, channels: Int,
                                 quantize: Bool = false) throws -> [ImageQuality] {
        try images.withUnsafeBufferPointer { a in
            try references.withUnsafeBufferPointer { b in
                try qualities(a, b, count: count, height: height, width: width, channels: channels, quantize: quantize)
            }
        }
    }

    // MARK: - Checks and helpers

    private static func checkShape(_ image: UnsafeBufferPointer<Float>, _ reference: UnsafeBufferPointer<Float>,
                                   height: Int, width: Int, channels: Int, ssim: Bool, count: Int = 1) throws {
        guard height > 0, width > 0, channels > 0, count >= 0 else {
            throw ModelError("image metrics need positive sizes (got \(count) images of \(height)x\(width)x\(channels))")
        }
        let (pixels, o1) = height.multipliedReportingOverflow(by: width)
        let (samples, o2) = pixels.multipliedReportingOverflow(by: channels)
        let (total, o3) = samples.multipliedReportingOverflow(by: count)
        guard !o1, !o2, !o3, image.count == total, reference.count == total else {
            throw ModelError("image metrics: \(count) images of \(height)x\(width)x\(channels) need \(height)x\(width)x\(channels)x\(count) values each; got \(image.count) and \(reference.count)")
        }
        if ssim && (height < ssimWindow || width < ssimWindow) {
            throw ModelError("SSIM needs images of at least \(ssimWindow)x\(ssimWindow) pixels (its Gaussian window); got \(height)x\(width)")
        }
    }

    private static func perImage<T>(_ images: UnsafeBufferPointer<Float>, _ references: UnsafeBufferPointer<Float>,
                                    count: Int, height: Int, width: Int, channels: Int, ssim: Bool,
                                    _ body: (UnsafeBufferPointer<Float>, UnsafeBufferPointer<Float>) throws -> T) throws -> [T] {
        try checkShape(images, references, height: height, width: width, channels: channels, ssim: ssim, count: count)
        let size = height * width * channels
        return try (0..<count).map { n in
            try body(UnsafeBufferPointer(rebasing: images[(n * size)..<((n + 1) * size)]),
                     UnsafeBufferPointer(rebasing: references[(n * size)..<((n + 1) * size)]))
        }
    }
}

/// One channel's SSIM: planes `x`, `y` `[H, W]` and the vertically filtered maps.
private struct SSIMWorkspace {
    let height: Int, width: Int
    var x: [Double], y: [Double]
    /// Vertically filtered `x, y, x*x, y*y, x*y` at the rows `r..<H-r`, every column:
    /// `[5, H - 2r, W]`.
    var columns: [Double]

    init(height: Int, width: Int) {
        self.height = height
        self.width = width
        x = [Double](repeating: 0, count: height * width)
        y = x
        columns = [Double](repeating: 0, count: 5 * (height - 2 * ImageMetrics.ssimRadius) * width)
    }

    /// The mean of the SSIM map over the pixels at least `r` from every border.
    mutating func meanSSIM() -> Double {
        let r = ImageMetrics.ssimRadius, weights = ImageMetrics.ssimWeights
        let rows = height - 2 * r, plane = rows * width
        let c1 = ImageMetrics.ssimK1 * ImageMetrics.ssimK1, c2 = ImageMetrics.ssimK2 * ImageMetrics.ssimK2
        x.withUnsafeBufferPointer { x in
            y.withUnsafeBufferPointer { y in
                columns.withUnsafeMutableBufferPointer { out in
                    for i in 0..<rows {
                        for j in 0..<width {
                            var sx = 0.0, sy = 0.0, sxx = 0.0, syy = 0.0, sxy = 0.0
                            for k in 0..<weights.count {
                                let p = (i + k) * width + j  // row (i + r) + (k - r) of the image
                                let a = x[p], b = y[p], w = weights[k]
                                sx += w * a; sy += w * b
                                sxx += w * (a * a); syy += w * (b * b); sxy += w * (a * b)
                            }
                            let q = i * width + j
                            out[q] = sx; out[plane + q] = sy
                            out[2 * plane + q] = sxx; out[3 * plane + q] = syy; out[4 * plane + q] = sxy
                        }
                    }
                }
            }
        }
        var total = 0.0
        columns.withUnsafeBufferPointer { m in
            for i in 0..<rows {
                for j in r..<(width - r) {
                    var ux = 0.0, uy = 0.0, uxx = 0.0, uyy = 0.0, uxy = 0.0
                    for k in 0..<weights.count {
                        let q = i * width + j - r + k, w = weights[k]
                        ux += w * m[q]; uy += w * m[plane + q]
                        uxx += w * m[2 * plane + q]; uyy += w * m[3 * plane + q]; uxy += w * m[4 * plane + q]
                    }
                    let vx = uxx - ux * ux, vy = uyy - uy * uy, vxy = uxy - ux * uy
                    let numerator = (2 * ux * uy + c1) * (2 * vxy + c2)
                    let denominator = (ux * ux + uy * uy + c1) * (vx + vy + c2)
                    total += numerator / denominator
                }
            }
        }
        return total / Double(rows * (width - 2 * r))
    }
}
