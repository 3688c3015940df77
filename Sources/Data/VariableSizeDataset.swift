import CHDF5
import Model

/// Images of different sizes (docs/formats.md, "Images of different sizes"): in each file one flat
/// uint8 dataset `pixels` holding every image's `H*W*C` bytes in turn (row-major HWC), `shapes`
/// `(N, 3)` integers `(H, W, C)`, `offsets` `(N + 1,)` integers with `offsets[0] = 0`,
/// `offsets[i + 1] = offsets[i] + H*W*C` and `offsets[N]` the length of `pixels`, and optionally
/// `labels` `(N,)` integers. Every image of the dataset has the same `C`, 1 or 3. Several files are
/// concatenated in the order given.
///
/// Everything is validated when the dataset is opened (the shapes and offsets are read whole and
/// kept: 16 bytes per image); reads are hyperslab selections of `pixels`, one per rectangle.
public final class VariableSizeDataset: ImageFiles {
    public let paths: [String]
    public let count: Int
    public let channels: Int
    public let hasLabels: Bool
    /// Chunk length of the first file's `pixels` (nil: contiguous) and its filters.
    public let chunks: [Int]?
    public let filters: [String]
    /// Bytes of `pixels` over all files.
    public let pixelBytes: Int
    public let smallestImage: (index: Int, height: Int, width: Int)
    /// The largest height and the largest width (of possibly different images).
    public let largestHeight: Int
    public let largestWidth: Int

    private struct Part {
        let file: HDF5File
        let pixels: hid_t
        let info: DatasetInfo
        let labels: DatasetInfo?
        let index: Int
        let start: Int
        let count: Int
    }
    private let parts: [Part]
    private let heights: [Int32]
    private let widths: [Int32]
    /// Offset in its file's `pixels` of each image.
    private let offsets: [Int64]
    private var checkedChunks: [Set<Int>]
    private var checkedLabelChunks: [Set<Int>]
    private var staging: [UInt8] = []

    /// Bytes kept per image (height, width, offset), and what reading the header needs at most.
    static let bytesPerImage = 16
    /// Rows of `shapes` and `offsets` read at a time while validating.
    static let block = 65_536

    /// Whether `path` is meant to hold images of different sizes (`HDF5File.holdsImagesOfDifferentSizes`).
    static func isVariableSize(path: String, imagesKey: String) throws -> Bool {
        try HDF5File.open(path).holdsImagesOfDifferentSizes(imagesKey: imagesKey)
    }

