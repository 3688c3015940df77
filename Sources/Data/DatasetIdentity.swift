import Model

/// What identifies the data a run trains on, cheaply: per file its path, image count and element
/// type, the image shape, and a fingerprint of a sample of rows (up to 16, spread evenly over the
/// whole dataset) as the model sees them. Stored in checkpoints so that a resume on other data of
/// the same size is noticed; equal for a copy of the files, different after almost any edit of the
/// sampled rows or of the shape.
public struct DatasetIdentity: Codable, Equatable, Sendable {
    public struct File: Codable, Equatable, Sendable {
        public var path: String
        public var images: Int
    }
    public var files: [File]
    public var shape: [Int]
    public var elementType: String
    /// The sampled rows' indices.
    public var sampledRows: [Int]
    /// FNV-1a over the sampled rows' normalised floats, as 16 hexadecimal digits.
    public var sampleFingerprint: String

    /// What differs from `other`, in words (empty when they agree); paths are not compared (the
    /// same files may be mounted elsewhere).
    public func differences(from other: DatasetIdentity) -> [String] {
        var found: [String] = []
        if files.map(\.images) != other.files.map(\.images) {
            found.append("images per file \(files.map(\.images)) vs \(other.files.map(\.images))")
        }
        if shape != other.shape { found.append("image shape \(shape) vs \(other.shape)") }
        if elementType != other.elementType { found.append("element type \(elementType) vs \(other.elementType)") }
        if sampledRows == other.sampledRows && sampleFingerprint != other.sampleFingerprint {
            found.append("the pixels of sampled images differ")
        }
        return found
    }
}

extension ImageDataset {
    /// This dataset's identity (reads up to 16 rows, one at a time: call after the memory check
    /// that a batch fits).
    public func identity() throws -> DatasetIdentity {
        let sampled = count <= 16 ? Array(0..<count) : (0..<16).map { $0 * (count - 1) / 15 }
        let row = FloatBuffer(count: imageElements)
        var hash = bitFingerprintBasis
        for index in sampled {
            try read(indices: [index], into: row.pointer)
            hash = bitFingerprint(row.pointer, count: imageElements, continuing: hash)
        }
        withExtendedLifetime(row) {}
        let digits = String(hash, radix: 16)
        return DatasetIdentity(
            files: zip(paths, fileImageCounts).map { DatasetIdentity.File(path: $0, images: $1) },
            shape: [height, width, channels], elementType: elementType.rawValue, sampledRows: sampled,
            sampleFingerprint: String(repeating: "0", count: 16 - digits.count) + digits)
    }
}
