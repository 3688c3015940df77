import CHDF5
#if canImport(Glibc)
import Glibc
#endif

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

/// The checks of a dataset's header and chunks against the file, made before libhdf5 reads any
/// of its values: libhdf5 1.10 trusts some of what a damaged header or chunk index claims and
/// reads past its buffers.
extension HDF5File {
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
}
