#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs a model that takes fixed `Th x Tw` inputs over an image of any size: the image is cut into
/// overlapping tiles, the tiles are processed in batches, and the results are blended back with a
/// smooth weight window so that no seams appear.
///
/// Layouts: the image is `[H, W, C]` (rows, columns, interleaved channels); a batch of tiles is
/// `[count, Th, Tw, C]`, and the processed batch `[count, Th, Tw, C_out]`; the result `[H, W, C_out]`.
///
/// **Tiles.** Along each axis of length `L`, with that axis's tile side `T` and least overlap `o`:
/// one tile at 0 when `L <= T`; otherwise `n = ceil((L - T) / (T - o)) + 1` tiles at
/// `floor(i * (L - T) / (n - 1))`, `i = 0..<n`, so the first starts at 0, the last ends flush with
/// the border, and neighbours overlap by at least `o` pixels (the spare overlap is spread evenly).
/// Tiles are numbered row by row. An axis shorter than `T` is padded at its end by repeating the
/// last row or column (edge replication); the padded part of a result is discarded.
///
/// **Blending.** Result pixel `p` is `sum_t w_t(p) r_t(p) / sum_t w_t(p)` over the tiles covering
/// it, with the separable raised-cosine window `w(i, j) = v_Th(i) v_Tw(j)`,
/// `v_T(i) = 0.5 - 0.5 cos(2 pi (i + 0.5) / T)` at tile row or column `i`: largest at the centre,
/// small at the tile's edges and never zero, so every pixel has positive total weight, and a
/// processing that maps every tile the same pointwise way gives exactly (to rounding) that
/// pointwise map of the image.
public struct TiledImage: Sendable {
    public let height: Int
    public let width: Int
    public let channels: Int
    /// `Th`: the tile's height.
    public let tileHeight: Int
    /// `Tw`: the tile's width.
    public let tileWidth: Int
    /// The least overlap in pixels between vertically neighbouring tiles, in `0..<Th`.
    public let rowOverlap: Int
    /// The least overlap in pixels between horizontally neighbouring tiles, in `0..<Tw`.
    public let columnOverlap: Int
    /// Top rows of the tile rows, ascending.
    public let rowOrigins: [Int]
    /// Left columns of the tile columns, ascending.
    public let columnOrigins: [Int]

    /// Plans square `tileSize x tileSize` tiles with the same least overlap along both axes.
    public init(height: Int, width: Int, channels: Int, tileSize: Int, overlap: Int) throws {
        try self.init(height: height, width: width, channels: channels, tileHeight: tileSize, tileWidth: tileSize,
                      rowOverlap: overlap, columnOverlap: overlap)
    }

    /// Plans the `tileHeight x tileWidth` tiles of an `height x width x channels` image. Throws a
    /// `ModelError` unless every size is at least 1, `0 <= rowOverlap < tileHeight` and
    /// `0 <= columnOverlap < tileWidth`.
    public init(height: Int, width: Int, channels: Int, tileHeight: Int, tileWidth: Int,
                rowOverlap: Int, columnOverlap: Int) throws {
        guard height >= 1, width >= 1, channels >= 1 else {
            throw ModelError("an image to tile must be at least 1x1 with 1 channel (got \(height)x\(width)x\(channels))")
        }
        guard tileHeight >= 1, tileWidth >= 1 else {
            throw ModelError("a tile must be at least 1x1 pixels (got \(tileHeight)x\(tileWidth))")
        }
        for (overlap, side, axis) in [(rowOverlap, tileHeight, "vertical"), (columnOverlap, tileWidth, "horizontal")] {
            guard overlap >= 0, overlap < side else {
                throw ModelError("the \(axis) tile overlap must be in 0..<\(side) pixels for \(tileHeight)x\(tileWidth) tiles (got \(overlap))")
            }
        }
        let (pixels, overflow) = height.multipliedReportingOverflow(by: width)
        guard !overflow, !pixels.multipliedReportingOverflow(by: channels).overflow else {
            throw ModelError("an image of \(height)x\(width)x\(channels) is too large to tile")
        }
        self.height = height
        self.width = width
        self.channels = channels
        self.tileHeight = tileHeight
        self.tileWidth = tileWidth
        self.rowOverlap = rowOverlap
        self.columnOverlap = columnOverlap
        rowOrigins = Self.origins(length: height, tileSize: tileHeight, overlap: rowOverlap)
        columnOrigins = Self.origins(length: width, tileSize: tileWidth, overlap: columnOverlap)
    }

    /// Tile origins along one axis of `length` pixels (see the type's documentation).
    public static func origins(length: Int, tileSize: Int, overlap: Int) -> [Int] {
        if length <= tileSize { return [0] }
        let stride = tileSize - overlap
        let span = length - tileSize
        let count = (span + stride - 1) / stride + 1
        return (0..<count).map { $0 * span / (count - 1) }
    }

    /// The number of tiles, `rowOrigins.count * columnOrigins.count`.
    public var tileCount: Int { rowOrigins.count * columnOrigins.count }

    /// `(top, left)` of tile `index` (row by row).
    public func origin(ofTile index: Int) -> (top: Int, left: Int) {
        (rowOrigins[index / columnOrigins.count], columnOrigins[index % columnOrigins.count])
    }

