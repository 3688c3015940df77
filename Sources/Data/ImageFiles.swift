import CHDF5
import Model

/// The image files of `--data` or `--val` in either layout of docs/formats.md: images of one size
/// (`images` `(N, H, W, C)`, `ImageDataset`) or of different sizes (`pixels`, `shapes`,
/// `offsets`, `VariableSizeDataset`). Training reads rectangles of them (`CroppedImages`).
public protocol ImageFiles: AnyObject {
    var paths: [String] { get }
    /// Images over all files.
    var count: Int { get }
    var channels: Int { get }
    /// Images in each file, in the order of `paths`.
    var fileImageCounts: [Int] { get }
    /// The one size of every image (the `images` layout), nil for images of different sizes.
    var fixedSize: (height: Int, width: Int)? { get }
    /// Whether every file has labels, one per image.
    var hasLabels: Bool { get }
    /// Height and width of image `index` (global, `0..<count`).
    func imageSize(_ index: Int) -> (height: Int, width: Int)
    /// The image whose shorter side is shortest (the first of them), with its size.
    var smallestImage: (index: Int, height: Int, width: Int) { get }
    /// `image I of FILE` for global index `index`.
    func describeImage(_ index: Int) -> String
    /// Reads the `height x width` rectangle at `(top, left)` of image `index` into `destination`
    /// (`[height, width, C]`), normalised like whole images (`v/255 - 0.5`, float32 `v - 0.5`).
    func readRegion(index: Int, top: Int, left: Int, height: Int, width: Int, into destination: UnsafeMutablePointer<Float>) throws
    /// What identifies the data in a checkpoint (`DatasetIdentity`).
    func identity() throws -> DatasetIdentity
}

/// Opens `paths` in the layout of the first file: `images` (or `imagesKey`) when it has that
/// dataset, else `pixels`, `shapes` and `offsets` when it has `pixels`. The other files must use
/// the same layout.
public func openImageFiles(paths: [String], imagesKey: String = "images") throws -> any ImageFiles {
    guard let first = paths.first else { throw DataError("no dataset file given (use --data FILE)") }
    if try VariableSizeDataset.isVariableSize(path: first, imagesKey: imagesKey) {
        return try VariableSizeDataset(paths: paths)
    }
    return try ImageDataset(paths: paths, imagesKey: imagesKey)
}

/// Refuses, before anything is allocated, a batch of `batch` images of `elements` values each
/// that needs more than half of this machine's memory at `bytesPerImageElement` bytes per value.
func checkBatchFitsInMemory(elements: Int, batch: Int, bytesPerImageElement: Int, what: String, path: String) throws {
    let memory = physicalMemoryBytes
    let (perImage, overflowImage) = elements.multipliedReportingOverflow(by: bytesPerImageElement)
    let (perBatch, overflowBatch) = perImage.multipliedReportingOverflow(by: max(batch, 1))
    if overflowImage || overflowBatch || perBatch > memory / 2 {
        throw DataError("\(path): \(what) are too large: a batch of \(batch) needs about \(describeBytes(Double(elements) * Double(bytesPerImageElement) * Double(batch))), more than this machine's \(describeBytes(Double(memory)))")
    }
}

extension ImageDataset: ImageFiles {
    public var fixedSize: (height: Int, width: Int)? { (height, width) }
    public func imageSize(_ index: Int) -> (height: Int, width: Int) { (height, width) }
    public var smallestImage: (index: Int, height: Int, width: Int) { (0, height, width) }

    public func describeImage(_ index: Int) -> String {
        var start = 0
        for (path, count) in zip(paths, fileImageCounts) {
            if index < start + count { return "image \(index - start) of \(path)" }
            start += count
        }
        return "image \(index)"
    }

    public func readRegion(index: Int, top: Int, left: Int, height regionHeight: Int, width regionWidth: Int,
                           into destination: UnsafeMutablePointer<Float>) throws {
        guard top >= 0, left >= 0, regionHeight >= 1, regionWidth >= 1, top + regionHeight <= height, left + regionWidth <= width else {
            throw DataError("\(describeImage(index)): the \(regionHeight)x\(regionWidth) rectangle at (\(top), \(left)) is outside its \(height)x\(width) pixels")
        }
        try HDF5Lock.run { try readRegionLocked(index: index, top: top, left: left, height: regionHeight, width: regionWidth, into: destination) }
    }
}
