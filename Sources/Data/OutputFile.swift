#if canImport(Glibc)
import Glibc
#endif

/// HDF5 files the commands write besides checkpoints (reconstructions, restored images, codes).
/// Each is built in memory and stored through a temporary file in the same folder that is synced and
/// renamed, so an existing file under `path` is replaced only by a complete new one, and a failure
/// leaves it untouched.
public enum OutputFile {
    /// Writes `images` `[N, H, W, C]` as the float32 dataset `images` (chunked, Fletcher-32).
    public static func writeFloatImages(path: String, images: UnsafePointer<Float>, shape: [Int],
                                        attributes: [String: String] = [:]) throws {
        try checkShape(shape, path: path)
        try write(path: path) { file in
            try file.writeFloats("images", shape: shape, from: images)
            try setAttributes(attributes, of: file)
        }
    }

    /// Writes `images` `[N, H, W, C]` as the uint8 dataset `images` (spec/dataset.md), chunked by 64 rows.
    public static func writeByteImages(path: String, images: [UInt8], shape: [Int], attributes: [String: String] = [:]) throws {
        try checkShape(shape, path: path)
        guard images.count == shape.reduce(1, *) else { throw DataError("\(path): \(images.count) bytes do not fill \(shape)") }
        try write(path: path) { file in
            try images.withUnsafeBufferPointer {
                try file.writeBytes("images", shape: shape, rowsPerChunk: 64, from: $0.baseAddress!)
            }
            try setAttributes(attributes, of: file)
        }
    }

    /// Stores `text` (UTF-8) at `path` atomically, like every other output file.
    public static func writeText(_ text: String, path: String) throws {
        try store(Array(text.utf8), at: path)
    }

    static func setAttributes(_ attributes: [String: String], of file: HDF5File) throws {
        for (name, value) in attributes.sorted(by: { $0.key < $1.key }) { try file.setAttribute(name, string: value) }
    }

    static func checkShape(_ shape: [Int], path: String) throws {
        guard shape.count == 4, shape.allSatisfy({ $0 >= 1 }) else {
            throw DataError("\(path): cannot write images of shape \(shape); (N, H, W, C) with every size >= 1 is needed")
        }
    }

    /// Builds the file in memory with `contents`, then stores it atomically at `path`.
    static func write(path: String, _ contents: (HDF5File) throws -> Void) throws {
        try store(try bytesInMemory(name: path, contents), at: path)
    }

    /// The bytes of an HDF5 file built in memory (named `name` in messages) by `contents`.
    static func bytesInMemory(name: String, _ contents: (HDF5File) throws -> Void) throws -> [UInt8] {
        try HDF5Lock.run { () throws -> [UInt8] in
            let file = try HDF5File.createInMemory(name: name)
            try contents(file)
            let bytes = try file.image()
            try file.close()
            return bytes
        }
    }

    /// Writes `bytes` to `path` atomically (see `store`).
    public static func writeBytes(_ bytes: [UInt8], path: String) throws {
        try store(bytes, at: path)
    }

    /// Writes `bytes` to `.<name>.tmp-<pid>` beside `path`, syncs it and renames it to `path`.
    static func store(_ bytes: [UInt8], at path: String) throws {
        let slash = path.lastIndex(of: "/")
        let folder = slash.map { String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let temporary = (folder.isEmpty ? "" : folder + "/") + "." + name + ".tmp-\(getpid())"
        do {
            try storeAtomically(bytes, temporaryPath: temporary, finalPath: path, folder: folder.isEmpty ? "/" : folder)
        } catch let failure as StoreFailure {
            if failure.call == "creating" {
                throw DataError("\(path): cannot create the output file (\(failure.reason)); does the folder exist?")
            }
            if failure.isDiskFull {
                throw DataError("\(path): the disk is full (the file needs \(bytes.count) bytes); nothing was written under this name")
            }
            throw DataError("\(path): writing failed (\(failure.reason)); nothing was written under this name")
        }
    }

    /// The system call that failed while storing a file, and its errno.
    struct StoreFailure: Error {
        let call: String
        let code: Int32
        var reason: String { String(cString: strerror(code)) }
        var isDiskFull: Bool { code == ENOSPC || code == EDQUOT }
    }

    /// The atomic write behind every output file and checkpoint: `bytes` go to `temporaryPath`
    /// (retrying short and interrupted writes), which is synced, closed and renamed to `finalPath`,
    /// and `folder` is synced. `halfWritten` runs when half of the bytes are in the temporary file
    /// (a fault-injection point). On any failure the temporary file is removed and a
    /// `StoreFailure` names the call ("creating", "writing", "syncing", "closing", "renaming it
    /// into place"); nothing appears under `finalPath`.
    static func storeAtomically(_ bytes: [UInt8], temporaryPath: String, finalPath: String, folder: String,
                                halfWritten: () -> Void = {}) throws {
        let descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw StoreFailure(call: "creating", code: errno) }
        var failure: StoreFailure?
        bytes.withUnsafeBytes { raw in
            let half = raw.count / 2
            failure = writeAll(descriptor, raw.baseAddress!, count: half)
            if failure == nil {
                halfWritten()
                failure = writeAll(descriptor, raw.baseAddress! + half, count: raw.count - half)
            }
        }
        if failure == nil && fsync(descriptor) != 0 { failure = StoreFailure(call: "syncing", code: errno) }
        if Glibc.close(descriptor) != 0 && failure == nil { failure = StoreFailure(call: "closing", code: errno) }
        if failure == nil && rename(temporaryPath, finalPath) != 0 { failure = StoreFailure(call: "renaming it into place", code: errno) }
        if let failure {
            unlink(temporaryPath)
            throw failure
        }
        syncToDisk(path: folder)
    }

    /// Writes `count` bytes, retrying short writes and interrupted calls.
    private static func writeAll(_ descriptor: Int32, _ start: UnsafeRawPointer?, count: Int) -> StoreFailure? {
        guard let start else { return nil }
        var done = 0
        while done < count {
            let written = Glibc.write(descriptor, start + done, count - done)
            if written < 0 {
                if errno == EINTR { continue }
                return StoreFailure(call: "writing", code: errno)
            }
            done += written
        }
        return nil
    }
}
