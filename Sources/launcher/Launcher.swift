import ArgumentParser
import Foundation
import Training

@main
struct VQVAECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vqvae",
        abstract: "Data-parallel VQ-VAE training on HDF5 image datasets (OpenMPI, OpenBLAS).",
        discussion: """
        Run as a plain process (one rank) or under `mpirun -np W` / `srun`: every rank trains the
        same model on its share of each global batch.
        """,
        version: "vqvae \(VQVAEVersion.current)",
        subcommands: [Train.self, Eval.self, Restore.self, Encode.self, Decode.self, Probe.self, Inspect.self, Bench.self, TrainPrior.self, Compress.self, Decompress.self, Sample.self])

    /// Parses the command line and runs the command it names; every error ends as one
    /// `error: ...` line and a documented exit status (`CommandLineExit`).
    static func main() {
        ProcessEnvironment.prepare()
        let arguments: [String]
        switch layeredCommandLine {
        case .success(let layered): arguments = layered.arguments
        case .failure(let error): Foundation.exit(CommandLineExit.status(for: error, arguments: []))
        }
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            Foundation.exit(CommandLineExit.status(for: error, arguments: arguments))
        }
    }
}

/// Runs a command's checks of its option values, turning what they throw into a usage error (exit
/// status 2). Commands call it first thing in `run`, not in `validate`: ArgumentParser validates
/// before it looks for unknown options, and an unknown option is the error to report.
func checkValues(_ checks: () throws -> Void) throws {
    do { try checks() } catch let error as ValidationError { throw error } catch { throw ValidationError("\(error)") }
}

/// Ends the command with `status` (the library has already printed any error).
func finish(_ status: Int32) throws {
    if status != 0 { throw ExitCode(status) }
}

/// The long options typed on the command line (`--lr`, `--no-shuffle`), or given by `train`'s run
/// file or task preset (`RunFile`), as opposed to defaults.
func givenFlags() -> Set<String> {
    let arguments = (try? layeredCommandLine.get().arguments) ?? CommandLine.arguments
    return Set(arguments.filter { $0.hasPrefix("--") }.map { String($0.split(separator: "=", maxSplits: 1)[0]) })
}
