/// The `.vqz` image file (docs/codec.md): a fixed 38-byte header, the rANS stream of the image's
/// codes, and a CRC-32 of everything before it. All integers little-endian.
///
/// | offset | bytes | field |
/// | --- | --- | --- |
/// | 0 | 3 | magic `VQZ` |
/// | 3 | 1 | format version: 1, or 2 when positions code different numbers of codebooks |
/// | 4 | 8 | fingerprint of the VQ-VAE's weights |
/// | 12 | 8 | fingerprint of the prior's weights (0: no prior, every code equally likely) |
/// | 20 | 4 | image height in pixels |
/// | 24 | 4 | image width in pixels |
/// | 28 | 1 | channels (1 or 3) |
/// | 29 | 1 | the model's stride-2 layers (`down`) |
/// | 30 | 1 | codebooks coded, `Q` (version 2: the most any position codes) |
/// | 31 | 1 | codebooks of the model, `L` |
/// | 32 | 2 | codes per codebook, `K` |
/// | 34 | 4 | stream length in bytes, `n` |
/// | 38 | n | the rANS stream (`RANSEncoder`); version 2 starts it with the level map (`LevelMapModel`) |
/// | 38 + n | 4 | CRC-32 (IEEE 802.3, as zlib's) of bytes `0 ..< 38 + n` |
public struct VQZFile: Equatable, Sendable {
    public static let magic: [UInt8] = [0x56, 0x51, 0x5A]  // "VQZ"
    /// The newest version this build writes and reads (it reads every older one).
    public static let version: UInt8 = 2
    public static let headerBytes = 38
    /// Header and checksum: what a file adds to its stream.
    public static let overheadBytes = headerBytes + 4
    /// The largest side a file may declare.
    public static let largestSide = 1 << 16

    public var modelFingerprint: UInt64
    public var priorFingerprint: UInt64
    public var height: Int
    public var width: Int
    public var channels: Int
    public var downsamplings: Int
    public var levels: Int
    public var modelLevels: Int
    public var codes: Int
    /// Version 2: each position codes its own number of codebooks, `1...levels`, given by the level
    /// map at the front of the stream. Version 1: every position codes `levels`.
    public var perPositionLevels: Bool
    public var stream: [UInt8]

    public init(modelFingerprint: UInt64, priorFingerprint: UInt64, height: Int, width: Int, channels: Int, downsamplings: Int,
                levels: Int, modelLevels: Int, codes: Int, perPositionLevels: Bool = false, stream: [UInt8]) throws {
        self.modelFingerprint = modelFingerprint
        self.priorFingerprint = priorFingerprint
        self.height = height
        self.width = width
        self.channels = channels
        self.downsamplings = downsamplings
        self.levels = levels
        self.modelLevels = modelLevels
        self.codes = codes
        self.perPositionLevels = perPositionLevels
        self.stream = stream
        try check()
    }

    /// Refuses a header whose fields no model of this project can have.
    func check() throws {
        guard (1...Self.largestSide).contains(height), (1...Self.largestSide).contains(width) else {
            throw CodecError("the image size \(height)x\(width) is outside 1...\(Self.largestSide) per side")
        }
        guard channels == 1 || channels == 3 else { throw CodecError("\(channels) channels (1 or 3 expected)") }
        guard (0...8).contains(downsamplings) else { throw CodecError("\(downsamplings) stride-2 layers (0...8 expected)") }
        guard (1...16).contains(modelLevels), (1...modelLevels).contains(levels) else {
            throw CodecError("\(levels) of \(modelLevels) codebooks (1 <= coded <= model <= 16 expected)")
        }
        guard (2...4096).contains(codes) else { throw CodecError("\(codes) codes per codebook (2...4096 expected)") }
        guard stream.count <= Int(UInt32.max) - Self.overheadBytes else { throw CodecError("the stream is too long") }
    }

