import CHDF5
#if canImport(Glibc)
import Glibc
#endif

/// A problem with a dataset or checkpoint file, worded for the user.
public struct DataError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

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

extension DatasetInfo {
    /// Whether the file holds every value: at least their bytes without compression, or at least
    /// 1/1032 of them with gzip (deflate's largest ratio). A dataset that fails this has unwritten
    /// chunks (which read as the fill value) or a damaged header; reading it would allocate what
    /// the header claims, not what the file holds.
    var storesEveryValue: Bool {
        let needed = elementCount * elementSize
        if filters.contains("gzip") { return storedBytes > 0 && needed / 1032 <= storedBytes }
        return storedBytes >= needed
    }
}

/// zlib's `uncompress`, from the zlib that libhdf5 loads for its deflate filter (the same library
/// that will inflate the chunk when libhdf5 reads it).
enum Zlib {
    private typealias Uncompress = @convention(c) (UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt>?,
                                                   UnsafePointer<UInt8>?, UInt) -> Int32
    private static let uncompress: Uncompress? = {
        guard let library = dlopen("libz.so.1", RTLD_NOW), let symbol = dlsym(library, "uncompress") else { return nil }
        return unsafeBitCast(symbol, to: Uncompress.self)
    }()

    /// The size `count` bytes of zlib data inflate to, when that is at most `expected`; one byte
    /// more is `expected + 1`. Nil for data that is not zlib's (or when zlib cannot be loaded).
    static func inflatedSize(_ data: [UInt8], count: Int, expected: Int) -> Int? {
        guard let uncompress, count <= data.count else { return nil }
        var output = [UInt8](repeating: 0, count: expected + 1)
        var length = UInt(output.count)
        let status = uncompress(&output, &length, data, UInt(count))
        if status == -5 { return expected + 1 }  // Z_BUF_ERROR: more than fits
        return status == 0 ? Int(length) : nil
    }
}

/// Limits on what a file's header may claim, checked before anything is allocated or read.
enum HDF5Limits {
    /// Largest chunk accepted, in bytes. Reading any value of a chunk decompresses all of it, so a
    /// larger chunk makes every random read of a sample that expensive; h5py's guidance is 10 KiB
    /// to 1 MiB, HDF5's own limit 4 GiB.
    static let chunkBytes = 256 << 20
    /// Dimensions of a dataset.
    static let rank = 32
    /// Chunk indexes checked whole when a dataset is opened (`HDF5File.checkChunkIndex`).
    static let indexedChunks: hsize_t = 4096
    /// Longest object name listed.
    static let nameBytes = 1 << 16
}

/// One open HDF5 file. The only type that calls the HDF5 C API; every status is checked and turned
/// into a `DataError` naming the file and object. HDF5's own error printing is silenced.
final class HDF5File {
    let path: String
    private(set) var id: hid_t
    let writable: Bool
    /// Size of the file on disk when it was opened for reading: no dataset of it can store more.
    private(set) var fileSize: Int?

    private static let silenced: Bool = { CHDF5_silence_errors() >= 0 }()

    private init(path: String, id: hid_t, writable: Bool) {
        self.path = path
        self.id = id
        self.writable = writable
    }

    deinit { if id >= 0 { H5Fclose(id) } }

    /// HDF5 files, datasets, groups, named types and attributes open in this process: every
    /// reader closes what it opened, also when it throws.
    static var openObjectCount: Int {
        let all = UInt32(H5F_OBJ_FILE | H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_DATATYPE | H5F_OBJ_ATTR)
        return H5Fget_obj_count(hid_t(all), all)
    }

    static func open(_ path: String) throws -> HDF5File {
        _ = silenced
        var status = stat()
        guard stat(path, &status) == 0 else { throw DataError("\(path): no such file") }
        guard (status.st_mode & S_IFMT) == S_IFREG else { throw DataError("\(path): not a regular file") }
        guard H5Fis_hdf5(path) > 0 else { throw DataError("\(path): not an HDF5 file (or it is truncated or damaged)") }
        try HDF5Structure.check(path: path, fileSize: Int(status.st_size))
        let id = H5Fopen(path, CHDF5_F_ACC_RDONLY(), CHDF5_P_DEFAULT())
        guard id >= 0 else { throw DataError("\(path): cannot open as HDF5 (damaged or unreadable)") }
        let file = HDF5File(path: path, id: id, writable: false)
        file.fileSize = Int(status.st_size)
        return file
    }

