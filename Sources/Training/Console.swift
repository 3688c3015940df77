#if canImport(Glibc)
import Glibc
#endif

/// The one logger of the commands and the library. Progress goes to standard output from rank 0
/// only; warnings and errors go to standard error, prefixed with the rank when the world has more
/// than one.
public struct Console: Sendable {
    public var rank = 0
    public var worldSize = 1

    public init(rank: Int = 0, worldSize: Int = 1) {
        self.rank = rank
        self.worldSize = worldSize
    }

    public func info(_ message: String) {
        guard rank == 0 else { return }
        fputs(message + "\n", stdout)
        fflush(stdout)
    }

    public func warning(_ message: String) {
        fputs("\(prefix)warning: \(message)\n", stderr)
    }

    public func error(_ message: String) {
        fputs("\(prefix)error: \(message)\n", stderr)
        fflush(stderr)
    }

    private var prefix: String { worldSize > 1 ? "[rank \(rank)] " : "" }
}

/// Seconds on a monotonic clock.
public func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) * 1e-9
}

/// `1h02m`, `3m05s`, `12s`.
func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite && seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    func twoDigits(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
    if s >= 3600 { return "\(s / 3600)h\(twoDigits((s % 3600) / 60))m" }
    if s >= 60 { return "\(s / 60)m\(twoDigits(s % 60))s" }
    return "\(s)s"
}
