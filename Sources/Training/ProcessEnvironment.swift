import CPUCheck
import Model
#if canImport(Glibc)
import Glibc
#endif

/// Settings that OpenBLAS reads when it is loaded, before `main` runs. When they are missing, the
/// process sets them and re-executes itself once (same PID, so `mpirun` and `srun` do not notice):
///
/// - `OPENBLAS_CORETYPE=SkylakeX` where the CPU has AVX-512 but OpenBLAS picked a kernel without it
///   (Debian's OpenBLAS 0.3.21 picks Haswell on some AVX-512 CPUs, at about half the sgemm speed).
///   Where it already picked an AVX-512 kernel (SkylakeX, Cooperlake, SapphireRapids) it is kept
///   (on some AMD EPYC CPUs it picks Cooperlake, the faster of the two there);
/// - `OPENBLAS_NUM_THREADS=1`: one thread per rank unless asked (see `--threads`), which also stops
///   OpenBLAS from starting a thread pool the size of the machine in every rank.
///
/// A value the user exported is never changed. `VQVAE_NO_REEXEC=1` turns this off.
public enum ProcessEnvironment {
    public static func prepare() {
        if getenv("VQVAE_NO_REEXEC") != nil { return }
        var changed = false
        if getenv("OPENBLAS_CORETYPE") == nil, cpuHasAVX512(), !hasAVX512Kernel(blasCoreName()) {
            setenv("OPENBLAS_CORETYPE", "SkylakeX", 1)
            changed = true
        }
        if getenv("OPENBLAS_NUM_THREADS") == nil {
            setenv("OPENBLAS_NUM_THREADS", "1", 1)
            changed = true
        }
        guard changed else { return }
        setenv("VQVAE_NO_REEXEC", "1", 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // execv only returns on failure: carry on with the kernels OpenBLAS chose.
    }

    /// The instruction-set extensions this build was compiled for ("baseline" for a generic build).
    public static var instructionSet: String {
        let features = String(cString: vqvae_cpu_required_features())
        return features.isEmpty ? "baseline" : features
    }

    static func hasAVX512Kernel(_ core: String) -> Bool {
        ["skylakex", "cooperlake", "sapphirerapids"].contains(core.lowercased())
    }

    static func cpuHasAVX512() -> Bool {
        guard let file = fopen("/proc/cpuinfo", "r") else { return false }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0 {
            guard let line else { break }
            let text = String(cString: line)
            if text.hasPrefix("flags") {
                return text.split(separator: " ").contains { $0 == "avx512f" } &&
                    text.split(separator: " ").contains { $0 == "avx512bw" }
            }
        }
        return false
    }
}