    /// Creates (truncating) a file for writing.
    static func create(_ path: String) throws -> HDF5File {
        _ = silenced
        let id = H5Fcreate(path, CHDF5_F_ACC_TRUNC(), CHDF5_P_DEFAULT(), CHDF5_P_DEFAULT())
        guard id >= 0 else { throw DataError("\(path): cannot create HDF5 file (check the folder exists and is writable)") }
        return HDF5File(path: path, id: id, writable: true)
    }

    /// Creates a file that lives in memory only (HDF5's core driver without a backing store), so
    /// that no disk error can reach HDF5; `image()` returns its bytes. `name` is used in messages.
    static func createInMemory(name: String) throws -> HDF5File {
        _ = silenced
        let access = H5Pcreate(CHDF5_P_FILE_ACCESS())
        guard access >= 0 else { throw DataError("\(name): cannot create a file access property list") }
        defer { H5Pclose(access) }
        guard H5Pset_fapl_core(access, 1 << 20, false) >= 0 else { throw DataError("\(name): HDF5's in-memory driver is unavailable") }
        let id = H5Fcreate(name, CHDF5_F_ACC_TRUNC(), CHDF5_P_DEFAULT(), access)
        guard id >= 0 else { throw DataError("\(name): cannot create an HDF5 file in memory") }
        return HDF5File(path: name, id: id, writable: true)
    }

    /// The bytes of the whole file, exactly as they would be on disk (H5Fget_file_image).
    func image() throws -> [UInt8] {
        try flush()
        let size = H5Fget_file_image(id, nil, 0)
        guard size > 0 else { throw DataError("\(path): cannot read the file image back from HDF5") }
        var bytes = [UInt8](repeating: 0, count: size)
        let copied = bytes.withUnsafeMutableBytes { H5Fget_file_image(id, $0.baseAddress, size) }
        guard copied == size else { throw DataError("\(path): cannot read the file image back from HDF5") }
        return bytes
    }

    func flush() throws {
        guard H5Fflush(id, H5F_SCOPE_GLOBAL) >= 0 else { throw DataError("\(path): flushing to disk failed") }
    }

    func close() throws {
        guard id >= 0 else { return }
        let status = H5Fclose(id)
        id = -1
        guard status >= 0 else { throw DataError("\(path): closing failed (disk full or I/O error?)") }
    }

    // MARK: Objects

    enum ObjectKind { case dataset, group, other }

    func kind(of name: String) -> ObjectKind? {
        switch CHDF5_object_kind(id, name) {
        case 1: return .dataset
        case 2: return .group
        case 0: return .other
        default: return nil
        }
    }

    /// Names of the members of a group.
    func members(of group: String) -> [String] {
        let gid = H5Gopen2(id, group, CHDF5_P_DEFAULT())
        guard gid >= 0 else { return [] }
        defer { H5Gclose(gid) }
        var info = H5G_info_t()
        guard H5Gget_info(gid, &info) >= 0 else { return [] }
        var names: [String] = []
        // The link count comes from the file: stop at the first link that cannot be read rather
        // than asking for billions that are not there.
        for i in 0..<info.nlinks {
            let size = H5Lget_name_by_idx(gid, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, CHDF5_P_DEFAULT())
            guard size >= 0 else { break }
            guard size <= HDF5Limits.nameBytes else { continue }
            var buffer = [CChar](repeating: 0, count: Int(size) + 1)
            guard H5Lget_name_by_idx(gid, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buffer, Int(size) + 1, CHDF5_P_DEFAULT()) >= 0 else { break }
            names.append(String(cString: buffer))
        }
        return names
    }

    /// Where the object at `name` lives in the file (its header's address), which tells two links
    /// to one object apart from two objects; nil when it cannot be read.
    func objectAddress(of name: String) -> UInt64? {
        var info = H5O_info_t()
        guard H5Oget_info_by_name2(id, name, &info, UInt32(H5O_INFO_BASIC), CHDF5_P_DEFAULT()) >= 0 else { return nil }
        return UInt64(info.addr)
    }

    // MARK: Datasets

    func openDataset(_ name: String) throws -> hid_t {
        guard kind(of: name) == .dataset else { throw DataError("\(path): no dataset '\(name)'") }
        let dataset = H5Dopen2(id, name, CHDF5_P_DEFAULT())
        guard dataset >= 0 else { throw DataError("\(path): cannot open dataset '\(name)'") }
        return dataset
    }