    /// Opens and validates every file; any problem is one `DataError` naming the file. Not
    /// thread-safe with other HDF5 use; call before starting a prefetch thread.
    public init(paths: [String]) throws {
        guard !paths.isEmpty else { throw DataError("no dataset file given (use --data FILE)") }
        var parts: [Part] = []
        var finished = false
        defer { if !finished { for part in parts { H5Dclose(part.pixels) } } }
        var heights: [Int32] = [], widths: [Int32] = [], offsets: [Int64] = []
        var channels: Int?
        var labels = true
        var total = 0, bytes = 0
        var firstInfo: DatasetInfo?
        var smallest: (index: Int, height: Int, width: Int)?
        var largest = (height: 0, width: 0)
        for path in paths {
            let file = try HDF5File.open(path)
            for name in ["pixels", "shapes", "offsets"] where file.kind(of: name) != .dataset {
                if file.kind(of: "images") == .dataset && path != paths[0] {
                    throw DataError("\(path): holds 'images' of one size but \(paths[0]) holds images of different sizes; all files must use one layout")
                }
                throw DataError("\(path): no dataset '\(name)' (images of different sizes need 'pixels', 'shapes' and 'offsets'; see docs/formats.md)")
            }
            let pixelInfo = try file.info("pixels")
            guard pixelInfo.shape.count == 1 else {
                throw DataError("\(path): 'pixels' has shape \(pixelInfo.shape); expected one dimension (every image's bytes in turn)")
            }
            guard pixelInfo.elementType == .uint8 else {
                throw DataError("\(path): 'pixels' has dtype \(pixelInfo.elementType.rawValue); expected uint8")
            }
            let shapeInfo = try file.info("shapes")
            guard shapeInfo.shape.count == 2, shapeInfo.shape[1] == 3 else {
                throw DataError("\(path): 'shapes' has shape \(shapeInfo.shape); expected (N, 3), one (H, W, C) per image")
            }
            guard shapeInfo.elementType.isInteger else {
                throw DataError("\(path): 'shapes' has dtype \(shapeInfo.elementType.rawValue); expected integers")
            }
            let n = shapeInfo.shape[0]
            let offsetInfo = try file.info("offsets")
            guard offsetInfo.shape.count == 1, offsetInfo.elementType.isInteger else {
                throw DataError("\(path): 'offsets' has shape \(offsetInfo.shape) and dtype \(offsetInfo.elementType.rawValue); expected (N + 1,) integers")
            }
            guard offsetInfo.shape[0] == n + 1 else {
                throw DataError("\(path): 'offsets' holds \(offsetInfo.shape[0]) values for \(n) images in 'shapes'; expected N + 1 = \(n + 1)")
            }
            var labelInfo: DatasetInfo?
            if file.kind(of: "labels") != nil {
                let info = try file.info("labels")
                guard info.shape == [n], info.elementType.isInteger else {
                    throw DataError("\(path): 'labels' has shape \(info.shape) and dtype \(info.elementType.rawValue); expected (\(n),) integers, one per image")
                }
                labelInfo = info
            } else {
                labels = false
            }
            // The index kept per image must fit before anything is read.
            let (sum, overflow) = total.addingReportingOverflow(n)
            guard !overflow, sum <= physicalMemoryBytes / 2 / Self.bytesPerImage else {
                throw DataError("\(path): the header claims \(n) images; indexing them needs \(describeBytes(Double(total) * 16 + Double(n) * 16)), more than this machine's \(describeBytes(Double(physicalMemoryBytes)))")
            }
            let (fileChannels, fileSmallest, fileLargest) = try Self.readIndex(
                file: file, path: path, count: n, pixelBytes: pixelInfo.shape[0], shapeInfo: shapeInfo, offsetInfo: offsetInfo,
                heights: &heights, widths: &widths, offsets: &offsets)
            if let fileChannels {
                if let channels, channels != fileChannels {
                    throw DataError("\(path): images have C = \(fileChannels) but \(paths[0]) has C = \(channels); all files must agree")
                }
                channels = fileChannels
            }
            if let fileSmallest, smallest.map({ min(fileSmallest.height, fileSmallest.width) < min($0.height, $0.width) }) ?? true {
                smallest = (total + fileSmallest.index, fileSmallest.height, fileSmallest.width)
            }
            largest = (max(largest.height, fileLargest.height), max(largest.width, fileLargest.width))
            let pixels = try file.openDataset("pixels")
            parts.append(Part(file: file, pixels: pixels, info: pixelInfo, labels: labelInfo, index: parts.count, start: total, count: n))
            if firstInfo == nil { firstInfo = pixelInfo }
            total = sum
            bytes = bytes.addingReportingOverflow(pixelInfo.shape[0]).partialValue
        }
        guard total > 0, let channels, let smallest else {
            throw DataError("\(paths.joined(separator: ", ")): the dataset holds no images")
        }
        finished = true
        self.paths = paths
        self.parts = parts
        self.count = total
        self.channels = channels
        self.hasLabels = labels
        self.heights = heights
        self.widths = widths
        self.offsets = offsets
        self.chunks = firstInfo?.chunks
        self.filters = firstInfo?.filters ?? []
        self.pixelBytes = bytes
        self.smallestImage = smallest
        (largestHeight, largestWidth) = largest
        checkedChunks = Array(repeating: [], count: parts.count)
        checkedLabelChunks = Array(repeating: [], count: parts.count)
    }

    deinit { HDF5Lock.run { for part in parts { H5Dclose(part.pixels) } } }

