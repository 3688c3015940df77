import Foundation
import Model

/// How a codebook was used: perplexity `exp(-sum p log p)` of code counts and how many codes
/// were chosen at least once.
public struct CodebookUsage: Equatable, Sendable {
    public var perplexity: Double
    public var codesUsed: Int

    /// From `count` code counts (floats, as the quantizer's statistics hold them).
    public init(counts: UnsafePointer<Float>, count: Int) {
        var total: Double = 0
        var used = 0
        for i in 0..<count where counts[i] > 0 { total += Double(counts[i]); used += 1 }
        guard total > 0 else { perplexity = 0; codesUsed = 0; return }
        var entropy: Double = 0
        for i in 0..<count where counts[i] > 0 {
            let p = Double(counts[i]) / total
            entropy -= p * log(p)
        }
        perplexity = exp(entropy)
        codesUsed = used
    }
}

/// One progress record of training: a line of the log and of `metrics.jsonl`.
struct StepRecord {
    var step: Int
    var loss: Losses
    var imagesPerSecond: Double
    var elapsedSeconds: Double
    var samplesSeen: Int
    /// The step's learning rate and the norm of its averaged gradient (before clipping).
    var learningRate: Float = .nan
    var gradientNorm: Double = .nan
    /// VQ-VAE: the global batch's code use.
    var codebook: CodebookUsage?
    /// With dead-code restart: codes re-seeded after this step.
    var codesRestarted: Int?
    var restartCandidates: Int?

    func json(model: ModelKind) -> [String: Any] {
        var record: [String: Any] = [
            "step": step, "loss": loss.total, "mse": loss.reconstruction, "images_per_second": imagesPerSecond,
            "elapsed_seconds": elapsedSeconds, "samples_seen": samplesSeen,
        ]
        // JSON has no NaN: a value that is not finite is left out.
        if learningRate.isFinite { record["lr"] = Double(learningRate) }
        if gradientNorm.isFinite { record["grad_norm"] = gradientNorm }
        switch model {
        case .vqvae:
            record["commitment"] = loss.commitment
            if let codebook {
                record["perplexity"] = codebook.perplexity
                record["codes_used"] = codebook.codesUsed
            }
            if let codesRestarted { record["codes_restarted"] = codesRestarted }
            if let restartCandidates { record["restart_candidates"] = restartCandidates }
        case .vae:
            record["kl"] = loss.kl
        case .ae:
            break
        }
        return record
    }

    func line(total: Int, model: ModelKind, eta: String) -> String {
        var terms = ""
        switch model {
        case .vqvae:
            terms = codebook.map { String(format: "  commit %.5f  perplexity %.1f  codes %d", loss.commitment, $0.perplexity, $0.codesUsed) } ?? ""
            if let codesRestarted { terms += "  restarted \(codesRestarted)" }
        case .vae:
            terms = String(format: "  kl %.5f", loss.kl)
        case .ae:
            break
        }
        return String(format: "step %d/%d  loss %.5f  mse %.5f", step, total, loss.total, loss.reconstruction)
            + terms + String(format: "  lr %.3g  grad norm %.4g", Double(learningRate), gradientNorm) + String(format: "  %.0f img/s  eta %@", imagesPerSecond, eta)
    }
}

/// `metrics.jsonl`: one JSON object per line, appended (a resumed run continues the file). A nil
/// path (ranks other than 0) writes nothing.
final class MetricsLog {
    let path: String?
    private let handle: FileHandle?
    /// `--tensorboard`: every record also goes to an event file, its numbers as scalars.
    private let events: TensorBoardEvents?

    init(path: String?, events: TensorBoardEvents? = nil) throws {
        self.path = path
        self.events = events
        guard let path else { handle = nil; return }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw TrainingError("cannot write \(path)") }
        _ = try? handle.seekToEnd()
        self.handle = handle
    }

    deinit { try? handle?.close() }

    func append(_ record: [String: Any]) throws {
        guard let handle, let path else { return }
        guard let line = try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]) else { return }
        do { try handle.write(contentsOf: line + Data([0x0A])) } catch {
            throw TrainingError("cannot append to \(path): \(error.localizedDescription)")
        }
        if let events, let step = record["step"] as? Int {
            let scalars = record.keys.sorted().compactMap { key -> (tag: String, value: Double)? in
                guard key != "step" else { return nil }
                switch record[key] {
                case let value as Double: return (key, value)
                case let value as Float: return (key, Double(value))
                case let value as Int: return (key, Double(value))
                default: return nil
                }
            }
            try events.append(step: step, values: scalars)
        }
    }
}