    /// The header of dataset `name`, checked before anything is read: a shape whose sizes overflow,
    /// a chunk larger than `HDF5Limits.chunkBytes`, stored data larger than the file, or compact or
    /// contiguous data of another size than the shape needs is refused as damaged. (libhdf5 1.10
    /// trusts some of these and reads past its buffers.)
    func info(_ name: String) throws -> DatasetInfo {
        let dataset = try openDataset(name)
        defer { H5Dclose(dataset) }
        let damaged = { (what: String) in DataError("\(self.path): '\(name)' is damaged or unsupported (\(what))") }
        let space = H5Dget_space(dataset)
        guard space >= 0 else { throw DataError("\(path): cannot read the shape of '\(name)'") }
        defer { H5Sclose(space) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        guard rank >= 0 && rank <= HDF5Limits.rank else { throw DataError("\(path): '\(name)' has an invalid shape") }
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        var maximumDims = [hsize_t](repeating: 0, count: max(rank, 1))
        guard H5Sget_simple_extent_dims(space, &dims, &maximumDims) >= 0 else { throw DataError("\(path): cannot read the shape of '\(name)'") }
        // Every product of sizes must fit: zero-length dimensions count as 1 so that an empty
        // dataset cannot hide rows of impossible size.
        var shape: [Int] = []
        var bound = 1
        for (dim, limit) in zip(dims.prefix(rank), maximumDims.prefix(rank)) where dim > limit {
            throw damaged("a dimension of \(dim) beyond its maximum of \(limit)")
        }
        for dim in dims.prefix(rank) {
            guard let size = Int(exactly: dim) else { throw damaged("a dimension of \(dim)") }
            let (product, overflow) = bound.multipliedReportingOverflow(by: max(size, 1))
            guard !overflow else { throw damaged("shape \(dims.prefix(rank).map { String($0) }) is too large to address") }
            bound = product
            shape.append(size)
        }
        let elementCount = shape.reduce(1, *)
        let type = H5Dget_type(dataset)
        guard type >= 0 else { throw damaged("unreadable element type") }
        defer { H5Tclose(type) }
        let elementSize = H5Tget_size(type)
        guard elementSize > 0, elementCount.multipliedReportingOverflow(by: elementSize).overflow == false,
              bound.multipliedReportingOverflow(by: elementSize).overflow == false else {
            throw damaged("elements of \(elementSize) bytes")
        }
        let plist = H5Dget_create_plist(dataset)
        guard plist >= 0 else { throw damaged("unreadable storage layout") }
        defer { H5Pclose(plist) }
        let stored = H5Dget_storage_size(dataset)
        guard let storedBytes = Int(exactly: stored), storedBytes <= fileSize ?? Int.max else {
            throw damaged("\(stored) bytes of data in a file of \(fileSize ?? 0) bytes")
        }
        var chunks: [Int]?
        switch H5Pget_layout(plist) {
        case H5D_COMPACT:
            guard storedBytes == elementCount * elementSize else {
                throw damaged("\(storedBytes) bytes of compact data for \(elementCount) values of \(elementSize) bytes")
            }
        case H5D_CONTIGUOUS:
            guard H5Pget_external_count(plist) == 0 else { throw damaged("data in external files") }
            guard storedBytes == 0 || storedBytes == elementCount * elementSize else {
                throw damaged("\(storedBytes) bytes of contiguous data for \(elementCount) values of \(elementSize) bytes")
            }
        case H5D_CHUNKED:
            var chunkDims = [hsize_t](repeating: 0, count: max(rank, 1))
            guard H5Pget_chunk(plist, Int32(rank), &chunkDims) == rank else { throw damaged("chunk rank differs from the shape") }
            // HDF5 creates no chunk longer than a fixed-size dimension; 1.10 reads past its buffer
            // when a damaged header says otherwise.
            for (chunk, limit) in zip(chunkDims.prefix(rank), maximumDims.prefix(rank)) where limit != hsize_t.max && chunk > limit {
                throw damaged("chunks of \(chunkDims.prefix(rank).map { String($0) }.joined(separator: "x")) exceed the maximum shape \(maximumDims.prefix(rank).map { $0 == hsize_t.max ? "unlimited" : String($0) }.joined(separator: "x"))")
            }
            var chunkBytes = elementSize
            for dim in chunkDims.prefix(rank) {
                let (product, overflow) = chunkBytes.multipliedReportingOverflow(by: Int(exactly: dim) ?? Int.max)
                guard dim > 0, !overflow, product <= HDF5Limits.chunkBytes else {
                    throw DataError("\(path): '\(name)' has chunks of \(chunkDims.prefix(rank).map { String($0) }.joined(separator: "x")) values of \(elementSize) bytes; this reader accepts chunks of up to \(HDF5Limits.chunkBytes >> 20) MiB (rewrite the file with smaller chunks, e.g. h5repack -l \(name):CHUNK=...)")
                }
                chunkBytes = product
            }
            chunks = chunkDims.prefix(rank).map { Int($0) }
        default:
            throw damaged("virtual or unknown storage layout")
        }
        var filters: [String] = []
        let filterCount = H5Pget_nfilters(plist)
        if filterCount > 0 {
            for i in 0..<UInt32(filterCount) {
                var flags: UInt32 = 0
                var elements = 8
                var values = [UInt32](repeating: 0, count: 8)
                var nameBuffer = [CChar](repeating: 0, count: 64)
                var config: UInt32 = 0
                let filter = H5Pget_filter2(plist, i, &flags, &elements, &values, 64, &nameBuffer, &config)
                nameBuffer[63] = 0
                switch filter {
                case H5Z_FILTER_DEFLATE: filters.append("gzip")
                case H5Z_FILTER_FLETCHER32: filters.append("fletcher32")
                case H5Z_FILTER_SHUFFLE: filters.append("shuffle")
                default: filters.append(String(cString: nameBuffer).isEmpty ? "filter-\(filter)" : String(cString: nameBuffer))
                }
            }
        }
        var result = DatasetInfo(shape: shape, elementType: Self.elementType(type), chunks: chunks, filters: filters,
                                 elementCount: elementCount, elementSize: elementSize, storedBytes: storedBytes)
        if chunks != nil { result.chunkIndexChecked = try checkChunkIndex(dataset, name: name, info: result) }
        return result
    }

    /// Checks every entry of a chunked dataset's chunk index when there are at most
    /// `HDF5Limits.indexedChunks` (libhdf5 1.10 finds the i-th chunk by walking the index, so the
    /// cost grows with the square of the count): each chunk starts on a chunk boundary inside the
    /// shape, once, and lies inside the file with the size `checkChunks` expects. libhdf5 1.10
    /// reads past its buffers for a damaged index. Larger indexes are checked chunk by chunk as
    /// rows are read (`checkChunks`).
    /// Returns whether the whole index was checked.
    private func checkChunkIndex(_ dataset: hid_t, name: String, info: DatasetInfo) throws -> Bool {
        guard let chunks = info.chunks, !info.shape.contains(0) else { return true }
        let damaged = { (what: String) in DataError("\(self.path): '\(name)' is damaged (\(what))") }
        let space = H5Dget_space(dataset)
        guard space >= 0 else { throw damaged("no shape") }
        defer { H5Sclose(space) }
        var count: hsize_t = 0
        guard H5Dget_num_chunks(dataset, space, &count) >= 0 else { throw damaged("the index of its chunks cannot be read") }
        let grid = zip(info.shape, chunks).map { ($0 + $1 - 1) / $1 }
        let gridCount = grid.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
        guard count <= hsize_t(gridCount) else { throw damaged("\(count) chunks where \(gridCount) fit") }
        guard count <= HDF5Limits.indexedChunks else { return false }
        var seen = Set<Int>()
        var offset = [hsize_t](repeating: 0, count: chunks.count)
        for i in 0..<count {
            var mask: UInt32 = 0
            var address: haddr_t = 0
            var size: hsize_t = 0
            guard H5Dget_chunk_info(dataset, space, i, &offset, &mask, &address, &size) >= 0 else {
                throw damaged("chunk \(i) of its index cannot be read")
            }
            var index = 0
            for (dimension, start) in offset.enumerated() {
                guard let start = Int(exactly: start), start % chunks[dimension] == 0, start < info.shape[dimension] else {
                    throw damaged("a chunk starts at \(offset), not on a chunk boundary inside the shape")
                }
                index = index * grid[dimension] + start / chunks[dimension]
            }
            guard seen.insert(index).inserted else { throw damaged("two chunks start at \(offset)") }
            try checkChunkStorage(name: name, info: info, offset: offset, mask: mask, address: address, size: size, dataset: nil)
        }
        return true
    }

    /// A written chunk must lie inside the file and, without compression, hold one chunk of values
    /// (plus the Fletcher-32 checksum when that filter ran on it). With `dataset`, a gzip chunk is
    /// read raw and inflated: it must inflate to exactly one chunk of values (libhdf5 1.10 accepts
    /// fewer and then copies a whole chunk's worth out of them).
    private func checkChunkStorage(name: String, info: DatasetInfo, offset: [hsize_t], mask: UInt32,
                                   address: haddr_t, size: hsize_t, dataset: hid_t?) throws {
        guard address != haddr_t.max, let chunks = info.chunks else { return }
        let fileSize = fileSize ?? Int.max
        guard let bytes = Int(exactly: size), bytes <= fileSize, let start = Int(exactly: address), start <= fileSize - bytes else {
            throw DataError("\(path): '\(name)' is damaged (a chunk of \(size) bytes at \(address) lies outside the file of \(fileSize) bytes)")
        }
        let compressed = info.filters.contains { $0 != "fletcher32" && $0 != "shuffle" }
        let checksumBit = info.filters.firstIndex(of: "fletcher32").map { UInt32(1) << UInt32($0) }
        let expected = chunks.reduce(info.elementSize, *) + (checksumBit.map { mask & $0 == 0 ? 4 : 0 } ?? 0)
        guard compressed || bytes == expected else {
            throw DataError("\(path): '\(name)' is damaged (the chunk at \(offset) holds \(bytes) bytes instead of \(expected))")
        }
        guard let dataset, compressed, info.filters.allSatisfy({ ["gzip", "shuffle", "fletcher32"].contains($0) }) else { return }
        // Undo the filters in reverse order: the checksum's 4 bytes, then gzip (shuffle keeps the size).
        var raw = [UInt8](repeating: 0, count: max(bytes, 1))
        var rawMask: UInt32 = 0
        var chunkOffset = offset
        guard H5Dread_chunk(dataset, CHDF5_P_DEFAULT(), &chunkOffset, &rawMask, &raw) >= 0 else {
            throw DataError("\(path): '\(name)' is damaged (the chunk at \(offset) cannot be read)")
        }
        var length = bytes
        if let checksumBit, mask & checksumBit == 0 { length -= 4 }
        let chunkBytes = chunks.reduce(info.elementSize, *)
        let applied = info.filters.enumerated().contains { $0.element == "gzip" && mask & (UInt32(1) << UInt32($0.offset)) == 0 }
        if applied {
            guard length > 0, let inflated = Zlib.inflatedSize(raw, count: length, expected: chunkBytes) else {
                throw DataError("\(path): '\(name)' is damaged (the gzip chunk at \(offset) is not valid compressed data)")
            }
            length = inflated
        }
        guard length == chunkBytes else {
            throw DataError("\(path): '\(name)' is damaged (the chunk at \(offset) holds \(length) bytes of values instead of \(chunkBytes))")
        }
    }

    static func elementType(_ type: hid_t) -> ElementType {
        let size = H5Tget_size(type)
        switch H5Tget_class(type) {
        case H5T_INTEGER:
            let signed = H5Tget_sign(type) == H5T_SGN_2
            switch (size, signed) {
            case (1, false): return .uint8
            case (1, true): return .int8
            case (2, false): return .uint16
            case (2, true): return .int16
            case (4, false): return .uint32
            case (4, true): return .int32
            case (8, false): return .uint64
            case (8, true): return .int64
            default: return .other
            }
        case H5T_FLOAT:
            return size == 4 ? .float32 : size == 8 ? .float64 : .other
        case H5T_STRING:
            return .string
        default:
            return .other
        }
    }

    /// Checks every written chunk that rows `rows` (along the first dimension) of `dataset` touch,
    /// before libhdf5 reads it: the chunk must lie inside the file and, when no compression filter
    /// is on, hold exactly one chunk of values (plus the 4-byte Fletcher-32 checksum when that
    /// filter ran on it). libhdf5 1.10 copies a whole chunk's worth of values out of whatever it
    /// read. Chunks already checked are in `checked` (their index in the chunk grid); unwritten
    /// chunks read as the fill value. Contiguous and compact datasets need nothing here.
    func checkChunks(_ dataset: hid_t, name: String, info: DatasetInfo, rows: Range<Int>, checked: inout Set<Int>) throws {
        // Uncompressed chunks are fully checked with the index; compressed ones are inflated here.
        let compressed = info.filters.contains { $0 != "fletcher32" && $0 != "shuffle" }
        guard let chunks = info.chunks, !(info.chunkIndexChecked && !compressed), !rows.isEmpty, !info.shape.isEmpty else { return }
        // Chunks along each dimension; a zero-length dimension has none to read.
        let grid = zip(info.shape, chunks).map { ($0 + $1 - 1) / $1 }
        guard !grid.contains(0), rows.upperBound <= info.shape[0] else { return }
        let perFirstIndex = grid.dropFirst().reduce(1, *)
        for first in (rows.lowerBound / chunks[0])...((rows.upperBound - 1) / chunks[0]) {
            for rest in 0..<perFirstIndex {
                let index = first * perFirstIndex + rest
                if checked.contains(index) { continue }
                // The chunk's first value: `first` along dimension 0, `rest` spread over the others.
                var offset = [hsize_t](repeating: 0, count: chunks.count)
                offset[0] = hsize_t(first * chunks[0])
                var remainder = rest
                for dimension in stride(from: chunks.count - 1, to: 0, by: -1) {
                    offset[dimension] = hsize_t((remainder % grid[dimension]) * chunks[dimension])
                    remainder /= grid[dimension]
                }
                var mask: UInt32 = 0
                var address: haddr_t = 0
                var size: hsize_t = 0
                guard H5Dget_chunk_info_by_coord(dataset, &offset, &mask, &address, &size) >= 0 else {
                    throw DataError("\(path): '\(name)' is damaged (the index of its chunks cannot be read)")
                }
                try checkChunkStorage(name: name, info: info, offset: offset, mask: mask, address: address, size: size, dataset: dataset)
                checked.insert(index)
            }
        }
    }

    /// Reads rows `[start, start + count)` along the first dimension of `name`, converted by HDF5
    /// to `memoryType`, into `destination` (which holds `count * rowElements` values).
    func readRows(_ dataset: hid_t, name: String, rank: Int, start: Int, count: Int, rowShape: [Int],
                  memoryType: hid_t, into destination: UnsafeMutableRawPointer) throws {
        let fileSpace = H5Dget_space(dataset)
        guard fileSpace >= 0 else { throw DataError("\(path): cannot select rows of '\(name)'") }
        defer { H5Sclose(fileSpace) }
        var offset = [hsize_t](repeating: 0, count: rank)
        offset[0] = hsize_t(start)
        var extent = [hsize_t(count)] + rowShape.map { hsize_t($0) }
        guard H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, &offset, nil, &extent, nil) >= 0 else {
            throw DataError("\(path): rows \(start)..<\(start + count) of '\(name)' are out of range")
        }
        let memorySpace = H5Screate_simple(Int32(rank), &extent, nil)
        guard memorySpace >= 0 else { throw DataError("\(path): out of memory selecting '\(name)'") }
        defer { H5Sclose(memorySpace) }
        guard H5Dread(dataset, memoryType, memorySpace, fileSpace, CHDF5_P_DEFAULT(), destination) >= 0 else {
            throw DataError("\(path): reading rows \(start)..<\(start + count) of '\(name)' failed (damaged file or checksum mismatch)")
        }
    }