    /// Reads and checks one file's `shapes` and `offsets` in blocks, appending each image's
    /// height, width and offset; returns the file's channels (nil when it holds no images), its
    /// image with the shortest side and its largest height and width.
    private static func readIndex(file: HDF5File, path: String, count n: Int, pixelBytes: Int, shapeInfo: DatasetInfo,
                                  offsetInfo: DatasetInfo, heights: inout [Int32], widths: inout [Int32],
                                  offsets: inout [Int64]) throws
        -> (Int?, (index: Int, height: Int, width: Int)?, (height: Int, width: Int)) {
        let shapes = try file.openDataset("shapes")
        defer { H5Dclose(shapes) }
        let offsetSet = try file.openDataset("offsets")
        defer { H5Dclose(offsetSet) }
        var checkedShapes = Set<Int>(), checkedOffsets = Set<Int>()
        var shapeBlock = [Int64](repeating: 0, count: 3 * min(n, block))
        var offsetBlock = [Int64](repeating: 0, count: min(n, block) + 1)
        var channels: Int?
        var smallest: (index: Int, height: Int, width: Int)?
        var largest = (height: 0, width: 0)
        var start = 0
        var previous: Int64 = 0
        // Offsets are read one ahead: rows start...start+rows of `offsets` for images start..<start+rows.
        while start < n || (n == 0 && start == 0) {
            let rows = min(block, n - start)
            try file.checkChunks(offsetSet, name: "offsets", info: offsetInfo, rows: start..<(start + rows + 1), checked: &checkedOffsets)
            try offsetBlock.withUnsafeMutableBytes {
                try file.readRows(offsetSet, name: "offsets", rank: 1, start: start, count: rows + 1, rowShape: [],
                                  memoryType: CHDF5_T_NATIVE_INT64(), into: $0.baseAddress!)
            }
            if start == 0 {
                guard offsetBlock[0] == 0 else { throw DataError("\(path): 'offsets' starts at \(offsetBlock[0]), not 0") }
            }
            if rows > 0 {
                try file.checkChunks(shapes, name: "shapes", info: shapeInfo, rows: start..<(start + rows), checked: &checkedShapes)
                try shapeBlock.withUnsafeMutableBytes {
                    try file.readRows(shapes, name: "shapes", rank: 2, start: start, count: rows, rowShape: [3],
                                      memoryType: CHDF5_T_NATIVE_INT64(), into: $0.baseAddress!)
                }
            }
            for row in 0..<rows {
                let i = start + row
                let (h, w, c) = (shapeBlock[3 * row], shapeBlock[3 * row + 1], shapeBlock[3 * row + 2])
                guard h > 0, w > 0, c > 0, h <= Int32.max, w <= Int32.max else {
                    throw DataError("\(path): image \(i) has size \(h)x\(w)x\(c) in 'shapes'; H, W and C must be positive")
                }
                guard c == 1 || c == 3 else {
                    throw DataError("\(path): image \(i) has \(c) channels in 'shapes'; expected C = 1 or 3")
                }
                if let channels, channels != Int(c) {
                    throw DataError("\(path): image \(i) has C = \(c) but image 0 has C = \(channels); all images of a dataset share C")
                }
                channels = Int(c)
                let (hw, o1) = h.multipliedReportingOverflow(by: w)
                let (size, o2) = hw.multipliedReportingOverflow(by: c)
                let (next, o3) = previous.addingReportingOverflow(size)
                guard !o1, !o2, !o3, offsetBlock[row + 1] == next else {
                    throw DataError("\(path): 'offsets' goes from \(offsetBlock[row]) to \(offsetBlock[row + 1]) for image \(i), but its \(h)x\(w)x\(c) pixels take \(o1 || o2 ? "more than can be counted" : "\(size) bytes") (offsets[i + 1] = offsets[i] + H*W*C)")
                }
                heights.append(Int32(h))
                widths.append(Int32(w))
                offsets.append(previous)
                previous = next
                if smallest.map({ min(Int(h), Int(w)) < min($0.height, $0.width) }) ?? true { smallest = (i, Int(h), Int(w)) }
                largest = (max(largest.height, Int(h)), max(largest.width, Int(w)))
            }
            start += max(rows, 1)
            if n == 0 { break }
        }
        guard previous == Int64(pixelBytes) else {
            throw DataError("\(path): 'offsets' ends at \(previous) but 'pixels' holds \(pixelBytes) bytes; offsets[N] must be the length of 'pixels'")
        }
        return (channels, smallest, largest)
    }

