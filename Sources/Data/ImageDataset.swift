import CHDF5
#if canImport(Glibc)
import Glibc
import Model
#endif

/// An image dataset of spec/dataset.md: one or more HDF5 files, each with `images` `(N, H, W, C)`
/// (C 1 or 3, uint8 0..255 or float32 0..1), concatenated in the order given.
///
/// Everything is validated when the dataset is opened; reads fetch only the requested samples
/// (hyperslab selections along N) and return them normalised as spec/model.md says:
/// `v/255 - 0.5` for uint8 and `v - 0.5` for float32, NHWC `[count, H, W, C]`.
public final class ImageDataset {
    public let paths: [String]
    public let imagesKey: String
    public let count: Int
    public let height: Int
    public let width: Int
    public let channels: Int
    public let elementType: ElementType
    public let chunks: [Int]?
    public let filters: [String]
    /// Whether every file has a `labels` dataset of shape `(N,)`.
    public let hasLabels: Bool

    private struct Part {
        let file: HDF5File
        let dataset: hid_t
        let info: DatasetInfo
        let labels: DatasetInfo?
        /// Position in `parts`.
        let index: Int
        let start: Int
        let count: Int
    }
    /// Chunks of each part's images and labels already checked (`HDF5File.checkChunks`).
    private var checkedImageChunks: [Set<Int>]
    private var checkedLabelChunks: [Set<Int>]
    private let parts: [Part]
    private var staging: [UInt8] = []

    /// Opens and validates every file. Not thread-safe with other HDF5 use; call before starting
    /// a prefetch thread.
    public init(paths: [String], imagesKey: String = "images") throws {
        guard !paths.isEmpty else { throw DataError("no dataset file given (use --data FILE)") }
        var parts: [Part] = []
        var shape: [Int]?
        var type: ElementType?
        var firstInfo: DatasetInfo?
        var labels = true
        var total = 0
        // The datasets opened so far are closed again when a later check fails.
        var finished = false
        defer { if !finished { for part in parts { H5Dclose(part.dataset) } } }
        for path in paths {
            let file = try HDF5File.open(path)
            guard file.kind(of: imagesKey) == .dataset else {
                if file.holdsImagesOfDifferentSizes(imagesKey: imagesKey) {
                    throw DataError(paths.count > 1 && path != paths[0]
                        ? "\(path): holds images of different sizes ('pixels', 'shapes', 'offsets') but \(paths[0]) holds '\(imagesKey)' of one size; all files must use one layout"
                        : "\(path): holds images of different sizes ('pixels', 'shapes', 'offsets'); this command reads images of one size ('\(imagesKey)' (N, H, W, C)); train takes such files with --crop S")
                }
                throw DataError("\(path): no dataset '\(imagesKey)' (spec: images of shape (N, H, W, C); see --images-key)")
            }
            let info = try file.info(imagesKey)
            guard info.shape.count == 4 else {
                throw DataError("\(path): '\(imagesKey)' has shape \(info.shape); expected 4 dimensions (N, H, W, C)")
            }
            guard info.shape[3] == 1 || info.shape[3] == 3 else {
                throw DataError("\(path): '\(imagesKey)' has \(info.shape[3]) channels (shape \(info.shape)); expected C = 1 or 3 in (N, H, W, C)")
            }
            guard info.elementType == .uint8 || info.elementType == .float32 else {
                throw DataError("\(path): '\(imagesKey)' has dtype \(info.elementType.rawValue); expected uint8 or float32")
            }
            guard info.shape[1] > 0, info.shape[2] > 0 else {
                throw DataError("\(path): '\(imagesKey)' has empty images (shape \(info.shape))")
            }
            if let shape, let type {
                guard Array(info.shape.dropFirst()) == shape else {
                    throw DataError("\(path): images are \(info.shape.dropFirst().map(String.init).joined(separator: "x")) but \(paths[0]) has \(shape.map(String.init).joined(separator: "x")); all files must agree")
                }
                guard info.elementType == type else {
                    throw DataError("\(path): dtype \(info.elementType.rawValue) differs from \(paths[0]) (\(type.rawValue)); all files must agree")
                }
            } else {
                shape = Array(info.shape.dropFirst())
                type = info.elementType
                firstInfo = info
            }
            let labelInfo = file.kind(of: "labels") == .dataset ? try? file.info("labels") : nil
            if labelInfo?.shape != [info.shape[0]] || labelInfo?.elementType.isInteger != true { labels = false }
            let (sum, overflow) = total.addingReportingOverflow(info.shape[0])
            guard !overflow else { throw DataError("\(path): the files together claim more images than can be counted") }
            let dataset = try file.openDataset(imagesKey)
            parts.append(Part(file: file, dataset: dataset, info: info, labels: labelInfo, index: parts.count, start: total, count: info.shape[0]))
            total = sum
        }
        guard total > 0 else { throw DataError("\(paths.joined(separator: ", ")): the dataset holds no images") }
        finished = true
        self.paths = paths
        self.imagesKey = imagesKey
        self.parts = parts
        checkedImageChunks = Array(repeating: [], count: parts.count)
        checkedLabelChunks = Array(repeating: [], count: parts.count)
        count = total
        height = shape![0]
        width = shape![1]
        channels = shape![2]
        elementType = type!
        chunks = firstInfo?.chunks
        filters = firstInfo?.filters ?? []
        hasLabels = labels
    }

