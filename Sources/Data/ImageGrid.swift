/// A grid of equal-size images in one picture, e.g. one row per sample with the columns
/// original | damaged | restored, separated by lines `separator` pixels wide.
public enum ImageGrid {
    /// Places `rows[r][c]` (every image `h x w`) at row `r`, column `c` of one image of
    /// `R * h + (R - 1) * separator` by `columns * w + (columns - 1) * separator` pixels, where
    /// `columns` is the longest row's length. Separator lines, and the cells a shorter row leaves
    /// empty, are filled with `separatorValue` (0 black, 255 white). The grid has 3 channels
    /// when any image has 3 (gray images are repeated into R, G, B), otherwise 1.
    ///
    /// Throws a `DataError` when there is no image, when images differ in size, or when
    /// `separator` is negative.
    public static func compose(rows: [[PNGImage]], separator: Int = 2, separatorValue: UInt8 = 255) throws -> PNGImage {
        guard separator >= 0 else { throw DataError("a grid's separator must be >= 0 pixels (got \(separator))") }
        guard let first = rows.lazy.flatMap({ $0 }).first else { throw DataError("a grid needs at least one image") }
        let cellHeight = first.height, cellWidth = first.width
        var channels = 1
        for (r, row) in rows.enumerated() {
            for (c, image) in row.enumerated() {
                guard image.height == cellHeight, image.width == cellWidth else {
                    throw DataError("grid images must all be \(cellHeight)x\(cellWidth); the image at row \(r), column \(c) is \(image.height)x\(image.width)")
                }
                channels = max(channels, image.channels)
            }
        }
        let rowCount = rows.count
        let columnCount = rows.map(\.count).max() ?? 0
        let height = rowCount * cellHeight + (rowCount - 1) * separator
        let width = columnCount * cellWidth + (columnCount - 1) * separator
        var pixels = [UInt8](repeating: separatorValue, count: height * width * channels)
        for (r, row) in rows.enumerated() {
            for (c, image) in row.enumerated() {
                let cell = try image.converted(toChannels: channels)
                let top = r * (cellHeight + separator), left = c * (cellWidth + separator)
                let rowLength = cellWidth * channels
                for y in 0..<cellHeight {
                    let destination = ((top + y) * width + left) * channels
                    pixels.replaceSubrange(destination..<(destination + rowLength),
                                           with: cell.pixels[(y * rowLength)..<((y + 1) * rowLength)])
                }
            }
        }
        return try PNGImage(height: height, width: width, channels: channels, pixels: pixels)
    }
}
