#if canImport(Glibc)
import Glibc
#endif

/// Progress of a long job on standard error, so that standard output keeps only the results. On a
/// terminal one line is rewritten in place every `interval` seconds; elsewhere (a log, a pipe) a
/// line is printed every `interval` seconds once the job has lasted `quietPeriod` seconds, so a
/// short job prints nothing. Each line counts work units (tiles, say) done of the total, the
/// elapsed time and an estimate of the time left.
final class Progress {
    let total: Int
    let unit: String
    let interval: Double
    let quietPeriod: Double
    let isTerminal: Bool
    private let started = monotonicSeconds()
    private var lastShown: Double
    private var done = 0
    private var shownOnTerminal = false
    /// What is under way, e.g. `image 3/10`; shown before the counts.
    var stage = ""

    init(total: Int, unit: String, interval: Double = 2, quietPeriod: Double = 4,
         isTerminal: Bool = isatty(STDERR_FILENO) != 0) {
        self.total = max(total, 1)
        self.unit = unit
        self.interval = interval
        self.quietPeriod = quietPeriod
        self.isTerminal = isTerminal
        lastShown = started
    }

    /// Counts `count` more units done and shows a line when one is due.
    func advance(by count: Int) {
        done += count
        let now = monotonicSeconds()
        guard now - lastShown >= interval, isTerminal || now - started >= quietPeriod else { return }
        lastShown = now
        show(elapsed: now - started)
    }

    /// Ends the rewritten terminal line, if one was shown, so that what follows starts on its own line.
    func finish() {
        if shownOnTerminal { fputs("\n", stderr); fflush(stderr) }
        shownOnTerminal = false
    }

    private func show(elapsed: Double) {
        let fraction = Double(min(done, total)) / Double(total)
        let left = fraction > 0 ? elapsed / fraction - elapsed : .nan
        let percent = Int((fraction * 100).rounded(.down))
        let line = "\(stage.isEmpty ? "" : stage + ", ")\(unit) \(done)/\(total) (\(percent)%), \(formatDuration(elapsed)) elapsed, about \(formatDuration(left)) left"
        if isTerminal {
            fputs("\r\u{1B}[K" + line, stderr)
            shownOnTerminal = true
        } else {
            fputs(line + "\n", stderr)
        }
        fflush(stderr)
    }
}
