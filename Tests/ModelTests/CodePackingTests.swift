import XCTest
import Model

/// Bit-packing of code indices: sizes, round trips, the documented bit order, and refusals.
final class CodePackingTests: XCTestCase {
    /// A naive reference: stream bit b is bit b % 8 of byte b / 8, index bits least significant first.
    func referencePack(_ indices: [Int32], bits: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: (indices.count * bits + 7) / 8)
        for (i, index) in indices.enumerated() {
            for bit in 0..<bits where (Int(index) >> bit) & 1 == 1 {
                let b = i * bits + bit
                bytes[b / 8] |= UInt8(1 << (b % 8))
            }
        }
        return bytes
    }

    func testBitsPerCodeAndSizes() throws {
        let expected: [(Int, Int)] = [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (255, 8), (256, 8), (257, 9),
                                      (500, 9), (512, 9), (513, 10), (1024, 10), (4096, 12), (4097, 13),
                                      (65536, 16), (1 << 31, 31)]
        for (codes, bits) in expected {
            XCTAssertEqual(try CodePacking.bitsPerCode(codes: codes), bits, "K = \(codes)")
        }
        XCTAssertEqual(try CodePacking.byteCount(count: 0, codes: 512), 0)
        XCTAssertEqual(try CodePacking.byteCount(count: 1, codes: 512), 2)
        XCTAssertEqual(try CodePacking.byteCount(count: 8, codes: 512), 9)
        XCTAssertEqual(try CodePacking.byteCount(count: 64, codes: 512), 72)  // an 8x8 latent grid
        XCTAssertEqual(try CodePacking.byteCount(count: 3, codes: 4096), 5)
        XCTAssertEqual(try CodePacking.byteCount(count: 9, codes: 2), 2)
        XCTAssertEqual(try CodePacking.byteCount(count: 9, codes: 1), 2)
        for bad in [0, -1, (1 << 31) + 1] {
            XCTAssertThrowsError(try CodePacking.bitsPerCode(codes: bad), "K = \(bad)") { XCTAssertTrue($0 is ModelError) }
        }
        XCTAssertThrowsError(try CodePacking.byteCount(count: -1, codes: 4))
        XCTAssertThrowsError(try CodePacking.byteCount(count: Int.max / 4, codes: 512))
    }

    func testRoundTripsMatchTheReferenceLayout() throws {
        var random = SystemRandomNumberGenerator()
        for codes in [1, 2, 3, 500, 512, 4096, 65536, 1 << 31] {
            let bits = try CodePacking.bitsPerCode(codes: codes)
            for count in [0, 1, 2, 7, 8, 9, 63, 64, 65, 1000] {
                var indices = (0..<count).map { _ in Int32(truncatingIfNeeded: Int.random(in: 0..<codes, using: &random)) }
                // Extremes: the first and last index are 0 and K - 1 when there is room.
                if count >= 2 { indices[0] = Int32(codes - 1); indices[count - 1] = 0 }
                if count >= 4 { indices[1] = Int32(codes - 1); indices[2] = Int32(codes - 1) }
                let packed = try CodePacking.pack(indices, codes: codes)
                XCTAssertEqual(packed.count, (count * bits + 7) / 8, "K = \(codes), \(count) indices")
                XCTAssertEqual(packed.count, try CodePacking.byteCount(count: count, codes: codes))
                XCTAssertEqual(packed, referencePack(indices, bits: bits), "K = \(codes), \(count) indices: layout")
                XCTAssertEqual(try CodePacking.unpack(packed, count: count, codes: codes), indices, "K = \(codes), \(count)")
                // Trailing bytes after the packed ones are ignored.
                XCTAssertEqual(try CodePacking.unpack(packed + [0xFF, 0x12], count: count, codes: codes), indices)
            }
        }
        // All-maximum and all-zero streams.
        for codes in [2, 500, 512, 4096] {
            let bits = try CodePacking.bitsPerCode(codes: codes)
            let top = [Int32](repeating: Int32(codes - 1), count: 37)
            XCTAssertEqual(try CodePacking.unpack(try CodePacking.pack(top, codes: codes), count: 37, codes: codes), top)
            let zeros = [Int32](repeating: 0, count: 37)
            XCTAssertEqual(try CodePacking.pack(zeros, codes: codes), [UInt8](repeating: 0, count: (37 * bits + 7) / 8))
        }
    }

    func testDocumentedBitOrder() throws {
        // K = 512 (9 bits): 1 at stream bit 0, 256 at stream bit 9 + 8 = 17, 511 at bits 18...26.
        XCTAssertEqual(try CodePacking.pack([1, 256, 511], codes: 512), [0b0000_0001, 0b0000_0000, 0b1111_1110, 0b0000_0111])
        // K = 2: one bit each, first index in the lowest bit.
        XCTAssertEqual(try CodePacking.pack([1, 0, 0, 1, 1, 1, 0, 1, 1], codes: 2), [0b1011_1001, 0b0000_0001])
        // K = 4096: 12 bits, 0xABC then 0x123 -> bytes BC 3A 12.
        XCTAssertEqual(try CodePacking.pack([0xABC, 0x123], codes: 4096), [0xBC, 0x3A, 0x12])
        // K = 1: one zero bit per index.
        XCTAssertEqual(try CodePacking.pack([0, 0, 0], codes: 1), [0])
        XCTAssertEqual(try CodePacking.unpack([0], count: 8, codes: 1), [Int32](repeating: 0, count: 8))
    }

    func testRefusals() throws {
        XCTAssertThrowsError(try CodePacking.pack([0, 512, 3], codes: 512)) { error in
            XCTAssertTrue(error is ModelError)
            XCTAssertTrue("\(error)".contains("512 at position 1"), "\(error)")
        }
        XCTAssertThrowsError(try CodePacking.pack([0, -1], codes: 512)) { XCTAssertTrue("\($0)".contains("-1"), "\($0)") }
        XCTAssertThrowsError(try CodePacking.pack([1], codes: 1))
        XCTAssertThrowsError(try CodePacking.pack([500], codes: 500))
        XCTAssertThrowsError(try CodePacking.pack([0], codes: 0))

        let packed = try CodePacking.pack((0..<100).map { Int32($0 * 5) }, codes: 500)
        XCTAssertEqual(packed.count, 113)
        XCTAssertThrowsError(try CodePacking.unpack(Array(packed.dropLast()), count: 100, codes: 500)) { error in
            XCTAssertTrue(error is ModelError)
            XCTAssertTrue("\(error)".contains("need 113 bytes, got 112"), "\(error)")
        }
        XCTAssertThrowsError(try CodePacking.unpack([], count: 1, codes: 2))
        XCTAssertEqual(try CodePacking.unpack([], count: 0, codes: 2), [])
        // 9-bit values 500...511 do not exist in a 500-code book: damaged data.
        XCTAssertThrowsError(try CodePacking.unpack([0xFF, 0x01], count: 1, codes: 500)) { error in
            XCTAssertTrue("\(error)".contains("511"), "\(error)")
        }
        XCTAssertEqual(try CodePacking.unpack([0xFF, 0x01], count: 1, codes: 512), [511])
    }
}
