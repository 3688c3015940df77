import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

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
