/// Packs codebook indices in `[0, K)` into the fewest whole bytes and back, for compressed files.
///
/// Every index takes `bitsPerCode = max(1, ceil(log2 K))` bits (K = 2: 1, K = 500 and 512: 9,
/// K = 4096: 12). The layout is a little-endian bit stream: index `i` occupies stream bits
/// `i * bitsPerCode ..< (i + 1) * bitsPerCode`, least significant bit of the index first, and
/// stream bit `b` is bit `b % 8` (value `1 << (b % 8)`) of byte `b / 8`. The packed size is
/// `ceil(count * bitsPerCode / 8)` bytes; the unused high bits of the last byte are 0.
///
/// K = 1 (a single code) still takes 1 bit per index, as the formula says: every index is 0, so
/// the bytes are all zero, but the size stays proportional to the count and no special case is
/// needed by readers. K must be in `1...2^31`.
public enum CodePacking {
    /// `max(1, ceil(log2 codes))`; throws unless `codes` is in `1...2^31`.
    public static func bitsPerCode(codes: Int) throws -> Int {
        guard codes >= 1, codes <= 1 << 31 else {
            throw ModelError("a codebook must have between 1 and 2^31 codes to pack indices (got \(codes))")
        }
        return max(1, Int.bitWidth - (codes - 1).leadingZeroBitCount)
    }

    /// Bytes that `count` indices of a `codes`-entry codebook pack into.
    public static func byteCount(count: Int, codes: Int) throws -> Int {
        guard count >= 0 else { throw ModelError("cannot pack a negative number of indices (\(count))") }
        let bits = try bitsPerCode(codes: codes)
        let (total, overflow) = count.multipliedReportingOverflow(by: bits)
        guard !overflow, total <= Int.max - 7 else { throw ModelError("\(count) indices are too many to pack") }
        return (total + 7) / 8
    }

    /// The indices packed at `bitsPerCode(codes:)` bits each (see the type's documentation).
    /// Throws a `ModelError` naming the first index outside `[0, codes)`.
    public static func pack(_ indices: UnsafeBufferPointer<Int32>, codes: Int) throws -> [UInt8] {
        let bits = try bitsPerCode(codes: codes)
        var bytes = [UInt8](repeating: 0, count: try byteCount(count: indices.count, codes: codes))
        bytes.withUnsafeMutableBufferPointer { out in
            var accumulator: UInt64 = 0  // pending bits, least significant first
            var pending = 0
            var position = 0
            for index in indices {
                accumulator |= UInt64(UInt32(bitPattern: index)) << UInt64(pending)
                pending += bits
                while pending >= 8 {
                    out[position] = UInt8(truncatingIfNeeded: accumulator)
                    position += 1
                    accumulator >>= 8
                    pending -= 8
                }
            }
            if pending > 0 { out[position] = UInt8(truncatingIfNeeded: accumulator) }
        }
        // Checked after packing so the loop stays branch-free; the result is discarded on error.
        if let bad = indices.firstIndex(where: { $0 < 0 || Int($0) >= codes }) {
            throw ModelError("code index \(indices[bad]) at position \(bad) is outside [0, \(codes)); the codebook has \(codes) codes")
        }
        return bytes
    }

    public static func pack(_ indices: [Int32], codes: Int) throws -> [UInt8] {
        try indices.withUnsafeBufferPointer { try pack($0, codes: codes) }
    }

    /// `count` indices unpacked from the start of `bytes`. Throws a `ModelError` when `bytes` is
    /// shorter than `byteCount(count:codes:)` or an unpacked index is not below `codes` (possible
    /// only in damaged data when `codes` is not a power of 2). Bytes after the packed ones are
    /// ignored.
    public static func unpack(_ bytes: UnsafeBufferPointer<UInt8>, count: Int, codes: Int) throws -> [Int32] {
        let bits = try bitsPerCode(codes: codes)
        let needed = try byteCount(count: count, codes: codes)
        guard bytes.count >= needed else {
            throw ModelError("packed codes are truncated: \(count) indices of \(bits) bits need \(needed) bytes, got \(bytes.count)")
        }
        var indices = [Int32](repeating: 0, count: count)
        let mask: UInt64 = (1 << UInt64(bits)) - 1
        var accumulator: UInt64 = 0
        var available = 0
        var position = 0
        var largest: UInt64 = 0
        var largestAt = 0
        for i in 0..<count {
            while available < bits {
                accumulator |= UInt64(bytes[position]) << UInt64(available)
                position += 1
                available += 8
            }
            let value = accumulator & mask
            accumulator >>= UInt64(bits)
            available -= bits
            if value > largest { largest = value; largestAt = i }
            indices[i] = Int32(truncatingIfNeeded: value)
        }
        guard largest < UInt64(codes) else {
            throw ModelError("packed codes are damaged: index \(largest) at position \(largestAt) is outside [0, \(codes))")
        }
        return indices
    }

    public static func unpack(_ bytes: [UInt8], count: Int, codes: Int) throws -> [Int32] {
        try bytes.withUnsafeBufferPointer { try unpack($0, count: count, codes: codes) }
    }
}