    /// Reads a whole float32 dataset, checking its shape and that all of it is in the file.
    func readFloats(_ name: String, shape: [Int], into destination: UnsafeMutablePointer<Float>) throws {
        let found = try info(name)
        guard found.shape == shape else {
            throw DataError("\(path): '\(name)' has shape \(found.shape), expected \(shape)")
        }
        guard found.elementType == .float32 else {
            throw DataError("\(path): '\(name)' is \(found.elementType.rawValue), expected float32")
        }
        guard found.storesEveryValue else {
            throw DataError("\(path): '\(name)' is incomplete (\(found.storedBytes) bytes stored for \(found.elementCount) values); the file is damaged or was not fully written")
        }
        let dataset = try openDataset(name)
        defer { H5Dclose(dataset) }
        var checked = Set<Int>()
        try checkChunks(dataset, name: name, info: found, rows: 0..<(shape.first ?? 0), checked: &checked)
        guard H5Dread(dataset, CHDF5_T_NATIVE_FLOAT(), CHDF5_S_ALL(), CHDF5_S_ALL(), CHDF5_P_DEFAULT(), destination) >= 0 else {
            throw DataError("\(path): reading '\(name)' failed (damaged file or checksum mismatch)")
        }
    }

    /// Writes a float32 little-endian dataset, chunked as one chunk, with the Fletcher-32 checksum;
    /// missing parent groups are created.
    func writeFloats(_ name: String, shape: [Int], from source: UnsafePointer<Float>) throws {
        var dims = shape.map { hsize_t($0) }
        let space = H5Screate_simple(Int32(dims.count), &dims, nil)
        guard space >= 0 else { throw DataError("\(path): cannot describe '\(name)'") }
        defer { H5Sclose(space) }
        let create = H5Pcreate(CHDF5_P_DATASET_CREATE())
        defer { H5Pclose(create) }
        var chunk = dims.map { max($0, 1) }
        guard H5Pset_chunk(create, Int32(chunk.count), &chunk) >= 0, H5Pset_fletcher32(create) >= 0 else {
            throw DataError("\(path): cannot set chunking and checksum for '\(name)'")
        }
        let links = H5Pcreate(CHDF5_P_LINK_CREATE())
        defer { H5Pclose(links) }
        H5Pset_create_intermediate_group(links, 1)
        let dataset = H5Dcreate2(id, name, CHDF5_T_IEEE_F32LE(), space, links, create, CHDF5_P_DEFAULT())
        guard dataset >= 0 else { throw DataError("\(path): cannot create dataset '\(name)'") }
        defer { H5Dclose(dataset) }
        guard H5Dwrite(dataset, CHDF5_T_NATIVE_FLOAT(), CHDF5_S_ALL(), CHDF5_S_ALL(), CHDF5_P_DEFAULT(), source) >= 0 else {
            throw DataError("\(path): writing '\(name)' failed (disk full?)")
        }
    }

