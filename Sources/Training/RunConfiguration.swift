import Data
import Foundation
import Model

/// The resolved configuration of a run, stored as JSON (`config`) in every checkpoint.
public struct RunConfiguration: Codable, Sendable {
    public struct Optimizer: Codable, Sendable {
        public var name = "adam"
        public var lr: Float
        public var beta1: Double
        public var beta2: Double
        public var eps: Double
        public var weightDecay: Double
    }
    public struct DataSettings: Codable, Sendable {
        public var files: [String]
        public var imagesKey: String
        public var globalBatchSize: Int
        public var shuffle: Bool
        public var datasetSize: Int
        public var tail: String
        public var corrupt: String
    }
    public var model: ModelConfiguration
    public var optimizer: Optimizer
    public var data: DataSettings
    public var seed: UInt64
    public var steps: Int

    /// A fresh run's configuration from `options` and the data it reads.
    init(options: TrainingOptions, dataset: ImageDataset, corruptions: CorruptionPipeline) {
        var model = options.architecture
        (model.height, model.width, model.channels) = (dataset.height, dataset.width, dataset.channels)
        self.model = model
        optimizer = Optimizer(lr: options.lr, beta1: options.beta1, beta2: options.beta2, eps: options.adamEpsilon,
                              weightDecay: options.weightDecay)
        data = DataSettings(files: dataset.paths, imagesKey: options.imagesKey, globalBatchSize: options.globalBatchSize,
                            shuffle: options.shuffle, datasetSize: dataset.count, tail: options.tail.rawValue,
                            corrupt: corruptions.description)
        seed = options.seed
        steps = options.steps
    }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }

    /// The configuration stored in a checkpoint; `path` names it in the error.
    public static func decode(_ json: String, path: String) throws -> RunConfiguration {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do {
            return try decoder.decode(RunConfiguration.self, from: Data(json.utf8))
        } catch {
            throw TrainingError("\(path): its configuration cannot be read (\(error)); was it written by another version?")
        }
    }

    /// The configuration of a resumed run: this one (the checkpoint's), with only what may change
    /// on resume taken from `options` (`steps`, and `lr` when given). A given setting that
    /// contradicts the checkpoint is refused with its flag's name.
    func resumed(with options: TrainingOptions, checkpoint path: String) throws -> RunConfiguration {
        var next = self
        let cli = options.architecture
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
        for (flag, given, saved) in checks where options.given(flag) && given != saved {
            throw TrainingError("\(flag) \(given) contradicts \(path), which was trained with \(flag) \(saved); drop the flag to resume, or start a new --out")
        }
        if options.given("--no-shuffle") && data.shuffle {
            throw TrainingError("--no-shuffle contradicts \(path), which was trained with shuffling; drop the flag to resume")
        }
        if options.given("--lr") { next.optimizer.lr = options.lr }
        next.steps = options.steps
        return next
    }
}

/// Expands shell-style patterns (`train-*.h5`) that the shell left alone, in sorted order; a
/// pattern that matches nothing is an error, a plain path is kept as given.
public func expandGlobs(_ paths: [String]) throws -> [String] {
    var result: [String] = []
    for path in paths {
        guard path.contains(where: { "*?[".contains($0) }) else { result.append(path); continue }
        var matches = glob_t()
        defer { globfree(&matches) }
        guard glob(path, 0, nil, &matches) == 0, matches.gl_pathc > 0 else {
            throw TrainingError("--data \(path): no file matches this pattern")
        }
        result += (0..<Int(matches.gl_pathc)).compactMap { matches.gl_pathv[$0].map { String(cString: $0) } }.sorted()
    }
    return result
}