    /// The file's bytes.
    public func bytes() -> [UInt8] {
        var out = Self.magic
        out.append(perPositionLevels ? 2 : 1)
        func put(_ value: UInt64, _ count: Int) { for k in 0..<count { out.append(UInt8(truncatingIfNeeded: value >> UInt64(8 * k))) } }
        put(modelFingerprint, 8)
        put(priorFingerprint, 8)
        put(UInt64(height), 4)
        put(UInt64(width), 4)
        put(UInt64(channels), 1)
        put(UInt64(downsamplings), 1)
        put(UInt64(levels), 1)
        put(UInt64(modelLevels), 1)
        put(UInt64(codes), 2)
        put(UInt64(stream.count), 4)
        out += stream
        put(UInt64(CRC32.checksum(out)), 4)
        return out
    }

    /// Parses and checks a file's bytes: magic, version, checksum, every header field and the
    /// stream's length. Throws one line naming the first problem.
    public init(bytes: [UInt8]) throws {
        guard bytes.count >= Self.overheadBytes else {
            throw CodecError("not a .vqz file: \(bytes.count) bytes, fewer than the \(Self.overheadBytes) of a header and checksum")
        }
        guard Array(bytes[0..<3]) == Self.magic else { throw CodecError("not a .vqz file (it does not start with 'VQZ')") }
        guard bytes[3] == 1 || bytes[3] == 2 else {
            throw CodecError(".vqz format version \(bytes[3]) is not supported (this build reads versions 1 to \(Self.version))")
        }
        func get(_ offset: Int, _ count: Int) -> UInt64 {
            var value: UInt64 = 0
            for k in 0..<count { value |= UInt64(bytes[offset + k]) << UInt64(8 * k) }
            return value
        }
        let length = Int(get(34, 4))
        guard length == bytes.count - Self.overheadBytes else {
            throw CodecError("the file is truncated or has bytes appended (its header announces a stream of \(length) bytes, the file holds \(bytes.count - Self.overheadBytes))")
        }
        let stored = UInt32(get(bytes.count - 4, 4))
        guard CRC32.checksum(bytes[0..<(bytes.count - 4)]) == stored else {
            throw CodecError("the file is damaged (its CRC-32 does not match)")
        }
        try self.init(modelFingerprint: get(4, 8), priorFingerprint: get(12, 8), height: Int(get(20, 4)), width: Int(get(24, 4)),
                      channels: Int(get(28, 1)), downsamplings: Int(get(29, 1)), levels: Int(get(30, 1)), modelLevels: Int(get(31, 1)),
                      codes: Int(get(32, 2)), perPositionLevels: bytes[3] == 2, stream: Array(bytes[Self.headerBytes..<(bytes.count - 4)]))
    }
}

/// CRC-32 with the IEEE 802.3 polynomial, reflected, as zlib's `crc32`.
public enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    public static func checksum<Bytes: Collection>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        var c: UInt32 = 0xFFFF_FFFF
        for byte in bytes { c = table[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }
}

extension RANSEncoder {
    /// The stream of symbols given by their ranges `(start, frequency)` in tables of `2^scaleBits`
    /// (what `encode(_:table:)` takes from each symbol's table), in coding order: an encoder that
    /// computes each table once, keeps the coded symbol's range and drops the rest.
    public static func encode(ranges: [(start: UInt32, frequency: UInt32)], scaleBits: Int) throws -> [UInt8] {
        guard (1...RANS.largestScaleBits).contains(scaleBits) else { throw CodecError("scale bits \(scaleBits) out of range") }
        var reversed: [UInt8] = []
        reversed.reserveCapacity(ranges.count + 16)
        var state = RANS.lowerBound
        for i in stride(from: ranges.count - 1, through: 0, by: -1) {
            let (start, f) = ranges[i]
            guard f > 0, UInt64(start) + UInt64(f) <= UInt64(1) << scaleBits else {
                throw CodecError("symbol \(i) has an empty or out-of-range frequency")
            }
            let limit = ((RANS.lowerBound >> UInt32(scaleBits)) << 8) * f
            while state >= limit {
                reversed.append(UInt8(truncatingIfNeeded: state))
                state >>= 8
            }
            state = ((state / f) << UInt32(scaleBits)) + (state % f) + start
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(reversed.count + 4)
        for k in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: state >> UInt32(8 * k))) }
        bytes.append(contentsOf: reversed.reversed())
        return bytes
    }
}