    /// Writes a uint8 dataset `shape`, chunked along the first dimension by `rowsPerChunk`.
    func writeBytes(_ name: String, shape: [Int], rowsPerChunk: Int, from source: UnsafePointer<UInt8>) throws {
        var dims = shape.map { hsize_t($0) }
        let space = H5Screate_simple(Int32(dims.count), &dims, nil)
        guard space >= 0 else { throw DataError("\(path): cannot describe '\(name)'") }
        defer { H5Sclose(space) }
        let create = H5Pcreate(CHDF5_P_DATASET_CREATE())
        defer { H5Pclose(create) }
        var chunk = dims.map { max($0, 1) }
        chunk[0] = hsize_t(max(1, min(rowsPerChunk, shape[0])))
        guard H5Pset_chunk(create, Int32(chunk.count), &chunk) >= 0 else {
            throw DataError("\(path): cannot set chunking for '\(name)'")
        }
        let dataset = H5Dcreate2(id, name, CHDF5_T_STD_U8LE(), space, CHDF5_P_DEFAULT(), create, CHDF5_P_DEFAULT())
        guard dataset >= 0 else { throw DataError("\(path): cannot create dataset '\(name)'") }
        defer { H5Dclose(dataset) }
        guard H5Dwrite(dataset, CHDF5_T_NATIVE_UINT8(), CHDF5_S_ALL(), CHDF5_S_ALL(), CHDF5_P_DEFAULT(), source) >= 0 else {
            throw DataError("\(path): writing '\(name)' failed (disk full?)")
        }
    }

