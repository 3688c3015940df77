import CHDF5
#if canImport(Glibc)
import Glibc
#endif

/// What both fuzz targets share: each input is written to a file, because the readers under test
/// take paths, as the product does with user files.
enum FuzzInput {
    /// One file per fuzzing process, in `$TMPDIR` (or /tmp), removed at exit.
    static let path: String = {
        let folder = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        let path = folder + "/vqvae-fuzz-\(getpid()).h5"
        atexit { unlink(FuzzInput.path) }
        return path
    }()

    /// Writes `size` bytes to a new file at `path` and returns the path. The old file is unlinked
    /// first, so the input is always a fresh file.
    static func write(_ data: UnsafePointer<UInt8>?, _ size: Int) -> String {
        unlink(path)
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard descriptor >= 0 else { fail("cannot create \(path)") }
        var written = 0
        while written < size, let data {
            let n = Glibc.write(descriptor, data + written, size - written)
            guard n > 0 else { fail("cannot write \(path)") }
            written += n
        }
        Glibc.close(descriptor)
        return path
    }

    /// The readers must close every HDF5 file, dataset, group, type and attribute they opened, on
    /// success and after every error: a leaked file stays open inside the library, which would
    /// then serve the next file at the same path from its stale cache.
    static func checkNothingLeftOpen(after what: String) {
        let all = UInt32(H5F_OBJ_FILE | H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_DATATYPE | H5F_OBJ_ATTR)
        let open = H5Fget_obj_count(hid_t(all), all)
        if open != 0 { fail("\(what) left \(open) HDF5 object(s) open") }
    }

    /// Returns the blocks libhdf5 keeps on its free lists, so that the process's memory reflects
    /// what the current input needs rather than everything earlier inputs left behind.
    static func releaseLibraryMemory() {
        H5garbage_collect()
    }

    static func fail(_ message: String) -> Never {
        fputs("fuzz harness: \(message)\n", stderr)
        abort()
    }
}