    /// Images in each file, in the order of `paths`.
    public var fileImageCounts: [Int] { parts.map(\.count) }

    public var fixedSize: (height: Int, width: Int)? { nil }

    public func imageSize(_ index: Int) -> (height: Int, width: Int) { (Int(heights[index]), Int(widths[index])) }

    public func describeImage(_ index: Int) -> String {
        guard let part = parts.last(where: { $0.start <= index }) else { return "image \(index)" }
        return "image \(index - part.start) of \(part.file.path)"
    }

    private func part(of index: Int) throws -> Part {
        guard index >= 0 && index < count else { throw DataError("sample index \(index) is outside the dataset (N = \(count))") }
        // Binary search: the last part starting at or before `index`.
        var (low, high) = (0, parts.count - 1)
        while low < high {
            let middle = (low + high + 1) / 2
            if parts[middle].start <= index { low = middle } else { high = middle - 1 }
        }
        return parts[low]
    }

    public func readRegion(index: Int, top: Int, left: Int, height: Int, width: Int, into destination: UnsafeMutablePointer<Float>) throws {
        let part = try part(of: index)
        let (imageHeight, imageWidth) = imageSize(index)
        guard top >= 0, left >= 0, height >= 1, width >= 1, top + height <= imageHeight, left + width <= imageWidth else {
            throw DataError("\(describeImage(index)): the \(height)x\(width) rectangle at (\(top), \(left)) is outside its \(imageHeight)x\(imageWidth) pixels")
        }
        let rowBytes = imageWidth * channels
        let first = Int(offsets[index]) + top * rowBytes + left * channels
        let elements = height * width * channels
        try HDF5Lock.run {
            // Only the chunks the crop's rows lie in (not those between them: a wide image stored
            // in small chunks would otherwise check thousands per crop).
            for row in 0..<height {
                let start = first + row * rowBytes
                try part.file.checkChunks(part.pixels, name: "pixels", info: part.info, rows: start..<(start + width * channels),
                                          checked: &checkedChunks[part.index])
            }
            if staging.count < elements { staging = [UInt8](repeating: 0, count: elements) }
            try staging.withUnsafeMutableBytes { bytes in
                try part.file.readHyperslab(part.pixels, name: "pixels", start: [first], stride: [rowBytes], count: [height],
                                            block: [width * channels], memoryType: CHDF5_T_NATIVE_UINT8(), into: bytes.baseAddress!,
                                            what: "a \(height)x\(width) rectangle of image \(index - part.start)")
                let pixels = bytes.bindMemory(to: UInt8.self)
                for i in 0..<elements { destination[i] = Float(pixels[i]) / 255 - 0.5 }
            }
        }
    }

    /// Labels of the images at `indices`, when every file has them.
    public func labels(indices: [Int]) throws -> [Int64] {
        guard hasLabels else { throw DataError("\(paths.joined(separator: ", ")): no 'labels' dataset of shape (N,)") }
        var result = [Int64](repeating: 0, count: indices.count)
        try HDF5Lock.run {
            var position = 0
            while position < indices.count {
                let part = try part(of: indices[position])
                let local = indices[position] - part.start
                // A run of consecutive indices within one file is one selection.
                var run = 1
                while position + run < indices.count, indices[position + run] == indices[position] + run,
                      local + run < part.count { run += 1 }
                let dataset = try part.file.openDataset("labels")
                defer { H5Dclose(dataset) }
                if let info = part.labels {
                    try part.file.checkChunks(dataset, name: "labels", info: info, rows: local..<(local + run),
                                              checked: &checkedLabelChunks[part.index])
                }
                try result.withUnsafeMutableBufferPointer {
                    try part.file.readRows(dataset, name: "labels", rank: 1, start: local, count: run, rowShape: [],
                                           memoryType: CHDF5_T_NATIVE_INT64(), into: $0.baseAddress! + position)
                }
                position += run
            }
        }
        return result
    }