    func createGroup(_ name: String) throws {
        if kind(of: name) == .group { return }
        let links = H5Pcreate(CHDF5_P_LINK_CREATE())
        defer { H5Pclose(links) }
        H5Pset_create_intermediate_group(links, 1)
        let group = H5Gcreate2(id, name, links, CHDF5_P_DEFAULT(), CHDF5_P_DEFAULT())
        guard group >= 0 else { throw DataError("\(path): cannot create group '\(name)'") }
        H5Gclose(group)
    }

    // MARK: Attributes

    private func withAttribute(on object: String, _ name: String, type fileType: hid_t,
                               _ body: (hid_t) -> herr_t) throws {
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        if H5Aexists_by_name(id, object, name, CHDF5_P_DEFAULT()) > 0 {
            H5Adelete_by_name(id, object, name, CHDF5_P_DEFAULT())
        }
        let attribute = H5Acreate_by_name(id, object, name, fileType, space, CHDF5_P_DEFAULT(), CHDF5_P_DEFAULT(), CHDF5_P_DEFAULT())
        guard attribute >= 0 else { throw DataError("\(path): cannot create attribute '\(name)' on '\(object)'") }
        defer { H5Aclose(attribute) }
        guard body(attribute) >= 0 else { throw DataError("\(path): writing attribute '\(name)' failed") }
    }