    deinit { HDF5Lock.run { for part in parts { H5Dclose(part.dataset) } } }

    /// Images in each file, in the order of `paths`.
    public var fileImageCounts: [Int] { parts.map(\.count) }

    /// Refuses, before anything is allocated, a dataset whose header describes more than this
    /// machine can hold: the sampler keeps one index per image, and training keeps about
    /// `bytesPerImageElement` bytes per image element of a batch (inputs, activations, gradients).
    public func checkFitsInMemory(batch: Int, bytesPerImageElement: Int, cropSize: Int? = nil) throws {
        let memory = physicalMemoryBytes
        let (indexBytes, overflowN) = count.multipliedReportingOverflow(by: 2 * MemoryLayout<Int>.stride)
        if overflowN || indexBytes > memory / 2 {
            throw DataError("\(paths.joined(separator: ", ")): the header claims \(count) images; indexing them needs \(describeBytes(Double(count) * 16)), more than this machine's \(describeBytes(Double(memory)))")
        }
        if let cropSize {
            try checkBatchFitsInMemory(elements: cropSize * cropSize * channels, batch: batch, bytesPerImageElement: bytesPerImageElement,
                                       what: "crops of \(cropSize)x\(cropSize)x\(channels)", path: paths[0])
            // The data's identity reads whole images, one at a time, as floats.
            try checkBatchFitsInMemory(elements: imageElements, batch: 1, bytesPerImageElement: 4,
                                       what: "images of \(height)x\(width)x\(channels)", path: paths[0])
            return
        }
        let (perImage, overflowImage) = imageElements.multipliedReportingOverflow(by: bytesPerImageElement)
        let (perBatch, overflowBatch) = perImage.multipliedReportingOverflow(by: max(batch, 1))
        if overflowImage || overflowBatch || perBatch > memory / 2 {
            throw DataError("\(paths[0]): images of \(height)x\(width)x\(channels) are too large: a batch of \(batch) needs about \(describeBytes(Double(imageElements) * Double(bytesPerImageElement) * Double(batch))), more than this machine's \(describeBytes(Double(memory)))")
        }
    }

    /// Reads the samples at global `indices` into `destination` `[indices.count, H, W, C]`,
    /// normalised. Consecutive indices within a file are read with one selection.
    public func read(indices: [Int], into destination: UnsafeMutablePointer<Float>) throws {
        try HDF5Lock.run { try readLocked(indices: indices, into: destination) }
    }

    private func readLocked(indices: [Int], into destination: UnsafeMutablePointer<Float>) throws {
        let rowShape = [height, width, channels]
        let elements = imageElements
        if elementType == .uint8 && staging.count < indices.count * elements {
            staging = [UInt8](repeating: 0, count: indices.count * elements)
        }
        try forEachRun(of: indices) { part, local, run, position in
            try part.file.checkChunks(part.dataset, name: imagesKey, info: part.info, rows: local..<(local + run),
                                      checked: &checkedImageChunks[part.index])
            let target = destination + position * elements
            if elementType == .float32 {
                try part.file.readRows(part.dataset, name: imagesKey, rank: 4, start: local, count: run, rowShape: rowShape,
                                       memoryType: CHDF5_T_NATIVE_FLOAT(), into: target)
                for i in 0..<(run * elements) { target[i] = target[i] - 0.5 }
            } else {
                try staging.withUnsafeMutableBytes { bytes in
                    let base = bytes.baseAddress! + position * elements
                    try part.file.readRows(part.dataset, name: imagesKey, rank: 4, start: local, count: run, rowShape: rowShape,
                                           memoryType: CHDF5_T_NATIVE_UINT8(), into: base)
                    let pixels = base.assumingMemoryBound(to: UInt8.self)
                    for i in 0..<(run * elements) { target[i] = Float(pixels[i]) / 255 - 0.5 }
                }
            }
        }
    }

