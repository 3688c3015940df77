import ArgumentParser
import Foundation
import Training

/// How `vqvae` ends when something goes wrong (docs/usage.md, "Errors and exit status"): one line
/// `error: <message>` on standard error and
///
/// - status 1 for a failure while the command runs (a bad file, a failed collective), which the
///   library has already reported (`runOnEveryRank`, `runAlone`);
/// - status 2 for a command line that is wrong (an unknown option, a missing or invalid value),
///   followed by one line naming the command's help, printed by rank 0 only under a launcher.
///
/// `--help` and `--version` print to standard output and exit 0.
enum CommandLineExit {
    static let usageStatus: Int32 = 2

    /// Reports `error`, thrown while parsing `arguments` (without the program's name) or running
    /// the command they chose, and returns the exit status.
    static func status(for error: Error, arguments: [String]) -> Int32 {
        if let exitCode = error as? ExitCode { return exitCode.rawValue }
        if let error = error as? RunFileError {
            // The fix is in the run file (or the preset's value it names), not in the help.
            reportOnce(["error: \(error)"])
            return usageStatus
        }
        let code = VQVAECommand.exitCode(for: error)
        if code.isSuccess {
            print(VQVAECommand.fullMessage(for: error))
            return 0
        }
        let message = oneLine(VQVAECommand.message(for: error))
        guard code == .validationFailure else {
            Console().error(message)
            return code.rawValue
        }
        let command = subcommand(in: arguments)
        var reported = message
        if !message.hasPrefix("Unknown option"), let command, let unknown = unknownOption(in: arguments, command: command) {
            // ArgumentParser checks required options and values before it looks for unknown
            // ones, so `eval --config x` would otherwise be reported as a missing `--checkpoint`.
            reported = unknown
        }
        let help = (["vqvae"] + [command].compactMap { $0 }).joined(separator: " ") + " --help"
        reportOnce(["error: \(sentenceStart(reported))", "see '\(help)'"])
        return usageStatus
    }

    /// The subcommand `arguments` name (its first element, when it is one).
    static func subcommand(in arguments: [String]) -> String? {
        guard let first = arguments.first else { return nil }
        return VQVAECommand.configuration.subcommands.map { $0._commandName }.first { $0 == first }
    }

    /// `Unknown option '--x'` (with ArgumentParser's suggestion of a close name) for the first
    /// `--x` in `arguments` that `command` does not accept; nil when every one is known.
    static func unknownOption(in arguments: [String], command: String) -> String? {
        guard let known = longOptions(of: command) else { return nil }
        for argument in arguments.dropFirst() {
            if argument == "--" { break }
            guard argument.hasPrefix("--"), argument.count > 2 else { continue }
            let name = String(argument.dropFirst(2).prefix { $0 != "=" })
            guard !known.contains(name) else { continue }
            return "Unknown option '--\(name)'" + (closest(to: name, among: known).map { ". Did you mean '--\($0)'?" } ?? "")
        }
        return nil
    }

    /// ArgumentParser's suggestion for a misspelt `name`: the closest of `known` within an edit
    /// distance below 4.
    static func closest(to name: String, among known: some Sequence<String>) -> String? {
        known.map { ($0, editDistance($0, name)) }.filter { $0.1 < 4 }.min { ($0.1, $0.0) < ($1.1, $1.0) }?.0
    }

    /// The long option names (without `--`) that `command` accepts, from ArgumentParser's own
    /// description of it (`--experimental-dump-help`); nil if that cannot be read.
    static func longOptions(of command: String) -> Set<String>? {
        let description: String
        do {
            _ = try VQVAECommand.parseAsRoot([command, "--experimental-dump-help"])
            return nil
        } catch {
            description = VQVAECommand.fullMessage(for: error)
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(description.utf8)) as? [String: Any],
              let info = object["command"] as? [String: Any], let arguments = info["arguments"] as? [[String: Any]] else {
            return nil
        }
        let names = arguments.flatMap { ($0["names"] as? [[String: Any]]) ?? [] }
            .filter { $0["kind"] as? String == "long" }.compactMap { $0["name"] as? String }
        return Set(names + ["help", "version", "experimental-dump-help"])
    }

    /// ArgumentParser's messages may span lines; ours are one.
    static func oneLine(_ message: String) -> String {
        message.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            .joined(separator: "; ")
    }

    /// `Missing value ...` as `missing value ...`, the style of every other error line; a word in
    /// capitals (`HDF5`) is left as it is.
    static func sentenceStart(_ message: String) -> String {
        guard let first = message.first, let second = message.dropFirst().first, first.isUppercase, second.isLowercase else {
            return message
        }
        return first.lowercased() + message.dropFirst()
    }

    /// The Levenshtein distance between `a` and `b`.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var previous = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