    func setAttribute(_ name: String, on object: String = "/", int64 value: Int64) throws {
        var v = value
        try withAttribute(on: object, name, type: CHDF5_T_STD_I64LE()) { H5Awrite($0, CHDF5_T_NATIVE_INT64(), &v) }
    }

    func setAttribute(_ name: String, on object: String = "/", double value: Double) throws {
        var v = value
        try withAttribute(on: object, name, type: CHDF5_T_IEEE_F64LE()) { H5Awrite($0, CHDF5_T_NATIVE_DOUBLE(), &v) }
    }

    /// A variable-length UTF-8 string, which h5py reads back as `str`.
    func setAttribute(_ name: String, on object: String = "/", string value: String) throws {
        let type = H5Tcopy(CHDF5_T_C_S1())
        defer { H5Tclose(type) }
        H5Tset_size(type, CHDF5_T_VARIABLE())
        H5Tset_cset(type, H5T_CSET_UTF8)
        try value.withCString { cString in
            var pointer: UnsafePointer<CChar>? = cString
            try withAttribute(on: object, name, type: type) { H5Awrite($0, type, &pointer) }
        }
    }

    private func openAttribute(_ name: String, on object: String) throws -> hid_t {
        guard H5Aexists_by_name(id, object, name, CHDF5_P_DEFAULT()) > 0 else {
            throw DataError("\(path): attribute '\(name)' missing on '\(object)'")
        }
        let attribute = H5Aopen_by_name(id, object, name, CHDF5_P_DEFAULT(), CHDF5_P_DEFAULT())
        guard attribute >= 0 else { throw DataError("\(path): cannot open attribute '\(name)' on '\(object)'") }
        // Every attribute this project reads is one value; reading an array into one would
        // overrun the destination.
        let space = H5Aget_space(attribute)
        let values = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1
        if space >= 0 { H5Sclose(space) }
        guard values == 1 else {
            H5Aclose(attribute)
            throw DataError("\(path): attribute '\(name)' on '\(object)' holds \(values) values, expected one")
        }
        return attribute
    }

