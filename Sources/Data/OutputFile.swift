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
            for (name, value) in attributes.sorted(by: { $0.key < $1.key }) { try file.setAttribute(name, string: value) }
        }
    }

    /// Writes `images` `[N, H, W, C]` as the uint8 dataset `images` (spec/dataset.md), chunked by 64 rows.
    public static func writeByteImages(path: String, images: [UInt8], shape: [Int]) throws {
        try checkShape(shape, path: path)
        guard images.count == shape.reduce(1, *) else { throw DataError("\(path): \(images.count) bytes do not fill \(shape)") }
        try write(path: path) { file in
            try images.withUnsafeBufferPointer {
                try file.writeBytes("images", shape: shape, rowsPerChunk: 64, from: $0.baseAddress!)
            }
        }
    }

    static func checkShape(_ shape: [Int], path: String) throws {
        guard shape.count == 4, shape.allSatisfy({ $0 >= 1 }) else {
            throw DataError("\(path): cannot write images of shape \(shape); (N, H, W, C) with every size >= 1 is needed")
        }
    }

    /// Builds the file in memory with `contents`, then stores it atomically at `path`.
    static func write(path: String, _ contents: (HDF5File) throws -> Void) throws {
        let bytes = try HDF5Lock.run { () throws -> [UInt8] in
            let file = try HDF5File.createInMemory(name: path)
            try contents(file)
            let bytes = try file.image()
            try file.close()
            return bytes
        }
        try store(bytes, at: path)
    }

    /// Writes `bytes` to `.<name>.tmp-<pid>` beside `path`, syncs it and renames it to `path`.
    static func store(_ bytes: [UInt8], at path: String) throws {
        let slash = path.lastIndex(of: "/")
        let folder = slash.map { String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let temporary = (folder.isEmpty ? "" : folder + "/") + "." + name + ".tmp-\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw DataError("\(path): cannot create the output file (\(String(cString: strerror(errno)))); does the folder exist?")
        }
        var failure: Int32 = 0
        var done = 0
        bytes.withUnsafeBytes { raw in
            while done < raw.count {
                let written = Glibc.write(descriptor, raw.baseAddress! + done, raw.count - done)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                done += written
            }
        }
        if failure == 0 && fsync(descriptor) != 0 { failure = errno }
        if Glibc.close(descriptor) != 0 && failure == 0 { failure = errno }
        if failure == 0 && rename(temporary, path) != 0 { failure = errno }
        guard failure != 0 else { return }
        unlink(temporary)
        if failure == ENOSPC || failure == EDQUOT {
            throw DataError("\(path): the disk is full (the file needs \(bytes.count) bytes); nothing was written under this name")
        }
        throw DataError("\(path): writing failed (\(String(cString: strerror(failure)))); nothing was written under this name")
    }
}
