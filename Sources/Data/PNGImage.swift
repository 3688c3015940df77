import CPNG
import Foundation
import Model

/// An 8-bit image `[H, W, C]`: rows top to bottom, pixels left to right, channels interleaved;
/// `C = 1` (gray) or `C = 3` (RGB). Read from and written to PNG files through libpng.
///
/// Reading accepts every PNG: gray, gray+alpha, RGB, RGBA and palette images, at 1, 2, 4, 8 or
/// 16 bits per sample, interlaced or not. The rules, which match how `scripts/prepare_data.py`
/// (Pillow's `convert`) turns images into training data:
///
/// - **Channels.** Gray and gray+alpha files give `C = 1`; RGB, RGBA and palette files give `C = 3`,
///   unless `channels` asks otherwise: a gray image asked for 3 channels repeats its value, a colour
///   image asked for 1 channel becomes ITU-R 601-2 luma, `L = (19595 R + 38470 G + 7471 B + 32768) >> 16`
///   (Pillow's `convert("L")`).
/// - **Alpha** (an alpha channel, or a palette's or colour key's transparency) is dropped by
///   default (`AlphaRule.ignore`): the stored colour is kept whatever its opacity, as Pillow's
///   `convert("RGB")` does. `AlphaRule.composite(background:)` blends onto a gray level instead.
/// - **Bit depth.** 1, 2 and 4-bit samples are scaled to 0...255 (`v * 255 / (2^bits - 1)`);
///   16-bit samples to `round(v * 255 / 65535)`. Samples are taken as sRGB-encoded, also in a
///   file with a gAMA chunk of 1/2.2; libpng re-encodes to sRGB only a file whose gAMA declares a
///   clearly different gamma (e.g. 1.0, linear light), which Pillow would read unchanged.
public struct PNGImage: Equatable, Sendable {
    public let height: Int
    public let width: Int
    /// 1 (gray) or 3 (RGB).
    public let channels: Int
    /// `[H, W, C]`, `height * width * channels` samples.
    public var pixels: [UInt8]

    /// What reading does with transparency.
    public enum AlphaRule: Equatable, Sendable {
        /// Keep the stored colour of every pixel and drop the alpha (Pillow's `convert("RGB")`).
        case ignore
        /// `round((c * a + background * (255 - a)) / 255)`: the colour as seen over a uniform
        /// `background` gray level (0 black, 255 white).
        case composite(background: UInt8)
    }

    /// An image of `pixels` `[H, W, C]`; throws unless `C` is 1 or 3, the sizes are positive and
    /// `pixels` holds exactly `height * width * channels` samples.
    public init(height: Int, width: Int, channels: Int, pixels: [UInt8]) throws {
        guard height > 0, width > 0 else { throw DataError("an image must be at least 1x1 (got \(height)x\(width))") }
        guard channels == 1 || channels == 3 else {
            throw DataError("an image has 1 (gray) or 3 (RGB) channels, not \(channels)")
        }
        let (count, overflow) = height.multipliedReportingOverflow(by: width)
        let (samples, overflow2) = count.multipliedReportingOverflow(by: channels)
        guard !overflow, !overflow2, samples == pixels.count else {
            throw DataError("a \(height)x\(width)x\(channels) image needs \(height)x\(width)x\(channels) samples, got \(pixels.count)")
        }
        self.height = height
        self.width = width
        self.channels = channels
        self.pixels = pixels
    }

    /// An image from floats `[H, W, C]` in [0, 1]: each value is clipped to [0, 1] and becomes
    /// `round(v * 255)` (NaN becomes 0).
    public init(unitFloats values: UnsafeBufferPointer<Float>, height: Int, width: Int, channels: Int) throws {
        try self.init(height: height, width: width, channels: channels,
                      pixels: values.map { PNGImage.quantize($0) })
    }

    /// An image from floats `[H, W, C]` in [0, 1]; see `init(unitFloats:height:width:channels:)`.
    public init(unitFloats values: [Float], height: Int, width: Int, channels: Int) throws {
        try self = values.withUnsafeBufferPointer {
            try PNGImage(unitFloats: $0, height: height, width: width, channels: channels)
        }
    }

    /// `round(clip(v, 0, 1) * 255)`; NaN gives 0.
    @inline(__always)
    public static func quantize(_ value: Float) -> UInt8 {
        guard value > 0 else { return 0 }
        guard value < 1 else { return 255 }
        return UInt8((value * 255).rounded())
    }

    /// The samples as floats `v / 255` in [0, 1], `[H, W, C]`.
    public var unitFloats: [Float] { pixels.map { Float($0) / 255 } }

    /// The same image with `channels` channels (1: ITU-R 601-2 luma of a colour image;
    /// 3: a gray value repeated). Returns `self` when the count already matches.
    public func converted(toChannels target: Int) throws -> PNGImage {
        guard target == 1 || target == 3 else { throw DataError("an image has 1 (gray) or 3 (RGB) channels, not \(target)") }
        if target == channels { return self }
        let count = height * width
        var out = [UInt8](repeating: 0, count: count * target)
        if target == 3 {
            for p in 0..<count { out[3 * p] = pixels[p]; out[3 * p + 1] = pixels[p]; out[3 * p + 2] = pixels[p] }
        } else {
            for p in 0..<count {
                out[p] = PNGImage.luma(pixels[3 * p], pixels[3 * p + 1], pixels[3 * p + 2])
            }
        }
        return try PNGImage(height: height, width: width, channels: target, pixels: out)
    }

