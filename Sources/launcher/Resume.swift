import Data
import Dist
import Foundation
import Model

/// Whether `--name` (or `--name=value`) appears on the command line: a flag the user typed, as
/// opposed to a default.
func flagGiven(_ name: String) -> Bool {
    CommandLine.arguments.contains { $0 == name || $0.hasPrefix(name + "=") }
}

extension RunConfiguration {
    static func decode(_ json: String, path: String) throws -> RunConfiguration {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do {
            return try decoder.decode(RunConfiguration.self, from: Data(json.utf8))
        } catch {
            throw TrainingError("\(path): its configuration cannot be read (\(error)); was it written by another version?")
        }
    }

    /// The configuration of a resumed run: the checkpoint's, with only what may change on resume
    /// taken from the command line (`--steps`, and `--lr` when given). A flag that contradicts the
    /// checkpoint is refused with its name.
    func resumed(with options: Train, checkpoint path: String) throws -> RunConfiguration {
        var next = self
        var cli = options.architecture.configuration(height: model.height, width: model.width, channels: model.channels)
        cli.height = model.height; cli.width = model.width; cli.channels = model.channels
        let checks: [(String, String, String)] = [
            ("--model", cli.model.rawValue, model.model.rawValue),
            ("--hidden", "\(cli.hidden)", "\(model.hidden)"),
            ("--res-hidden", "\(cli.residualHidden)", "\(model.residualHidden)"),
            ("--res-blocks", "\(cli.residualBlocks)", "\(model.residualBlocks)"),
            ("--down", "\(cli.downsamplings)", "\(model.downsamplings)"),
            ("--code-dim", "\(cli.codeDimension)", "\(model.codeDimension)"),
            ("--codes", "\(cli.codes)", "\(model.codes)"),
            ("--commitment", "\(cli.commitment)", "\(model.commitment)"),
            ("--decay", "\(cli.decay)", "\(model.decay)"),
            ("--ema-eps", "\(cli.emaEpsilon)", "\(model.emaEpsilon)"),
            ("--codebook", cli.codebook.rawValue, model.codebook.rawValue),
            ("--global-batch-size", "\(options.globalBatchSize)", "\(data.globalBatchSize)"),
            ("--seed", "\(options.seed)", "\(seed)"),
            ("--tail", options.tail.rawValue, data.tail),
            ("--corrupt", try CorruptionPipeline(spec: options.corrupt).description, data.corrupt),
            ("--images-key", options.imagesKey, data.imagesKey),
            ("--beta1", "\(options.beta1)", "\(optimizer.beta1)"),
            ("--beta2", "\(options.beta2)", "\(optimizer.beta2)"),
            ("--adam-eps", "\(options.adamEpsilon)", "\(optimizer.eps)"),
            ("--weight-decay", "\(options.weightDecay)", "\(optimizer.weightDecay)"),
        ]
        for (flag, given, saved) in checks where flagGiven(flag) && given != saved {
            throw TrainingError("\(flag) \(given) contradicts \(path), which was trained with \(flag) \(saved); drop the flag to resume, or start a new --out")
        }
        if flagGiven("--no-shuffle") && data.shuffle {
            throw TrainingError("--no-shuffle contradicts \(path), which was trained with shuffling; drop the flag to resume")
        }
        if flagGiven("--lr") { next.optimizer.lr = options.lr }
        next.steps = options.steps
        return next
    }
}

/// Which checkpoint `--resume` means, decided on rank 0.
enum ResumeChoice {
    case fresh
    case checkpoint(String)

    /// `--resume PATH`: that file, which must verify. `--resume auto`: the newest file in
    /// `directory` that verifies (damaged ones are reported and skipped), or a fresh start.
    static func resolve(_ request: String?, directory: String, console: Console) throws -> ResumeChoice {
        guard let request else { return .fresh }
        if request != "auto" {
            do { try Checkpoint.verify(path: request) } catch {
                throw TrainingError("--resume \(request): \(error)")
            }
            return .checkpoint(request)
        }
        for name in Checkpoint.files(in: directory) {
            let path = directory + "/" + name
            do {
                try Checkpoint.verify(path: path)
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
