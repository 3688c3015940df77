import CJPEGShim
import Foundation
import Model

/// JPEG files through libjpeg (libjpeg-turbo), read into and written from the 8-bit `PNGImage`.
///
/// Reading gives 1 channel for a grayscale file and 3 (RGB) for every colour file: YCbCr and RGB
/// as decoded, CMYK and YCCK converted to RGB (Adobe's inverted CMYK taken as such). A JPEG has no
/// alpha. Damaged files are errors, never a crash or an exit: a file that is not a JPEG, a broken
/// header, and entropy-coded data that libjpeg finds corrupt or truncated (it would otherwise fill
/// the rest of the image with gray and only warn). The EXIF orientation tag is not applied: pixels
/// come as stored, as Pillow's `Image.open` gives them.
public enum JPEGImage {
    /// Reads the JPEG at `path`. Throws a `DataError` naming `path` when the file is missing, is
    /// not a JPEG, is damaged or truncated, or is too large for this machine's memory.
    public static func read(path: String) throws -> PNGImage {
        var message = [CChar](repeating: 0, count: 256)
        guard let reader = CJPEG_open(path, &message, message.count) else {
            throw DataError("\(path): cannot read JPEG: \(text(message))")
        }
        defer { CJPEG_close(reader) }
        let width = Int(CJPEG_width(reader)), height = Int(CJPEG_height(reader)), channels = Int(CJPEG_channels(reader))
        // Refuse a header that claims more than this machine can hold before allocating.
        let (count, overflow) = (width * height).multipliedReportingOverflow(by: channels)
        guard width >= 1, height >= 1, !overflow, count <= physicalMemoryBytes / 2 else {
            throw DataError("\(path): the JPEG header claims \(width)x\(height) pixels, more than this machine's memory can hold")
        }
        var pixels = [UInt8](repeating: 0, count: count)
        let ok = pixels.withUnsafeMutableBufferPointer { CJPEG_decode(reader, $0.baseAddress, $0.count, &message, message.count) }
        guard ok != 0 else {
            throw DataError("\(path): cannot read JPEG (damaged or truncated file?): \(text(message))")
        }
        return try PNGImage(height: height, width: width, channels: channels, pixels: pixels)
    }

    /// Writes `image` as a baseline JPEG of `quality` (1...100; colour at full resolution from 90 up,
    /// 4:2:0 below) at `path`, stored like every output
    /// file (`OutputFile.store`): an existing file is replaced only by a complete new one. An image
    /// with an alpha plane is refused (a JPEG cannot hold it). Throws a `DataError` naming `path`.
    public static func write(_ image: PNGImage, to path: String, quality: Int) throws {
        guard image.alpha == nil else {
            throw DataError("\(path): the image has transparency (alpha), which a JPEG file cannot hold; write a PNG instead")
        }
        guard (1...100).contains(quality) else { throw DataError("\(path): JPEG quality must be 1 to 100 (got \(quality))") }
        guard image.width <= 65500, image.height <= 65500 else {
            throw DataError("\(path): a \(image.height)x\(image.width) image is too large for a JPEG file (at most 65500 pixels a side)")
        }
        var message = [CChar](repeating: 0, count: 256)
        var output: UnsafeMutablePointer<UInt8>?
        var size = 0
        let ok = image.pixels.withUnsafeBufferPointer {
            CJPEG_encode($0.baseAddress, Int32(image.width), Int32(image.height), Int32(image.channels), Int32(quality),
                         &output, &size, &message, message.count)
        }
        guard ok != 0, let output else { throw DataError("\(path): cannot write JPEG: \(text(message))") }
        let bytes = [UInt8](UnsafeBufferPointer(start: output, count: size))
        CJPEG_free(output)
        try OutputFile.store(bytes, at: path)
    }

    private static func text(_ message: [CChar]) -> String {
        let text = String(cString: message).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "libjpeg reported no reason" : text
    }
}

/// The image file formats the commands read and write.
public enum ImageFormat: String, CaseIterable, Sendable {
    case png
    case jpeg

    /// The extension written for this format (without the dot).
    public var fileExtension: String { self == .png ? "png" : "jpg" }

    /// The format a file name's extension names: `.png`, or `.jpg`/`.jpeg` (any case); nil otherwise.
    public init?(path: String) {
        switch (path as NSString).pathExtension.lowercased() {
        case "png": self = .png
        case "jpg", "jpeg": self = .jpeg
        default: return nil
        }
    }

    /// Reads the PNG or JPEG file at `path`, told apart by their first bytes (so a misnamed file
    /// still reads), with PNG transparency kept in `alpha` (`PNGImage.AlphaRule.keep`). Throws a
    /// `DataError` naming `path`.
    public static func read(path: String) throws -> PNGImage {
        let start = FileHandle(forReadingAtPath: path).flatMap { handle -> [UInt8]? in
            defer { try? handle.close() }
            return (try? handle.read(upToCount: 3)).map { [UInt8]($0) }
        } ?? []
        let isPNG = start == [0x89, 0x50, 0x4E], isJPEG = start == [0xFF, 0xD8, 0xFF]
        return isJPEG || (!isPNG && ImageFormat(path: path) == .jpeg) ? try JPEGImage.read(path: path)
                                                                      : try PNGImage.read(path: path, alpha: .keep)
    }

    /// Writes `image` at `path` in this format (`quality` for JPEG, 1...100).
    public func write(_ image: PNGImage, to path: String, quality: Int = 95) throws {
        switch self {
        case .png: try image.write(to: path)
        case .jpeg: try JPEGImage.write(image, to: path, quality: quality)
        }
    }
}
