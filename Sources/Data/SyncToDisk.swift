#if canImport(Glibc)
import Glibc
#endif

/// Flushes a written file's data and its folder entry to stable storage.
func syncToDisk(path: String) {
    let descriptor = open(path, O_RDONLY)
    if descriptor >= 0 { fsync(descriptor); Glibc.close(descriptor) }
}
