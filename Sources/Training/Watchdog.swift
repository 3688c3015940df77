import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `--watchdog SECONDS`: ends this rank when one phase of training (starting up, reading a batch,
/// the forward and backward pass, the gradient all-reduce, a checkpoint write) has lasted longer
/// than `SECONDS`. A collective whose peer is gone without a word (its host powered off, its
/// network cut) can block for as long as TCP keeps the connection open, which is hours; the
/// watchdog turns that into one line naming the rank and the phase, and exit status 1. It exits
/// with `_exit`, because MPI may hold locks on the thread it would otherwise wait for; `mpirun` then
/// ends the job, and `--resume auto` continues from the newest checkpoint.
final class Watchdog {
    let limit: Double
    private let console: Console
    private let lock = NSLock()
    private var phase = "starting up"
    private var step = 0
    private var since = monotonicSeconds()

    init(seconds: Double, console: Console) {
        limit = seconds
        self.console = console
    }

    /// Starts the watching thread.
    func start() {
        let thread = Thread { [self] in watch() }
        thread.name = "vqvae-watchdog"
        thread.start()
    }

    /// Records that this rank has entered `phase` of step `step` (0 before the first step).
    func enter(_ phase: String, step: Int) {
        lock.lock()
        self.phase = phase
        self.step = step
        since = monotonicSeconds()
        lock.unlock()
    }

    private func watch() {
        let interval = min(max(limit / 10, 0.05), 1)
        while true {
            usleep(UInt32(interval * 1e6))
            lock.lock()
            let (phase, step, waited) = (self.phase, self.step, monotonicSeconds() - since)
            lock.unlock()
            guard waited > limit else { continue }
            let at = step > 0 ? " of step \(step)" : ""
            console.error(String(format: "watchdog: no progress for %.0f s in %@%@; another rank, its host or the network is gone or stuck. Exiting; continue with --resume auto",
                                 waited, phase, at))
            _exit(1)
        }
    }
}