    /// ITU-R 601-2 luma with Pillow's integer weights: `(19595 R + 38470 G + 7471 B + 32768) >> 16`.
    @inline(__always)
    static func luma(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> UInt8 {
        let red: UInt32 = UInt32(r) * 19595, green: UInt32 = UInt32(g) * 38470, blue: UInt32 = UInt32(b) * 7471
        return UInt8((red + green + blue + 0x8000) >> 16)
    }

    // MARK: - Files

    /// Reads the PNG at `path` (see the type's documentation for the conversion rules).
    /// `channels` (1 or 3) forces the channel count; `nil` keeps the file's (gray 1, colour 3).
    /// Throws a `DataError` naming `path` when the file is missing, is not a PNG, is damaged or
    /// truncated, or is too large for this machine's memory.
    public static func read(path: String, channels: Int? = nil, alpha: AlphaRule = .ignore) throws -> PNGImage {
        if let channels, channels != 1 && channels != 3 {
            throw DataError("\(path): images are read with 1 (gray) or 3 (RGB) channels, not \(channels)")
        }
        var image = png_image()
        guard CPNG_begin_read(&image, path) != 0 else {
            throw DataError("\(path): cannot read PNG: \(message(of: &image, fallback: "not a readable PNG file"))")
        }
        let width = Int(image.width), height = Int(image.height)
        let fileFormat = image.format
        let isColor = fileFormat & CPNG_FORMAT_FLAG_COLOR() != 0
        let hasAlpha = fileFormat & CPNG_FORMAT_FLAG_ALPHA() != 0
        let decodedChannels = (isColor ? 3 : 1) + (hasAlpha ? 1 : 0)
        let format: png_uint_32 = isColor ? (hasAlpha ? CPNG_FORMAT_RGBA() : CPNG_FORMAT_RGB())
                                          : (hasAlpha ? CPNG_FORMAT_GA() : CPNG_FORMAT_GRAY())

        // Refuse a header that claims more than this machine can hold before allocating.
        let (pixelCount, overflow1) = width.multipliedReportingOverflow(by: height)
        let (byteCount, overflow2) = pixelCount.multipliedReportingOverflow(by: decodedChannels * 2)
        let (rowStride, overflow3) = width.multipliedReportingOverflow(by: decodedChannels)
        if overflow1 || overflow2 || overflow3 || rowStride > Int(Int32.max) || byteCount > physicalMemoryBytes / 2 {
            png_image_free(&image)
            throw DataError("\(path): the PNG header claims \(width)x\(height) pixels, more than this machine's memory can hold")
        }

        var decoded = [UInt8](repeating: 0, count: pixelCount * decodedChannels)
        let ok = decoded.withUnsafeMutableBytes { bytes in
            CPNG_finish_read(&image, format, bytes.baseAddress, bytes.count, png_int_32(rowStride))
        }
        guard ok != 0 else {
            throw DataError("\(path): cannot read PNG (damaged or truncated file?): \(message(of: &image, fallback: "decoding failed"))")
        }

        let sourceChannels = isColor ? 3 : 1
        var pixels: [UInt8]
        if hasAlpha {
            pixels = [UInt8](repeating: 0, count: pixelCount * sourceChannels)
            switch alpha {
            case .ignore:
                for p in 0..<pixelCount {
                    for c in 0..<sourceChannels { pixels[p * sourceChannels + c] = decoded[p * decodedChannels + c] }
                }
            case .composite(let background):
                let b = UInt32(background)
                for p in 0..<pixelCount {
                    let a = UInt32(decoded[p * decodedChannels + sourceChannels])
                    for c in 0..<sourceChannels {
                        let v = UInt32(decoded[p * decodedChannels + c])
                        pixels[p * sourceChannels + c] = UInt8((v * a + b * (255 - a) + 127) / 255)
                    }
                }
            }
        } else {
            pixels = decoded
        }
        let result = try PNGImage(height: height, width: width, channels: sourceChannels, pixels: pixels)
        return try result.converted(toChannels: channels ?? sourceChannels)
    }

    /// Writes the image as an 8-bit gray (`C = 1`) or RGB (`C = 3`) PNG at `path`, replacing any
    /// file there. Throws a `DataError` naming `path` when it cannot be written.
    public func write(to path: String) throws {
        let rowStride = width * channels
        guard rowStride <= Int(Int32.max), width <= Int(UInt32.max), height <= Int(UInt32.max) else {
            throw DataError("\(path): a \(height)x\(width)x\(channels) image is too large for a PNG file")
        }
        var image = png_image()
        let format = channels == 1 ? CPNG_FORMAT_GRAY() : CPNG_FORMAT_RGB()
        let ok = pixels.withUnsafeBytes { bytes in
            CPNG_write(&image, path, png_uint_32(width), png_uint_32(height), format, bytes.baseAddress, png_int_32(rowStride))
        }
        guard ok != 0 else {
            throw DataError("\(path): cannot write PNG: \(PNGImage.message(of: &image, fallback: "libpng reported no reason"))")
        }
    }

    private static func message(of image: inout png_image, fallback: String) -> String {
        let text = String(cString: CPNG_message(&image)).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? fallback : text
    }
}