    func readRegionLocked(index: Int, top: Int, left: Int, height regionHeight: Int, width regionWidth: Int,
                          into destination: UnsafeMutablePointer<Float>) throws {
        let elements = regionHeight * regionWidth * channels
        try forEachRun(of: [index]) { part, local, _, _ in
            try part.file.checkChunks(part.dataset, name: imagesKey, info: part.info, rows: local..<(local + 1),
                                      checked: &checkedImageChunks[part.index])
            let start = [local, top, left, 0], count = [1, regionHeight, regionWidth, channels]
            let what = "a \(regionHeight)x\(regionWidth) rectangle of image \(local)"
            if elementType == .float32 {
                try part.file.readHyperslab(part.dataset, name: imagesKey, start: start, count: count,
                                            memoryType: CHDF5_T_NATIVE_FLOAT(), into: destination, what: what)
                for i in 0..<elements { destination[i] -= 0.5 }
            } else {
                if staging.count < elements { staging = [UInt8](repeating: 0, count: elements) }
                try staging.withUnsafeMutableBytes { bytes in
                    try part.file.readHyperslab(part.dataset, name: imagesKey, start: start, count: count,
                                                memoryType: CHDF5_T_NATIVE_UINT8(), into: bytes.baseAddress!, what: what)
                    let pixels = bytes.bindMemory(to: UInt8.self)
                    for i in 0..<elements { destination[i] = Float(pixels[i]) / 255 - 0.5 }
                }
            }
        }
    }

    /// Calls `body(part, first row in the part, rows, position in indices)` for each run of
    /// consecutive `indices` within one file, so each run is one selection.
    private func forEachRun(of indices: [Int], _ body: (Part, Int, Int, Int) throws -> Void) throws {
        var position = 0
        while position < indices.count {
            let first = indices[position]
            guard first >= 0 && first < count else { throw DataError("sample index \(first) is outside the dataset (N = \(count))") }
            let part = parts.last { $0.start <= first }!
            var run = 1
            while position + run < indices.count, indices[position + run] == first + run,
                  first + run < part.start + part.count { run += 1 }
            try body(part, first - part.start, run, position)
            position += run
        }
    }

    /// Labels of the samples at `indices`, when every file has them.
    public func labels(indices: [Int]) throws -> [Int64] {
        try HDF5Lock.run { try labelsLocked(indices: indices) }
    }

    private func labelsLocked(indices: [Int]) throws -> [Int64] {
        guard hasLabels else { throw DataError("\(paths.joined(separator: ", ")): no 'labels' dataset of shape (N,)") }
        var result = [Int64](repeating: 0, count: indices.count)
        try result.withUnsafeMutableBufferPointer { values in
            try forEachRun(of: indices) { part, local, run, position in
                let dataset = try part.file.openDataset("labels")
                defer { H5Dclose(dataset) }
                if let info = part.labels {
                    try part.file.checkChunks(dataset, name: "labels", info: info, rows: local..<(local + run),
                                              checked: &checkedLabelChunks[part.index])
                }
                try part.file.readRows(dataset, name: "labels", rank: 1, start: local, count: run, rowShape: [],
                                       memoryType: CHDF5_T_NATIVE_INT64(), into: values.baseAddress! + position)
            }
        }
        return result
    }

    /// Writes images `[N, H, W, C]` as uint8 to a new file (for tests and tools), chunked by 64 rows.
    public static func writeUInt8(path: String, images: [UInt8], shape: [Int], labels: [Int64]? = nil) throws {
        precondition(shape.count == 4 && images.count == shape.reduce(1, *))
        let file = try HDF5File.create(path)
        try images.withUnsafeBufferPointer { try file.writeBytes("images", shape: shape, rowsPerChunk: 64, from: $0.baseAddress!) }
        if let labels { try file.writeInt64("labels", values: labels) }
        try file.close()
    }
}

extension HDF5File {
    /// Writes a 1-D int64 dataset.
    func writeInt64(_ name: String, values: [Int64]) throws {
        try writeInt64(name, shape: [values.count], values: values)
    }
}
