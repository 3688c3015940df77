import ArgumentParser
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
        subcommands: [Train.self, Eval.self, Restore.self, Encode.self, Decode.self, Probe.self, Inspect.self, Bench.self])

    static func main() {
        ProcessEnvironment.prepare()
        Self.main(nil)
    }
}

/// Ends the command with `status` (the library has already printed any error).
func finish(_ status: Int32) throws {
    if status != 0 { throw ExitCode(status) }
}

/// The long options typed on the command line (`--lr`, `--no-shuffle`), as opposed to defaults.
func givenFlags() -> Set<String> {
    Set(CommandLine.arguments.filter { $0.hasPrefix("--") }.map { String($0.split(separator: "=", maxSplits: 1)[0]) })
}
