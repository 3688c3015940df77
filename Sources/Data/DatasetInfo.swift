/// Element types this project reads and writes.
public enum ElementType: String, Sendable {
    case uint8, int8, int16, uint16, int32, uint32, int64, uint64, float32, float64, string, other

    var isInteger: Bool {
        switch self {
        case .uint8, .int8, .int16, .uint16, .int32, .uint32, .int64, .uint64: return true
        default: return false
        }
    }
}

/// What a dataset holds, from its header, checked against the file (see `HDF5File.info`).
public struct DatasetInfo: Sendable {
    public let shape: [Int]
    public let elementType: ElementType
    /// Chunk shape, or nil for contiguous storage.
    public let chunks: [Int]?
    public let filters: [String]
    /// Values in the dataset (the product of `shape`).
    public let elementCount: Int
    /// Bytes of one value in the file.
    public let elementSize: Int
    /// Bytes the dataset occupies in the file (compressed size for filtered chunks; 0 when nothing
    /// has been written, which reads as the fill value).
    public let storedBytes: Int
    /// Whether every entry of the chunk index was checked when the dataset was opened, so that
    /// reads need not check the chunks they touch.
    var chunkIndexChecked = false
}