    func hasAttribute(_ name: String, on object: String = "/") -> Bool {
        H5Aexists_by_name(id, object, name, CHDF5_P_DEFAULT()) > 0
    }

    func int64Attribute(_ name: String, on object: String = "/") throws -> Int64 {
        let attribute = try openAttribute(name, on: object)
        defer { H5Aclose(attribute) }
        let type = H5Aget_type(attribute)
        defer { H5Tclose(type) }
        guard H5Tget_class(type) == H5T_INTEGER else { throw DataError("\(path): attribute '\(name)' is not an integer") }
        var value: Int64 = 0
        guard H5Aread(attribute, CHDF5_T_NATIVE_INT64(), &value) >= 0 else {
            throw DataError("\(path): reading attribute '\(name)' failed")
        }
        return value
    }

    func doubleAttribute(_ name: String, on object: String = "/") throws -> Double {
        let attribute = try openAttribute(name, on: object)
        defer { H5Aclose(attribute) }
        var value: Double = 0
        guard H5Aread(attribute, CHDF5_T_NATIVE_DOUBLE(), &value) >= 0 else {
            throw DataError("\(path): reading attribute '\(name)' failed")
        }
        return value
    }

    /// Reads a fixed- or variable-length string attribute.
    func stringAttribute(_ name: String, on object: String = "/") throws -> String {
        let attribute = try openAttribute(name, on: object)
        defer { H5Aclose(attribute) }
        let type = H5Aget_type(attribute)
        defer { H5Tclose(type) }
        guard H5Tget_class(type) == H5T_STRING else { throw DataError("\(path): attribute '\(name)' is not a string") }
        if H5Tis_variable_str(type) > 0 {
            let memoryType = H5Tcopy(CHDF5_T_C_S1())
            defer { H5Tclose(memoryType) }
            H5Tset_size(memoryType, CHDF5_T_VARIABLE())
            H5Tset_cset(memoryType, H5Tget_cset(type))
            var pointer: UnsafeMutablePointer<CChar>?
            guard H5Aread(attribute, memoryType, &pointer) >= 0, let pointer else {
                throw DataError("\(path): reading attribute '\(name)' failed")
            }
            defer { H5free_memory(pointer) }
            return String(cString: pointer)
        }
        let size = H5Tget_size(type)
        guard size > 0 && size < 1 << 26 else { throw DataError("\(path): attribute '\(name)' has an invalid size") }
        var bytes = [UInt8](repeating: 0, count: size + 1)
        guard H5Aread(attribute, type, &bytes) >= 0 else { throw DataError("\(path): reading attribute '\(name)' failed") }
        let end = bytes.firstIndex(of: 0) ?? size
        return String(decoding: bytes[..<end], as: UTF8.self)
    }
}

/// Flushes a written file's data and its folder entry to stable storage.
func syncToDisk(path: String) {
    let descriptor = open(path, O_RDONLY)
    if descriptor >= 0 { fsync(descriptor); Glibc.close(descriptor) }
}

/// Serialises every use of the HDF5 library: Debian's libhdf5 is built without thread safety, and
/// the prefetch thread reads batches while the main thread may write a checkpoint. Recursive, so
/// a locked operation may call another.
enum HDF5Lock {
    private static let mutex: UnsafeMutablePointer<pthread_mutex_t> = {
        let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_RECURSIVE))
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
        return mutex
    }()

    static func run<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}
