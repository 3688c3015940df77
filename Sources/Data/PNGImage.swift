import CPNG
import Foundation
import Model

/// An 8-bit image `[H, W, C]`: rows top to bottom, pixels left to right, channels interleaved;
/// `C = 1` (gray) or `C = 3` (RGB), with an optional alpha plane `[H, W]`. Read from and written to
/// PNG files through libpng (and to JPEG files through `JPEGImage`).
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
///   `convert("RGB")` does. `AlphaRule.composite(background:)` blends onto a gray level instead;
///   `AlphaRule.keep` keeps the colour as stored and the opacity in `alpha`.
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
    /// Opacity `[H, W]` (0 transparent, 255 opaque), or nil for an opaque image. Only
    /// `AlphaRule.keep` reads it; `write(to:)` stores it (gray+alpha or RGBA).
    public var alpha: [UInt8]?

    /// What reading does with transparency.
    public enum AlphaRule: Equatable, Sendable {
        /// Keep the stored colour of every pixel and drop the alpha (Pillow's `convert("RGB")`).
        case ignore
        /// `round((c * a + background * (255 - a)) / 255)`: the colour as seen over a uniform
        /// `background` gray level (0 black, 255 white).
        case composite(background: UInt8)
        /// Keep the stored colour in `pixels` and the opacity in `alpha` (nil when the file has none).
        case keep
    }

    /// An image of `pixels` `[H, W, C]` and `alpha` `[H, W]`; throws unless `C` is 1 or 3, the sizes
    /// are positive, `pixels` holds exactly `height * width * channels` samples and `alpha`, when
    /// given, `height * width`.
    public init(height: Int, width: Int, channels: Int, pixels: [UInt8], alpha: [UInt8]? = nil) throws {
        guard height > 0, width > 0 else { throw DataError("an image must be at least 1x1 (got \(height)x\(width))") }
        guard channels == 1 || channels == 3 else {
            throw DataError("an image has 1 (gray) or 3 (RGB) channels, not \(channels)")
        }
        let (count, overflow) = height.multipliedReportingOverflow(by: width)
        let (samples, overflow2) = count.multipliedReportingOverflow(by: channels)
        guard !overflow, !overflow2, samples == pixels.count else {
            throw DataError("a \(height)x\(width)x\(channels) image needs \(height)x\(width)x\(channels) samples, got \(pixels.count)")
        }
        if let alpha, alpha.count != count {
            throw DataError("the alpha plane of a \(height)x\(width) image needs \(count) samples, got \(alpha.count)")
        }
        self.height = height
        self.width = width
        self.channels = channels
        self.pixels = pixels
        self.alpha = alpha
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
    /// 3: a gray value repeated), the alpha plane unchanged. Returns `self` when the count
    /// already matches.
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
        return try PNGImage(height: height, width: width, channels: target, pixels: out, alpha: alpha)
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
        var opacity: [UInt8]?
        if hasAlpha {
            pixels = [UInt8](repeating: 0, count: pixelCount * sourceChannels)
            switch alpha {
            case .keep:
                var plane = [UInt8](repeating: 0, count: pixelCount)
                for p in 0..<pixelCount {
                    for c in 0..<sourceChannels { pixels[p * sourceChannels + c] = decoded[p * decodedChannels + c] }
                    plane[p] = decoded[p * decodedChannels + sourceChannels]
                }
                opacity = plane
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
        let result = try PNGImage(height: height, width: width, channels: sourceChannels, pixels: pixels, alpha: opacity)
        return try result.converted(toChannels: channels ?? sourceChannels)
    }

    /// Writes the image as an 8-bit gray (`C = 1`) or RGB (`C = 3`) PNG at `path`, with its alpha
    /// plane when it has one (gray+alpha, RGBA). The file is stored like every output file
    /// (`OutputFile.store`): an existing file under `path` is replaced only by a complete new one.
    /// Throws a `DataError` naming `path` when it cannot be written.
    public func write(to path: String) throws {
        try OutputFile.store(try encoded(name: path), at: path)
    }

    /// The PNG file's bytes; `name` names it in errors.
    func encoded(name: String) throws -> [UInt8] {
        let planes = channels + (alpha == nil ? 0 : 1)
        let rowStride = width * planes
        guard rowStride <= Int(Int32.max), width <= Int(UInt32.max), height <= Int(UInt32.max) else {
            throw DataError("\(name): a \(height)x\(width)x\(planes) image is too large for a PNG file")
        }
        var interleaved = pixels
        if let alpha {
            interleaved = [UInt8](repeating: 0, count: height * width * planes)
            for p in 0..<(height * width) {
                for c in 0..<channels { interleaved[p * planes + c] = pixels[p * channels + c] }
                interleaved[p * planes + channels] = alpha[p]
            }
        }
        let format = alpha == nil ? (channels == 1 ? CPNG_FORMAT_GRAY() : CPNG_FORMAT_RGB())
                                  : (channels == 1 ? CPNG_FORMAT_GA() : CPNG_FORMAT_RGBA())
        var image = png_image()
        var memory: UnsafeMutableRawPointer?
        var size = 0
        let ok = interleaved.withUnsafeBytes { bytes in
            CPNG_write_to_memory(&image, png_uint_32(width), png_uint_32(height), format, bytes.baseAddress,
                                 png_int_32(rowStride), &memory, &size)
        }
        guard ok != 0, let memory else {
            throw DataError("\(name): cannot write PNG: \(PNGImage.message(of: &image, fallback: "libpng reported no reason"))")
        }
        defer { free(memory) }
        return [UInt8](UnsafeRawBufferPointer(start: memory, count: size))
    }

    private static func message(of image: inout png_image, fallback: String) -> String {
        let text = String(cString: CPNG_message(&image)).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? fallback : text
    }
}
