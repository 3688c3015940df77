import ArgumentParser
import Foundation
import TOMLKit
import Training

/// A run file that cannot be used, or a value from it or from a preset that the command refused:
/// one line (`path:line: key = value: why`), exit status 2.
struct RunFileError: Error, CustomStringConvertible, Sendable {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One `vqvae train` flag as a key of a run file: the long name without `--`, the TOML values it
/// takes, and its line in `<out>/run.toml`.
struct RunFileKey: Sendable {
    enum Kind: Sendable {
        /// `true` gives the flag; `false` leaves it out (and so turns off a preset's).
        case flag
        case integer
        /// A non-negative integer; past 2^63 - 1, where TOML's integers end, a string of digits.
        case unsigned
        /// A floating-point number or an integer.
        case number
        case string
        /// A string or an array of strings (`data`).
        case strings
        /// A number or a string (`skip-weight = 0.5` or `"0..1"`).
        case numberOrString
    }

    let name: String
    let kind: Kind
    /// The value, as TOML text, that `<out>/run.toml` gives the key for a run that trains with
    /// these (resolved) options; nil leaves the key out.
    let written: @Sendable (TrainingOptions) -> String?

    init(_ name: String, _ kind: Kind, _ written: @escaping @Sendable (TrainingOptions) -> String?) {
        (self.name, self.kind, self.written) = (name, kind, written)
    }

    /// The arguments that give `value` to the flag; nil when the value is not of the key's kind.
    func arguments(for value: TOMLValueConvertible) -> [String]? {
        switch kind {
        case .flag:
            return value.bool.map { $0 ? ["--\(name)"] : [] }
        case .integer:
            return value.int.map { option("\($0)") }
        case .unsigned:
            return (value.int.map { "\($0)" } ?? value.string).map(option)
        case .number:
            return (value.double.map { "\($0)" } ?? value.int.map { "\($0)" }).map(option)
        case .string:
            return value.string.map(option)
        case .strings:
            if let single = value.string { return option(single) }
            guard let array = value.array, !array.isEmpty else { return nil }
            let strings = array.compactMap { $0.string }
            return strings.count == array.count ? strings.flatMap(option) : nil
        case .numberOrString:
            return (value.double.map { "\($0)" } ?? value.int.map { "\($0)" } ?? value.string).map(option)
        }
    }

    /// The option with `value`: `--name=value`, so that a value starting with `-` stays a value;
    /// an empty one (`corrupt = ""`, which the parser refuses after `=`) as a separate argument.
    func option(_ value: String) -> [String] {
        value.isEmpty ? ["--\(name)", ""] : ["--\(name)=\(value)"]
    }

    var isFlag: Bool {
        if case .flag = kind { return true }
        return false
    }

    /// What `arguments(for:)` takes, for the message about a value it does not.
    var expected: String {
        switch kind {
        case .flag: return "true or false"
        case .integer: return "an integer"
        case .unsigned: return "a non-negative integer"
        case .number: return "a number"
        case .string: return "a string"
        case .strings: return "a file name or a non-empty array of them"
        case .numberOrString: return "a number or a string"
        }
    }
}

/// The command line `vqvae train` parses: the settings of the run file (`--config`) and of the
/// task preset (`--task`) as `--key=value` arguments before the command line's own, each left out
/// where a later layer gives the same flag: command line > run file > preset > defaults.
struct LayeredCommandLine: Sendable {
    var arguments: [String]
    /// Where each setting the command line did not give came from, by flag (`--steps`):
    /// `run.toml:3: steps = -1`, `--task denoise`.
    var origins: [String: String] = [:]

