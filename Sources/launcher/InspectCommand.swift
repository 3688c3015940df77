import ArgumentParser
import Data
import Training

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe an HDF5 image dataset, checkpoint, prior checkpoint, code file or .vqz file.",
        discussion: "A dataset: N, H, W, C, dtype, chunking, filters and labels. A checkpoint: step, model, configuration, tensor shapes and whether every checksum verifies. A code file (`vqvae encode`): images, latent grid, codebook size, bits per code and the checkpoint it names. A prior checkpoint (`vqvae train-prior`): step, the model whose codes it models, size, checksums. A .vqz file (`vqvae compress`): size, bits per pixel, codebooks, fingerprints, after its CRC-32 check.")

    @Argument(help: "File(s) to describe.")
    var files: [String]
    @OptionGroup var key: ImagesKeyOption

    func run() throws {
        let console = Console()
        var failed = false
        for file in files {
            do {
                if ImageCompression.looksLikeVQZ(path: file) {
                    console.info(try ImageCompression.describe(path: file))
                } else {
                    console.info(try Inspector.describe(path: file, imagesKey: key.imagesKey))
                }
            } catch {
                console.error("\(error)")
                failed = true
            }
        }
        if failed { throw ExitCode(1) }
    }
}
