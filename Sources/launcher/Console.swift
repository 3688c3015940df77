#if canImport(Glibc)
import Glibc
#endif

/// The command's one logger. Progress goes to standard output from rank 0 only; warnings and errors
/// go to standard error, prefixed with the rank when the world has more than one.
struct Console {
    var rank = 0
    var worldSize = 1

    func info(_ message: String) {
        guard rank == 0 else { return }
        fputs(message + "\n", stdout)
        fflush(stdout)
    }

    func warning(_ message: String) {
        fputs("\(prefix)warning: \(message)\n", stderr)
    }

    func error(_ message: String) {
        fputs("\(prefix)error: \(message)\n", stderr)
        fflush(stderr)
    }

    private var prefix: String { worldSize > 1 ? "[rank \(rank)] " : "" }
}

/// Seconds on a monotonic clock.
func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) * 1e-9
}

/// `1h02m`, `3m05s`, `12s`.
func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite && seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3600 { return "\(s / 3600)h\(String(format2: (s % 3600) / 60))m" }
    if s >= 60 { return "\(s / 60)m\(String(format2: s % 60))s" }
    return "\(s)s"
}

extension String {
    init(format2 value: Int) { self = value < 10 ? "0\(value)" : "\(value)" }
}