    /// A command's check of its values, naming the run file's line or the preset when the flag
    /// it names (first in its message) came from there.
    func attributed(_ error: ValidationError) -> Error {
        let flag = String(error.message.prefix { $0 != " " && $0 != "," })
        guard let origin = origins[flag] else { return error }
        return RunFileError("\(origin): \(error.message)")
    }
}

/// The command line `main` parses and `givenFlags` reads: `train`'s with its run file and preset
/// laid under it, every other command's as given.
let layeredCommandLine: Result<LayeredCommandLine, RunFileError> = {
    let arguments = Array(CommandLine.arguments.dropFirst())
    guard arguments.first == Train._commandName else { return .success(LayeredCommandLine(arguments: arguments)) }
    do {
        var layered = try RunFile.layered(Array(arguments.dropFirst()))
        layered.arguments.insert(Train._commandName, at: 0)
        return .success(layered)
    } catch let error as RunFileError {
        return .failure(error)
    } catch {
        return .failure(RunFileError("\(error)"))
    }
}()

/// Run files: `vqvae train --config FILE` reads one, and every run writes `<out>/run.toml`
/// (docs/usage.md, "Run files and task presets"). A run file is TOML with flat `key = value`
/// lines, each key a `train` flag's long name; there are no sections.
enum RunFile {
    /// Every key `<out>/run.toml` writes, under the heading of its group, in the written order.
    /// `resume` and `kmeans-init` are read but not written (a run file repeats a run; the
    /// codebook start is `codebook-init`); `task` is read, and its flags are written instead.
    static let groups: [(heading: String, keys: [RunFileKey])] = [
        ("data", [
            RunFileKey("data", .strings) { "[" + $0.data.map(text).joined(separator: ", ") + "]" },
            RunFileKey("images-key", .string) { text($0.imagesKey) },
            RunFileKey("global-batch-size", .integer) { "\($0.globalBatchSize)" },
            RunFileKey("accumulate", .integer) { "\($0.accumulate)" },
            RunFileKey("no-shuffle", .flag) { "\(!$0.shuffle)" },
            RunFileKey("tail", .string) { text($0.tail.rawValue) },
            RunFileKey("corrupt", .string) { text($0.corrupt) },
            RunFileKey("crop", .integer) { $0.crop.map { "\($0)" } },
            RunFileKey("augment", .string) { text($0.augment.rawValue) },
            RunFileKey("crops-per-image", .integer) { "\($0.cropsPerImage)" },
            RunFileKey("prefetch", .integer) { "\($0.prefetch)" },
            RunFileKey("seed", .unsigned) { $0.seed <= UInt64(Int64.max) ? "\($0.seed)" : text("\($0.seed)") },
            RunFileKey("val", .string) { $0.validationData.map(text) },
            RunFileKey("val-every", .integer) { "\($0.validationEvery)" },
            RunFileKey("val-limit", .integer) { "\($0.validationLimit)" },
        ]),
        ("model", [
            RunFileKey("model", .string) { text($0.architecture.model.rawValue) },
            RunFileKey("hidden", .integer) { "\($0.architecture.hidden)" },
            RunFileKey("res-hidden", .integer) { "\($0.architecture.residualHidden)" },
            RunFileKey("res-blocks", .integer) { "\($0.architecture.residualBlocks)" },
            RunFileKey("down", .integer) { "\($0.architecture.downsamplings)" },
            // FSQ's levels set the code dimension and count, which may not be given beside them.
            RunFileKey("quantizer", .string) { $0.architecture.model == .vqvae ? text($0.architecture.quantizer.rawValue) : nil },
            RunFileKey("levels", .string) { o in o.architecture.quantizer == .fsq ? text(o.architecture.levels.map(String.init).joined(separator: ",")) : nil },
            RunFileKey("rotation-trick", .flag) { $0.architecture.hasCodebook ? "\($0.architecture.rotationTrick)" : nil },
            RunFileKey("code-dim", .integer) { $0.architecture.quantizer == .fsq ? nil : "\($0.architecture.codeDimension)" },
            RunFileKey("codebook-dim", .integer) { $0.architecture.hasCodebook ? "\($0.architecture.codebookDimension)" : nil },
            RunFileKey("codebooks", .integer) { $0.architecture.hasCodebook ? "\($0.architecture.codebooks)" : nil },
            RunFileKey("quantizer-dropout", .flag) { $0.architecture.codebooks > 1 ? "\($0.architecture.quantizerDropout)" : nil },
            RunFileKey("codes", .integer) { $0.architecture.quantizer == .fsq ? nil : "\($0.architecture.codes)" },
            RunFileKey("commitment", .number) { "\($0.architecture.commitment)" },
            RunFileKey("decay", .number) { "\($0.architecture.decay)" },
            RunFileKey("ema-eps", .number) { "\($0.architecture.emaEpsilon)" },
            RunFileKey("codebook", .string) { text($0.architecture.codebook.rawValue) },
            RunFileKey("kl-weight", .number) { "\($0.architecture.klWeight)" },
            RunFileKey("loss", .string) { text($0.architecture.loss.rawValue) },
            RunFileKey("loss-weight", .string) { text($0.architecture.lossWeighting.rawValue) },
            RunFileKey("residual", .flag) { "\($0.architecture.residual)" },
            RunFileKey("detail-layers", .integer) { "\($0.architecture.detailLayers)" },
            RunFileKey("detail-channels", .integer) { "\($0.architecture.detailChannels)" },
            RunFileKey("skips", .flag) { "\($0.architecture.skips)" },
            RunFileKey("skip-weight", .numberOrString) {
                let (low, high) = ($0.architecture.skipWeightLow, $0.architecture.skipWeightHigh)
                return low == high ? "\(low)" : text("\(low)..\(high)")
            },
            RunFileKey("mask-channel", .flag) { "\($0.architecture.maskChannel)" },
            RunFileKey("hole-fill", .string) { text($0.architecture.holeFill.rawValue) },
            RunFileKey("upsample", .string) { text($0.architecture.upsampling.rawValue) },
            // The codebook's controls only where they apply: written for a model without a
            // codebook (as the start it did not take), they would follow a --model override.
            RunFileKey("codebook-init", .string) { $0.architecture.hasCodebook ? text($0.codebookInit.rawValue) : nil },
            RunFileKey("kmeans-init", .flag) { _ in nil },
            RunFileKey("kmeans-iterations", .integer) { $0.architecture.hasCodebook ? "\($0.kmeansIterations)" : nil },
            RunFileKey("dead-code-threshold", .number) { o in
                o.architecture.hasCodebook && o.architecture.codebook == .ema ? o.deadCodeThreshold.map { "\($0)" } : nil
            },
        ]),
        ("optimiser", [
            RunFileKey("optimizer", .string) { text($0.optimizer.rawValue) },
            RunFileKey("lr", .number) { "\($0.lr)" },
            RunFileKey("beta1", .number) { "\($0.beta1)" },
            RunFileKey("beta2", .number) { "\($0.beta2)" },
            RunFileKey("adam-eps", .number) { "\($0.adamEpsilon)" },
            RunFileKey("weight-decay", .number) { "\($0.weightDecay)" },
            RunFileKey("warmup-steps", .integer) { "\($0.warmupSteps)" },
            RunFileKey("lr-schedule", .string) { text($0.lrSchedule.rawValue) },
            // Each schedule's own settings only with it: `train` refuses them with another.
            RunFileKey("lr-min", .number) { $0.lrSchedule == .cosine ? "\($0.lrMin)" : nil },
            RunFileKey("lr-decay-steps", .integer) { o in o.lrSchedule == .cosine ? o.lrDecaySteps.map { "\($0)" } : nil },
            RunFileKey("lr-step-every", .integer) { $0.lrSchedule == .step ? "\($0.lrStepEvery)" : nil },
            RunFileKey("lr-step-factor", .number) { $0.lrSchedule == .step ? "\($0.lrStepFactor)" : nil },
            RunFileKey("clip-grad-norm", .number) { "\($0.clipGradNorm)" },
            RunFileKey("weight-ema", .number) { $0.weightEMA.map { "\($0)" } },
        ]),
        ("run", [
            RunFileKey("out", .string) { text($0.out) },
            RunFileKey("steps", .integer) { "\($0.steps)" },
            RunFileKey("time-budget", .number) { "\($0.timeBudget)" },
            RunFileKey("log-every", .integer) { "\($0.logEvery)" },
            RunFileKey("checkpoint-every", .integer) { "\($0.checkpointEvery)" },
            RunFileKey("keep", .integer) { "\($0.keep)" },
            RunFileKey("keep-best", .string) { $0.keepBest.map(text) },
            RunFileKey("tensorboard", .flag) { "\($0.tensorboard)" },
            RunFileKey("sample-every", .integer) { "\($0.sampleEvery)" },
            RunFileKey("resume", .string) { _ in nil },
            RunFileKey("allow-other-data", .flag) { "\($0.allowOtherData)" },
            RunFileKey("threads", .integer) { "\($0.threads)" },
            RunFileKey("bucket-mb", .number) { "\($0.bucketMegabytes)" },
            RunFileKey("allreduce", .string) { text($0.allReduce.rawValue) },
            RunFileKey("ranks-per-node", .integer) { $0.ranksPerNode.map { "\($0)" } },
            RunFileKey("sync-check-every", .integer) { "\($0.syncCheckEvery)" },
            RunFileKey("skip-nonfinite", .flag) { "\($0.skipNonFinite)" },
            RunFileKey("watchdog", .number) { "\($0.watchdog)" },
        ]),
    ]

