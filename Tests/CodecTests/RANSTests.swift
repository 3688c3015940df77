import Codec
import Foundation
import XCTest

/// A small deterministic generator for the tests (SplitMix64).
private struct TestRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

final class RANSTests: XCTestCase {
    /// Encodes then decodes `symbols` with per-position tables and checks the exact round trip and
    /// that the whole stream is consumed; returns the stream's size in bytes.
    @discardableResult
    private func roundTrip(_ symbols: [Int], _ tables: [FrequencyTable], file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        let bytes = try RANSEncoder.encode(symbols) { tables[$0] }
        var decoder = try RANSDecoder(bytes)
        var decoded: [Int] = []
        for i in symbols.indices { decoded.append(try decoder.decode(tables[i])) }
        XCTAssertEqual(decoded, symbols, file: file, line: line)
        XCTAssertNoThrow(try decoder.finish(), file: file, line: line)
        return bytes.count
    }

    /// The ideal size in bits: the sum of -log2(f / 2^scale) over the coded symbols.
    private func idealBits(_ symbols: [Int], _ tables: [FrequencyTable]) -> Double {
        zip(symbols, tables).reduce(0) { sum, pair in
            let (s, t) = pair
            return sum - log2(Double(t.frequencies[s]) / Double(1 << t.scaleBits))
        }
    }

    func testRandomStreamsWithRandomTablesRoundTripNearTheEntropy() throws {
        var random = TestRandom(state: 1)
        for (alphabet, count, scale) in [(2, 1, 16), (2, 10_000, 12), (16, 5_000, 16), (512, 20_000, 16), (4096, 3_000, 14), (7, 777, 3)] {
            var tables: [FrequencyTable] = []
            var symbols: [Int] = []
            let shapes = try (0..<8).map { _ in
                try FrequencyTable(weights: (0..<alphabet).map { _ in pow(random.uniform(), 4) }, scaleBits: scale)
            }
            for _ in 0..<count {
                let table = shapes[random.below(shapes.count)]
                // Draw from the table itself, so the ideal size is its entropy.
                let slot = UInt32(random.below(1 << scale))
                let s = table.cumulative.lastIndex { $0 <= slot }!
                tables.append(table)
                symbols.append(min(s, alphabet - 1))
            }
            let size = try roundTrip(symbols, tables)
            let ideal = idealBits(symbols, tables) / 8
            XCTAssertLessThanOrEqual(Double(size), ideal * 1.002 + 8, "alphabet \(alphabet): \(size) bytes for \(ideal) ideal")
        }
    }

    func testAdversarialStreams() throws {
        // The empty stream: four bytes of state, nothing else.
        let empty = try FrequencyTable(weights: [1, 1], scaleBits: 16)
        XCTAssertEqual(try roundTrip([], []), 4)
        // One symbol with all the probability costs nothing per symbol.
        let certain = try FrequencyTable(frequencies: [1 << 16], scaleBits: 16)
        XCTAssertEqual(try roundTrip([Int](repeating: 0, count: 100_000), [FrequencyTable](repeating: certain, count: 100_000)), 4)
        // The least likely symbol of a skewed table, every time: 16 bits each, renormalising at every step.
        let skewed = try FrequencyTable(frequencies: [(1 << 16) - 1, 1], scaleBits: 16)
        let rare = try roundTrip([Int](repeating: 1, count: 5_000), [FrequencyTable](repeating: skewed, count: 5_000))
        XCTAssertEqual(rare, 4 + 5_000 * 2, accuracy: 4)
        // Alternating the likeliest and the rarest symbol, and zero-frequency symbols in between.
        let gaps = try FrequencyTable(frequencies: [0, 60_000, 0, 0, 5_535, 1, 0], scaleBits: 16)
        let pattern = (0..<10_000).map { [1, 5, 4, 1][$0 % 4] }
        try roundTrip(pattern, [FrequencyTable](repeating: gaps, count: pattern.count))
        // Tables changing at every symbol, different scales mixed.
        var random = TestRandom(state: 9)
        var tables: [FrequencyTable] = []
        var symbols: [Int] = []
        for _ in 0..<3_000 {
            let n = 1 + random.below(300), scale = 9 + random.below(8)
            let weights = (0..<n).map { i in i == n - 1 ? 0.01 + random.uniform() : (random.uniform() < 0.3 ? 0 : random.uniform()) }
            let t = try FrequencyTable(weights: weights, scaleBits: scale)
            tables.append(t)
            symbols.append(random.below(n))
        }
        try roundTrip(symbols, tables)
        _ = empty
    }

