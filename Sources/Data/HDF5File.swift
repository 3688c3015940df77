import CHDF5
#if canImport(Glibc)
import Glibc
#endif

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

    /// The `ElementType` of the HDF5 datatype `type` (`.other` for any this project does not read).
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
        // An empty dataset cannot be chunked (a chunk may not exceed a fixed dimension): contiguous.
        guard shape.contains(0) || H5Pset_chunk(create, Int32(chunk.count), &chunk) >= 0 else {
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

extension HDF5File {
    /// Reads the hyperslab `start`, `stride`, `count`, `block` (HDF5's meaning; `stride` and `block`
    /// nil for 1) of `dataset`, converted by HDF5 to `memoryType`, into `destination` as one flat
    /// run of `count * block` values (row-major over the dimensions). `what` names the selection
    /// in messages.
    func readHyperslab(_ dataset: hid_t, name: String, start: [Int], stride: [Int]? = nil, count: [Int], block: [Int]? = nil,
                       memoryType: hid_t, into destination: UnsafeMutableRawPointer, what: String) throws {
        let fileSpace = H5Dget_space(dataset)
        guard fileSpace >= 0 else { throw DataError("\(path): cannot select \(what) of '\(name)'") }
        defer { H5Sclose(fileSpace) }
        var offset = start.map { hsize_t($0) }
        var steps = (stride ?? start.map { _ in 1 }).map { hsize_t($0) }
        var counts = count.map { hsize_t($0) }
        var blocks = (block ?? start.map { _ in 1 }).map { hsize_t($0) }
        guard H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, &offset, &steps, &counts, &blocks) >= 0 else {
            throw DataError("\(path): \(what) of '\(name)' is out of range")
        }
        var total = [hsize_t(zip(count, block ?? count.map { _ in 1 }).reduce(1) { $0 * $1.0 * $1.1 })]
        let memorySpace = H5Screate_simple(1, &total, nil)
        guard memorySpace >= 0 else { throw DataError("\(path): out of memory selecting '\(name)'") }
        defer { H5Sclose(memorySpace) }
        guard H5Dread(dataset, memoryType, memorySpace, fileSpace, CHDF5_P_DEFAULT(), destination) >= 0 else {
            throw DataError("\(path): reading \(what) of '\(name)' failed (damaged file or checksum mismatch)")
        }
    }

    /// Writes an int64 dataset of `shape` (tests and tools; contiguous).
    func writeInt64(_ name: String, shape: [Int], values: [Int64]) throws {
        precondition(values.count == shape.reduce(1, *))
        var dims = shape.map { hsize_t($0) }
        let space = H5Screate_simple(Int32(dims.count), &dims, nil)
        guard space >= 0 else { throw DataError("\(path): cannot describe '\(name)'") }
        defer { H5Sclose(space) }
        let dataset = H5Dcreate2(id, name, CHDF5_T_STD_I64LE(), space, CHDF5_P_DEFAULT(), CHDF5_P_DEFAULT(), CHDF5_P_DEFAULT())
        guard dataset >= 0 else { throw DataError("\(path): cannot create dataset '\(name)'") }
        defer { H5Dclose(dataset) }
        let status = values.withUnsafeBufferPointer {
            H5Dwrite(dataset, CHDF5_T_NATIVE_INT64(), CHDF5_S_ALL(), CHDF5_S_ALL(), CHDF5_P_DEFAULT(), $0.baseAddress)
        }
        guard status >= 0 else { throw DataError("\(path): writing '\(name)' failed") }
    }
}
