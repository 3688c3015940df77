import Codec
import XCTest

final class VQZFileTests: XCTestCase {
    func makeFile(stream: [UInt8] = [1, 2, 3, 4, 5, 6, 7]) throws -> VQZFile {
        try VQZFile(modelFingerprint: 0x0123_4567_89AB_CDEF, priorFingerprint: 42, height: 427, width: 640, channels: 3,
                    downsamplings: 3, levels: 2, modelLevels: 4, codes: 512, stream: stream)
    }

    /// The documented layout, byte for byte, and a parse that gives the same file back.
    func testLayoutAndRoundTrip() throws {
        let file = try makeFile()
        let bytes = file.bytes()
        XCTAssertEqual(bytes.count, VQZFile.overheadBytes + 7)
        XCTAssertEqual(Array(bytes[0..<4]), [0x56, 0x51, 0x5A, 1])
        XCTAssertEqual(Array(bytes[4..<12]), [0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01])
        XCTAssertEqual(Array(bytes[20..<28]), [0xAB, 0x01, 0, 0, 0x80, 0x02, 0, 0])  // 427, 640
        XCTAssertEqual(Array(bytes[28..<38]), [3, 3, 2, 4, 0x00, 0x02, 7, 0, 0, 0])
        XCTAssertEqual(Array(bytes[38..<45]), [1, 2, 3, 4, 5, 6, 7])
        XCTAssertEqual(try VQZFile(bytes: bytes), file)
        // Version 2 (a level map at the front of the stream) differs in its version byte alone.
        var mapped = file
        mapped.perPositionLevels = true
        let mappedBytes = mapped.bytes()
        XCTAssertEqual(mappedBytes[3], 2)
        XCTAssertEqual(Array(mappedBytes[4..<(mappedBytes.count - 4)]), Array(bytes[4..<(bytes.count - 4)]))
        XCTAssertEqual(try VQZFile(bytes: mappedBytes), mapped)
    }

    /// CRC-32 as zlib computes it (the standard check value of "123456789").
    func testCRC32CheckValue() {
        XCTAssertEqual(CRC32.checksum(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(CRC32.checksum([UInt8]()), 0)
    }

    /// Every single flipped bit, every truncation and an appended byte are refused with a message;
    /// impossible header fields are refused even under a valid checksum.
    func testDamageIsRefused() throws {
        let bytes = try makeFile().bytes()
        for i in 0..<bytes.count {
            for bit in 0..<8 {
                var damaged = bytes
                damaged[i] ^= UInt8(1 << bit)
                XCTAssertThrowsError(try VQZFile(bytes: damaged), "byte \(i) bit \(bit)")
            }
        }
        for n in 0..<bytes.count { XCTAssertThrowsError(try VQZFile(bytes: Array(bytes.prefix(n))), "\(n) bytes") }
        XCTAssertThrowsError(try VQZFile(bytes: bytes + [0]))
        XCTAssertThrowsError(try VQZFile(modelFingerprint: 1, priorFingerprint: 0, height: 10, width: 10, channels: 3, downsamplings: 2,
                                         levels: 3, modelLevels: 2, codes: 512, stream: []))
        XCTAssertThrowsError(try VQZFile(modelFingerprint: 1, priorFingerprint: 0, height: 0, width: 10, channels: 3, downsamplings: 2,
                                         levels: 1, modelLevels: 1, codes: 512, stream: []))
        XCTAssertThrowsError(try VQZFile(modelFingerprint: 1, priorFingerprint: 0, height: 10, width: 10, channels: 2, downsamplings: 2,
                                         levels: 1, modelLevels: 1, codes: 512, stream: []))
        do {
            var wrongVersion = bytes
            wrongVersion[3] = 3
            _ = try VQZFile(bytes: wrongVersion)
            XCTFail("version 3 accepted")
        } catch {
            XCTAssertTrue("\(error)".contains("format version 3 is not supported"), "\(error)")
        }
    }

    /// Coding by ranges gives the stream that coding by whole tables gives.
    func testEncodingByRangesEqualsEncodingByTables() throws {
        var state: UInt64 = 7
        func next() -> UInt64 { state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407; return state >> 33 }
        let tables = try (0..<5).map { _ in try FrequencyTable(weights: (0..<40).map { _ in Double(next() % 100) + 0.5 }) }
        let symbols = (0..<3000).map { _ in Int(next() % 40) }
        let byTables = try RANSEncoder.encode(symbols) { tables[$0 % 5] }
        let ranges = symbols.enumerated().map { i, s in (start: tables[i % 5].cumulative[s], frequency: tables[i % 5].frequencies[s]) }
        XCTAssertEqual(try RANSEncoder.encode(ranges: ranges, scaleBits: 16), byTables)
        var decoder = try RANSDecoder(byTables)
        for (i, s) in symbols.enumerated() { XCTAssertEqual(try decoder.decode(tables[i % 5]), s) }
        try decoder.finish()
    }
}