    func testZeroWeightsStillGiveEverySymbolAFrequency() throws {
        let t = try FrequencyTable(weights: [0, 0, 1, 0], scaleBits: 8)
        XCTAssertEqual(t.frequencies, [1, 1, 253, 1])
        XCTAssertEqual(t.cumulative, [0, 1, 2, 255, 256])
        XCTAssertEqual(try roundTrip([0, 1, 3, 2, 0], [FrequencyTable](repeating: t, count: 5)), 4 + 3, accuracy: 1)
        // The same weights always give the same table.
        let weights = (0..<512).map { Double(($0 * 7919) % 113) / 113 }
        XCTAssertEqual(try FrequencyTable(weights: weights), try FrequencyTable(weights: weights))
        XCTAssertEqual(try FrequencyTable(weights: weights).cumulative.last, 1 << 16)
    }

    func testBadTablesAndSymbolsAreRefused() {
        XCTAssertThrowsError(try FrequencyTable(frequencies: [1, 2], scaleBits: 4))
        XCTAssertThrowsError(try FrequencyTable(frequencies: [], scaleBits: 4))
        XCTAssertThrowsError(try FrequencyTable(frequencies: [1 << 17], scaleBits: 17))
        XCTAssertThrowsError(try FrequencyTable(weights: [0, 0], scaleBits: 8))
        XCTAssertThrowsError(try FrequencyTable(weights: [1, .nan], scaleBits: 8))
        XCTAssertThrowsError(try FrequencyTable(weights: [1, -1], scaleBits: 8))
        XCTAssertThrowsError(try FrequencyTable(weights: [Double](repeating: 1, count: 300), scaleBits: 8))
        let t = try! FrequencyTable(frequencies: [0, 16], scaleBits: 4)
        XCTAssertThrowsError(try RANSEncoder.encode([0]) { _ in t }) { error in
            XCTAssertEqual("\(error)", "symbol 0 at position 0 has probability zero")
        }
        XCTAssertThrowsError(try RANSEncoder.encode([2]) { _ in t })
        XCTAssertThrowsError(try RANSEncoder.encode([-1]) { _ in t })
    }

    /// Truncated, extended and randomly damaged streams end in an error or in other symbols, never
    /// in a crash or a hang; truncation and extension are always detected.
    func testDamagedStreamsAreDetectedOrHarmless() throws {
        var random = TestRandom(state: 3)
        let table = try FrequencyTable(weights: (0..<64).map { _ in random.uniform() }, scaleBits: 15)
        let symbols = (0..<2_000).map { _ in random.below(64) }
        let bytes = try RANSEncoder.encode(symbols) { _ in table }
        func decodeAll(_ stream: [UInt8]) throws -> [Int] {
            var decoder = try RANSDecoder(stream)
            let out = try symbols.indices.map { _ in try decoder.decode(table) }
            try decoder.finish()
            return out
        }
        XCTAssertEqual(try decodeAll(bytes), symbols)
        XCTAssertThrowsError(try decodeAll(Array(bytes.dropLast(1))))
        XCTAssertThrowsError(try decodeAll(bytes + [0]))
        XCTAssertThrowsError(try decodeAll(Array(bytes.prefix(3))))
        var detected = 0
        for trial in 0..<500 {
            var damaged = bytes
            damaged[random.below(damaged.count)] ^= UInt8(1 + random.below(255))
            if let out = try? decodeAll(damaged) { XCTAssertNotEqual(out, symbols, "trial \(trial)") } else { detected += 1 }
        }
        XCTAssertGreaterThan(detected, 400)
    }
}