    /// The blending window along one axis: `v(i) = 0.5 - 0.5 cos(2 pi (i + 0.5) / T)`, all positive.
    public static func window(tileSize: Int) -> [Float] {
        (0..<tileSize).map { i in
            Float(0.5 - 0.5 * cos(2 * Double.pi * (Double(i) + 0.5) / Double(tileSize)))
        }
    }

    /// Copies tile `index` of `image` `[H, W, C]` into `tile` `[Th, Tw, C]`, replicating the last
    /// row and column where the image is smaller than the tile.
    public func extractTile(_ index: Int, from image: UnsafePointer<Float>, into tile: UnsafeMutablePointer<Float>) {
        let (top, left) = origin(ofTile: index)
        let tw = tileWidth, c = channels
        for i in 0..<tileHeight {
            let y = min(top + i, height - 1)
            let rowStart = image + y * width * c
            let validColumns = min(tw, width - left)
            (tile + i * tw * c).update(from: rowStart + left * c, count: validColumns * c)
            if validColumns < tw {
                let last = rowStart + (width - 1) * c
                for j in validColumns..<tw { (tile + (i * tw + j) * c).update(from: last, count: c) }
            }
        }
    }

    /// Processes `image` `[H, W, C]` tile by tile and writes the blended result `[H, W, C_out]`
    /// into `output`. `process(tiles, count, results)` receives `count <= batchSize` tiles
    /// `[count, Th, Tw, C]` and must fill `results` `[count, Th, Tw, C_out]`; it is called
    /// `ceil(tileCount / batchSize)` times, in tile order. `outputChannels` defaults to `C`.
    /// Throws a `ModelError` when the buffer sizes disagree with the plan, and rethrows what
    /// `process` throws.
    public func process(
        _ image: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>,
        outputChannels: Int? = nil, batchSize: Int = 16,
        _ process: (_ tiles: UnsafePointer<Float>, _ count: Int, _ results: UnsafeMutablePointer<Float>) throws -> Void
    ) throws {
        let outChannels = outputChannels ?? channels
        guard outChannels >= 1, batchSize >= 1 else {
            throw ModelError("tiled processing needs at least 1 output channel and batches of at least 1 tile (got \(outChannels) and \(batchSize))")
        }
        guard image.count == height * width * channels, let imageBase = image.baseAddress else {
            throw ModelError("tiled processing of a \(height)x\(width)x\(channels) image needs \(height * width * channels) values, got \(image.count)")
        }
        guard output.count == height * width * outChannels, let outputBase = output.baseAddress else {
            throw ModelError("tiled processing writes \(height * width * outChannels) values (\(height)x\(width)x\(outChannels)), but the output holds \(output.count)")
        }
        let th = tileHeight, tw = tileWidth
        let batch = min(batchSize, tileCount)
        let tileIn = th * tw * channels, tileOut = th * tw * outChannels
        let tiles = UnsafeMutablePointer<Float>.allocate(capacity: batch * tileIn)
        let results = UnsafeMutablePointer<Float>.allocate(capacity: batch * tileOut)
        let weightSums = UnsafeMutablePointer<Float>.allocate(capacity: height * width)
        defer { tiles.deallocate(); results.deallocate(); weightSums.deallocate() }
        tiles.initialize(repeating: 0, count: batch * tileIn)
        results.initialize(repeating: 0, count: batch * tileOut)
        weightSums.initialize(repeating: 0, count: height * width)
        outputBase.update(repeating: 0, count: output.count)
        let rowWindow = Self.window(tileSize: th), columnWindow = Self.window(tileSize: tw)

        var start = 0
        while start < tileCount {
            let count = min(batch, tileCount - start)
            for k in 0..<count { extractTile(start + k, from: imageBase, into: tiles + k * tileIn) }
            try process(tiles, count, results)
            for k in 0..<count {
                let (top, left) = origin(ofTile: start + k)
                let result = results + k * tileOut
                for i in 0..<min(th, height - top) {
                    let rowWeight = rowWindow[i]
                    for j in 0..<min(tw, width - left) {
                        let w = rowWeight * columnWindow[j]
                        let pixel = (top + i) * width + left + j
                        weightSums[pixel] += w
                        let source = result + (i * tw + j) * outChannels
                        let destination = outputBase + pixel * outChannels
                        for c in 0..<outChannels { destination[c] += w * source[c] }
                    }
                }
            }
            start += count
        }
        for pixel in 0..<(height * width) {
            let scale = 1 / weightSums[pixel]
            let destination = outputBase + pixel * outChannels
            for c in 0..<outChannels { destination[c] *= scale }
        }
    }

    /// `process` over arrays: returns the blended result `[H, W, C_out]`.
    public func process(
        _ image: [Float], outputChannels: Int? = nil, batchSize: Int = 16,
        _ process: (_ tiles: UnsafePointer<Float>, _ count: Int, _ results: UnsafeMutablePointer<Float>) throws -> Void
    ) throws -> [Float] {
        var output = [Float](repeating: 0, count: height * width * (outputChannels ?? channels))
        try image.withUnsafeBufferPointer { input in
            try output.withUnsafeMutableBufferPointer { out in
                try self.process(input, into: out, outputChannels: outputChannels, batchSize: batchSize, process)
            }
        }
        return output
    }
}