    /// Every key a run file may hold, by name: the flags above and `task`.
    static let keys: [String: RunFileKey] = Dictionary(
        uniqueKeysWithValues: (groups.flatMap(\.keys) + [RunFileKey("task", .string) { _ in nil }]).map { ($0.name, $0) })

    /// A setting of a run file or a preset: the key, the arguments that give it, where it came from.
    struct Setting {
        let key: String
        let arguments: [String]
        let origin: String
    }

    /// `train`'s `arguments` (after the command's name) with the settings of `--config FILE` and
    /// `--task NAME` (from the command line, or from the run file) laid under them. With `--help`
    /// the arguments are left as they are.
    static func layered(_ arguments: [String]) throws -> LayeredCommandLine {
        var given: Set<String> = []
        var config: String?, task: String?
        for (index, argument) in arguments.enumerated() {
            if argument == "--" { break }
            if ["-h", "--help", "--experimental-dump-help"].contains(argument) { return LayeredCommandLine(arguments: arguments) }
            guard argument.hasPrefix("--") else { continue }
            let parts = argument.dropFirst(2).split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            given.insert(name)
            // A missing value is left to the parser, which names it.
            let following: String? = index + 1 < arguments.count && !arguments[index + 1].hasPrefix("--") ? arguments[index + 1] : nil
            let value = parts.count == 2 ? String(parts[1]) : following
            if name == "config" { config = value }
            if name == "task" { task = value }
        }
        let file = try config.map { try read(path: $0) } ?? []
        task = task ?? file.first { $0.key == "task" }.map { String($0.arguments[0].dropFirst("--task=".count)) }
        // An unknown name on the command line is left to the parser, which lists the presets.
        let preset = task.flatMap(TrainingTask.init(argument:)).map(settings(of:)) ?? []

        var layers: [String: Setting] = [:]
        var order: [String] = []
        for setting in preset + file where setting.key != "task" && !given.contains(setting.key) {
            if layers.updateValue(setting, forKey: setting.key) == nil { order.append(setting.key) }
        }
        let settings = order.compactMap { layers[$0] }
        return LayeredCommandLine(arguments: settings.flatMap(\.arguments) + arguments,
                                  origins: Dictionary(uniqueKeysWithValues: settings.map { ("--\($0.key)", $0.origin) }))
    }

