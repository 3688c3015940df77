import Codec
import XCTest

final class LevelMapTests: XCTestCase {
    /// Maps of every kind (random, blocky, uniform, one level, one row or column) come back exactly
    /// from the front of a stream, with symbols coded after them still decoding; a uniform map
    /// costs a few bytes, a random one about log2(Q) bits per position.
    func testRoundTripAndCost() throws {
        var state: UInt64 = 11
        func next() -> Int { state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407; return Int(state >> 33) }
        let after = try FrequencyTable(weights: [1, 2, 3, 4, 5])
        for (height, width, levels, kind) in [(17, 23, 4, "random"), (17, 23, 4, "blocks"), (30, 40, 4, "uniform"),
                                              (5, 5, 1, "uniform"), (1, 50, 3, "random"), (50, 1, 16, "random"), (1, 1, 2, "random")] {
            let map: [Int] = (0..<(height * width)).map { q in
                switch kind {
                case "random": return 1 + next() % levels
                case "blocks": return 1 + ((q / width) / 6 + (q % width) / 5) % levels
                default: return levels
                }
            }
            let tail = (0..<100).map { _ in next() % 5 }
            var ranges = try LevelMapModel.ranges(of: map, height: height, width: width, levels: levels)
            ranges += tail.map { (after.cumulative[$0], after.frequencies[$0]) }
            let stream = try RANSEncoder.encode(ranges: ranges, scaleBits: RANS.largestScaleBits)
            var decoder = try RANSDecoder(stream)
            XCTAssertEqual(try LevelMapModel.decode(&decoder, height: height, width: width, levels: levels), map, "\(kind) \(levels)")
            for s in tail { XCTAssertEqual(try decoder.decode(after), s) }
            try decoder.finish()
            let mapBytes = try RANSEncoder.encode(ranges: try LevelMapModel.ranges(of: map, height: height, width: width, levels: levels),
                                                  scaleBits: RANS.largestScaleBits).count
            if kind == "uniform" { XCTAssertLessThanOrEqual(mapBytes, 4 + 8, "a uniform map of \(height * width)") }
            if kind == "random" && height * width >= 50 {
                let ideal = Double(height * width) * log2(Double(levels)) / 8
                XCTAssertLessThan(Double(mapBytes), 1.25 * ideal + 8, "random map of \(levels) levels")
            }
        }
    }

    /// A map with a value outside 1...Q, of the wrong size, or Q outside 1...16, is refused.
    func testRefusals() {
        XCTAssertThrowsError(try LevelMapModel.ranges(of: [1, 2, 3], height: 1, width: 3, levels: 2))
        XCTAssertThrowsError(try LevelMapModel.ranges(of: [1, 0], height: 1, width: 2, levels: 2))
        XCTAssertThrowsError(try LevelMapModel.ranges(of: [1, 1], height: 1, width: 3, levels: 2))
        XCTAssertThrowsError(try LevelMapModel(levels: 17))
        XCTAssertThrowsError(try LevelMapModel(levels: 0))
    }
}
