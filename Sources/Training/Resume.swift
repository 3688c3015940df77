import Data
import Dist
import Foundation
import Model

/// Which checkpoint `--resume` means, decided on rank 0.
enum ResumeChoice {
    case fresh
    case checkpoint(String)

    /// `--resume PATH`: that file, which must verify. `--resume auto`: the newest file in
    /// `directory` that verifies (damaged ones are reported and skipped), or a fresh start.
    /// `verify` checks a file (by default as a model checkpoint; `train-prior` checks prior ones).
    static func resolve(_ request: String?, directory: String, console: Console,
                        verify: (String) throws -> Void = { try Checkpoint.verify(path: $0) }) throws -> ResumeChoice {
        guard let request else { return .fresh }
        if request != "auto" {
            do { try verify(request) } catch {
                throw TrainingError("--resume \(request): \(error)")
            }
            return .checkpoint(request)
        }
        for name in Checkpoint.files(in: directory) {
            let path = directory + "/" + name
            do {
                try verify(path)
                return .checkpoint(path)
            } catch {
                console.warning("skipping \(path): \(String(describing: error).split(separator: "\n").last ?? "damaged")")
            }
        }
        console.info("--resume auto: no valid checkpoint in \(directory); starting fresh")
        return .fresh
    }
}

extension Communicator {
    /// Rank 0's string on every rank.
    func broadcast(string: String) throws -> String {
        var bytes = Array(string.utf8)
        var length = [Int64(bytes.count)]
        try length.withUnsafeMutableBytes { try broadcast(bytes: $0.baseAddress!, count: 8) }
        if !isRoot { bytes = [UInt8](repeating: 0, count: Int(length[0])) }
        if length[0] > 0 {
            try bytes.withUnsafeMutableBytes { try broadcast(bytes: $0.baseAddress!, count: $0.count) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension TrainingState {
    /// Makes rank 0's state (fresh from the seed, or a resumed checkpoint's) every rank's: every
    /// state buffer and the counters.
    func broadcast(from communicator: Communicator) throws {
        for state in buffers { try communicator.broadcast(state.buffer.pointer, count: state.buffer.count) }
        var values = counters
        try values.withUnsafeMutableBytes { try communicator.broadcast(bytes: $0.baseAddress!, count: $0.count) }
        counters = values
    }

    /// The divergence guard: every rank's fingerprint must be the same.
    func checkRanksAgree(_ communicator: Communicator, step: Int) throws {
        guard communicator.size > 1 else { return }
        guard try communicator.allAgree(on: fingerprint) else {
            throw CollectiveError("ranks diverged at step \(step): their parameters or codebooks differ")
        }
    }
}