    /// The flags of `task` as settings.
    static func settings(of task: TrainingTask) -> [Setting] {
        var result: [Setting] = []
        var flags = task.flags[...]
        while let flag = flags.popFirst() {
            let name = String(flag.dropFirst(2))
            let key = keys[name] ?? RunFileKey(name, .string) { _ in nil }
            let arguments = key.isFlag ? [flag] : key.option(flags.popFirst() ?? "")
            result.append(Setting(key: name, arguments: arguments, origin: "--task \(task.name)"))
        }
        return result
    }

    /// The settings of the run file at `path`, in the order of its lines.
    static func read(path: String) throws -> [Setting] {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw RunFileError("--config \(path): no such file")
        }
        guard !isFolder.boolValue, let bytes = FileManager.default.contents(atPath: path) else {
            throw RunFileError("--config \(path): cannot read this file")
        }
        guard let text = String(bytes: bytes, encoding: .utf8) else {
            throw RunFileError("--config \(path): not a TOML run file (it is not UTF-8 text)")
        }
        return try read(text: text, path: path)
    }

    /// The settings of `text`, a run file named `path` in messages, each value checked as the
    /// command line's parser checks it.
    static func read(text: String, path: String) throws -> [Setting] {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            let position = error.source.begin
            throw RunFileError("\(path):\(position.line):\(position.column): not valid TOML: \(error.description)")
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        var settings: [(line: Int, setting: Setting)] = []
        for (name, value) in table {
            let line = Self.line(of: name, in: lines)
            let place = "\(path)" + (line.map { ":\($0)" } ?? "")
            if value.type == .table {
                throw RunFileError("\(place): [\(name)]: a run file has no sections or dotted keys; write every setting as `key = value` at the top")
            }
            let origin = "\(place): \(name) = \(value.debugDescription)"
            guard let key = keys[name] else {
                if name == "config" { throw RunFileError("\(origin): a run file cannot name another run file") }
                let suggestion = CommandLineExit.closest(to: name, among: keys.keys)
                throw RunFileError("\(place): unknown key '\(name)'" + (suggestion.map { "; did you mean '\($0)'?" } ?? "")
                    + " (the keys are the long flags of 'vqvae train --help', without --)")
            }
            guard let arguments = key.arguments(for: value) else {
                throw RunFileError("\(origin): expected \(key.expected), not \(describe(value.type))")
            }
            do {
                _ = try Train.parse(arguments)
            } catch {
                let message = CommandLineExit.sentenceStart(CommandLineExit.oneLine(Train.message(for: error)))
                throw RunFileError("\(origin): \(message)")
            }
            settings.append((line ?? Int.max, Setting(key: name, arguments: arguments, origin: origin)))
        }
        return settings.sorted { ($0.line, $0.setting.key) < ($1.line, $1.setting.key) }.map(\.setting)
    }

