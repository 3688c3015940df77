import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Faults put into a run on purpose, so that the fault tests (scripts/fault_matrix.sh) can stop a
/// rank, a checkpoint write or the numerics at a known moment. Off unless `VQVAE_FAULT` is set:
///
///     VQVAE_FAULT=KIND:STEP[:SECONDS][@RANK]
///
/// | KIND | at step STEP (1-based, as in the progress lines) |
/// | --- | --- |
/// | `sleep-in-step` | sleeps SECONDS between the forward and the backward pass |
/// | `sleep-in-allreduce` | sleeps SECONDS after its gradient all-reduces have started, before waiting for them (the other ranks wait inside the all-reduce) |
/// | `sleep-in-checkpoint-write` | sleeps SECONDS when half of the checkpoint written after step STEP is in its temporary file |
/// | `nan-data` | makes the first pixel of this rank's input images NaN |
/// | `nan-gradient` | makes one gradient NaN just before it is all-reduced |
///
/// `@RANK` limits the fault to one rank (default: every rank). A sleep runs to its end through
/// signals, so a SIGTERM that arrives during it is handled afterwards, as at any other moment.
struct FaultInjection: CustomStringConvertible {
    enum Kind: String, CaseIterable {
        case sleepInStep = "sleep-in-step"
        case sleepInAllReduce = "sleep-in-allreduce"
        case sleepInCheckpointWrite = "sleep-in-checkpoint-write"
        case nanData = "nan-data"
        case nanGradient = "nan-gradient"
    }

    static let variable = "VQVAE_FAULT"

    let kind: Kind
    let step: Int
    let seconds: Double

    var description: String { "\(kind.rawValue) at step \(step)" + (seconds > 0 ? " for \(seconds) s" : "") }

    /// The fault `VQVAE_FAULT` asks of `rank`: nil when the variable is unset or names another rank.
    static func fromEnvironment(rank: Int) throws -> FaultInjection? {
        guard let raw = getenv(variable).map({ String(cString: $0) }), !raw.isEmpty else { return nil }
        let usage = "\(variable)=\(raw) is not KIND:STEP[:SECONDS][@RANK] with KIND one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))"
        let target = raw.split(separator: "@", omittingEmptySubsequences: false)
        guard target.count <= 2 else { throw TrainingError(usage) }
        if target.count == 2 {
            guard let only = Int(target[1]), only >= 0 else { throw TrainingError(usage) }
            if only != rank { return nil }
        }
        let parts = target[0].split(separator: ":", omittingEmptySubsequences: false)
        guard (2...3).contains(parts.count), let kind = Kind(rawValue: String(parts[0])),
              let step = Int(parts[1]), step >= 1 else { throw TrainingError(usage) }
        let seconds = parts.count == 3 ? Double(parts[2]) : 0
        guard let seconds, seconds >= 0, seconds.isFinite, kind.rawValue.hasPrefix("sleep") == (parts.count == 3) else {
            throw TrainingError(usage)
        }
        return FaultInjection(kind: kind, step: step, seconds: seconds)
    }

    /// Whether this fault is `kind` at `step`.
    func fires(_ kind: Kind, step: Int) -> Bool { self.kind == kind && self.step == step }

    /// Sleeps when this fault is `kind` at `step`.
    func sleep(_ kind: Kind, step: Int) {
        guard fires(kind, step: step) else { return }
        let end = monotonicSeconds() + seconds
        while true {
            let left = end - monotonicSeconds()
            if left <= 0 { break }
            usleep(UInt32(min(left, 0.1) * 1e6))
        }
    }
}
