/// The level map of a version-2 `.vqz` file: how many codebooks, `1...Q`, each position of the
/// code grid codes. It is coded first in the stream, position by position in raster order, each
/// value under an adaptive table of its context: the values of the position's left and upper
/// neighbours (`Q` stands for "no neighbour" at the edges), `(Q + 1)^2` contexts in all. Every
/// context starts with a count of 1 per value and adds `increment` to the value it codes, so the
/// encoder and the decoder, updating in the same order with integers, build the same tables.
public struct LevelMapModel {
    public static let increment = 24
    public let levels: Int
    private var counts: [Int]

    /// A fresh model for maps of values `1...levels`.
    public init(levels: Int) throws {
        guard (1...16).contains(levels) else { throw CodecError("level map: \(levels) codebooks (1...16 expected)") }
        self.levels = levels
        counts = [Int](repeating: 1, count: (levels + 1) * (levels + 1) * levels)
    }

    /// The context of position `(y, x)` of a `height x width` map whose earlier positions are
    /// known (values `1...levels`).
    func context(_ map: [Int], y: Int, x: Int, width: Int) -> Int {
        let left = x > 0 ? map[y * width + x - 1] - 1 : levels
        let up = y > 0 ? map[(y - 1) * width + x] - 1 : levels
        return up * (levels + 1) + left
    }

    /// The table of a context (values `1...levels` as symbols `0..<levels`).
    func table(_ context: Int) throws -> FrequencyTable {
        try FrequencyTable(weights: counts[(context * levels)..<((context + 1) * levels)].map(Double.init))
    }

    mutating func update(_ context: Int, symbol: Int) { counts[context * levels + symbol] += Self.increment }

    /// The symbol ranges of `map` (`height x width`, values `1...levels`) in raster order, for
    /// `RANSEncoder.encode(ranges:scaleBits:)` ahead of the codes.
    public static func ranges(of map: [Int], height: Int, width: Int, levels: Int) throws -> [(start: UInt32, frequency: UInt32)] {
        guard map.count == height * width, map.allSatisfy({ (1...levels).contains($0) }) else {
            throw CodecError("level map: \(map.count) values for a \(height)x\(width) grid, or a value outside 1...\(levels)")
        }
        var model = try LevelMapModel(levels: levels)
        var ranges: [(start: UInt32, frequency: UInt32)] = []
        ranges.reserveCapacity(map.count)
        for y in 0..<height {
            for x in 0..<width {
                let context = model.context(map, y: y, x: x, width: width), s = map[y * width + x] - 1
                let t = try model.table(context)
                ranges.append((t.cumulative[s], t.frequencies[s]))
                model.update(context, symbol: s)
            }
        }
        return ranges
    }

    /// Decodes a `height x width` map from the front of a stream (values `1...levels`).
    public static func decode(_ decoder: inout RANSDecoder, height: Int, width: Int, levels: Int) throws -> [Int] {
        var model = try LevelMapModel(levels: levels)
        var map = [Int](repeating: 0, count: height * width)
        for y in 0..<height {
            for x in 0..<width {
                let context = model.context(map, y: y, x: x, width: width)
                let s = try decoder.decode(try model.table(context))
                map[y * width + x] = s + 1
                model.update(context, symbol: s)
            }
        }
        return map
    }
}