    /// The line (from 1) where `key` is set or opens a section: `key =`, `"key" =`, `[key]`,
    /// `key.x =`; nil when no line looks like it.
    static func line(of key: String, in lines: [Substring]) -> Int? {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        for (index, line) in lines.enumerated() {
            var rest = line.drop(while: blank)
            if rest.first == "[" { rest = rest.drop { $0 == "[" || blank($0) } }
            for form in [key, "\"\(key)\"", "'\(key)'"] where rest.hasPrefix(form) {
                if let next = rest.dropFirst(form.count).drop(while: blank).first, "=.]".contains(next) { return index + 1 }
            }
        }
        return nil
    }

    static func describe(_ type: TOMLType) -> String {
        switch type {
        case .int: return "an integer"
        case .double: return "a floating-point number"
        case .string: return "a string"
        case .bool: return "a boolean"
        case .array: return "an array"
        case .table: return "a table"
        case .date, .time, .dateTime: return "a date or time"
        }
    }

    /// The text of `<out>/run.toml` (named `path`) for a run that trains with `options`
    /// (`Trainer.resolvedOptions`): every key it has a value for, in groups, read back before it
    /// is returned so that no file the command could not read is ever written.
    static func text(of options: TrainingOptions, path: String) throws -> String {
        var lines = [
            "# The settings of a vqvae train run: every flag's value as the run used it, written when",
            "# training starts (again on every resume). `vqvae train --config <this file>` repeats the",
            "# run; flags given beside it take precedence (--out, --steps, ...).",
        ]
        for group in groups {
            lines += ["", "# \(group.heading)"] + group.keys.compactMap { key in key.written(options).map { "\(key.name) = \($0)" } }
        }
        let text = lines.joined(separator: "\n") + "\n"
        _ = try read(text: text, path: path)
        return text
    }

    /// `string` as a TOML basic string.
    static func text(_ string: String) -> String {
        var result = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                result += String(format: "\\u%04X", scalar.value)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}