    /// Refuses, before anything is allocated, crops of `cropSize` whose batches in flight need
    /// more than half of this machine's memory (the index was checked when the files were opened).
    public func checkFitsInMemory(batch: Int, bytesPerImageElement: Int, cropSize: Int) throws {
        try checkBatchFitsInMemory(elements: cropSize * cropSize * channels, batch: batch, bytesPerImageElement: bytesPerImageElement,
                                   what: "crops of \(cropSize)x\(cropSize)x\(channels)", path: paths[0])
    }

    /// Side of the centre square of each sampled image that the identity's fingerprint reads.
    static let fingerprintSide = 64

    /// Images per file, `shape` `[0, 0, C]` (no one size), element type uint8, and a fingerprint
    /// of up to 16 images spread evenly over the dataset: each one's height and width, then its
    /// centre `min(64, H) x min(64, W)` pixels as the model sees them.
    public func identity() throws -> DatasetIdentity {
        let sampled = count <= 16 ? Array(0..<count) : (0..<16).map { $0 * (count - 1) / 15 }
        let side = Self.fingerprintSide
        let region = FloatBuffer(count: side * side * channels)
        var hash = bitFingerprintBasis
        for index in sampled {
            let (h, w) = imageSize(index)
            var size: [Float] = [Float(h), Float(w)]
            hash = bitFingerprint(&size, count: 2, continuing: hash)
            let (rh, rw) = (min(side, h), min(side, w))
            try readRegion(index: index, top: (h - rh) / 2, left: (w - rw) / 2, height: rh, width: rw, into: region.pointer)
            hash = bitFingerprint(region.pointer, count: rh * rw * channels, continuing: hash)
        }
        withExtendedLifetime(region) {}
        let digits = String(hash, radix: 16)
        return DatasetIdentity(
            files: zip(paths, fileImageCounts).map { DatasetIdentity.File(path: $0, images: $1) },
            shape: [0, 0, channels], elementType: ElementType.uint8.rawValue, sampledRows: sampled,
            sampleFingerprint: String(repeating: "0", count: 16 - digits.count) + digits)
    }

    /// Writes images of different sizes (`[H*W*C]` bytes each, with their `(H, W, C)`) to a new
    /// file in this layout (for tests and tools): `pixels` in chunks of `chunkBytes`, `shapes` and
    /// `offsets` int64, optional `labels` int64.
    public static func write(path: String, images: [[UInt8]], shapes: [(height: Int, width: Int, channels: Int)],
                             labels: [Int64]? = nil, chunkBytes: Int = 1 << 16) throws {
        precondition(images.count == shapes.count)
        let flat = images.flatMap { $0 }
        var offsets: [Int64] = [0]
        for (image, shape) in zip(images, shapes) {
            precondition(image.count == shape.height * shape.width * shape.channels)
            offsets.append(offsets.last! + Int64(image.count))
        }
        let file = try HDF5File.create(path)
        try flat.withUnsafeBufferPointer {
            try file.writeBytes("pixels", shape: [flat.count], rowsPerChunk: chunkBytes, from: $0.baseAddress!)
        }
        try file.writeInt64("shapes", shape: [shapes.count, 3], values: shapes.flatMap { [Int64($0.height), Int64($0.width), Int64($0.channels)] })
        try file.writeInt64("offsets", values: offsets)
        if let labels { try file.writeInt64("labels", values: labels) }
        try file.close()
    }
}

extension HDF5File {
    /// Whether the file is meant to hold images of different sizes: no `imagesKey` dataset, and
    /// `shapes`, `offsets` or a one-dimensional `pixels` (so that a file missing one of them is
    /// told which, while a file of images of one size stored under the name `pixels` is not).
    func holdsImagesOfDifferentSizes(imagesKey: String) -> Bool {
        guard kind(of: imagesKey) != .dataset else { return false }
        if kind(of: "shapes") == .dataset || kind(of: "offsets") == .dataset { return true }
        return kind(of: "pixels") == .dataset && (try? info("pixels"))?.shape.count == 1
    }
}
