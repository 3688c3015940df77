import ArgumentParser
import Data
import Training

extension ImageFormat: ExpressibleByArgument {}
extension PixelType: ExpressibleByArgument {}

struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore damaged images with a trained model (denoising, inpainting, deblurring, brightening).",
        discussion: """
        --input is an HDF5 dataset (`images` (N, H, W, C)), an image file (PNG or JPEG) or a folder \
        of them (sub-folders included; the output folder mirrors their paths); --out is the same \
        kind (HDF5 output holds uint8 images; a file output is written in the format its extension \
        names, a folder's images in --format). Images of another size than the model's training \
        size are restored in overlapping tiles of that size, blended with a raised-cosine window so \
        that no seams appear (--whole runs the fully convolutional model on the whole image at once \
        instead, when its sides are multiples of 2^down). Gray images stay gray and transparency is \
        copied through. --corrupt damages clean input first, for demonstrations; --damaged-out keeps \
        that damaged input. Runs as one process (--threads for more cores). Exit status: 0 done, \
        1 error (a bad input or output is found before anything is written), 3 some images were skipped (--skip-bad).
        """)

    @OptionGroup var checkpoint: CheckpointOption
    @Option(help: "Images to restore: an HDF5 dataset file, a PNG or JPEG file, or a folder of them.")
    var input: String
    @Option(help: "Where to write the restored images: the same kind as --input.")
    var out: String
    @Option(help: "Damage the input first, e.g. noise:0.1 or mask:0.25 (the same syntax as train --corrupt).")
    var corrupt = ""
    @Option(name: .customLong("damaged-out"), help: "With --corrupt or --mask: also write the damaged input here (same kind as --out).")
    var damagedOut: String?
    @Option(help: "Inpainting: an image of the input's size whose white pixels are missing; they are filled as the model saw holes in training and restored, every other pixel is kept (image file input only).")
    var mask: String?
    @Option(help: "Seed of the corruption's random streams.")
    var seed: UInt64 = 1
    @Option(help: "Least overlap in pixels between neighbouring tiles (default: a quarter of the tile's side along each axis).")
    var overlap: Int?
    @Flag(help: "Run the model on each whole image at once instead of tiles (sides must be multiples of 2^down).")
    var whole = false
    @Flag(help: "Self-ensemble: restore the image and its seven mirrored and rotated copies, map each result back and average them (8x the work; usually a little more PSNR).")
    var ensemble = false
    @Option(help: "Tiles per forward pass.")
    var batch = 32
    @Option(parsing: .unconditional, help: "Models trained with --skips: the weight of the input's own detail, from 0 (restore from the latent or codes alone) to 1 (trust the input fully); default: the top of the --skip-weight range it was trained with.")
    var fidelity: Double?
    @Option(name: .customLong("noise-consistency"), help: "Denoising: shift each region of the restoration until clipped Gaussian noise of sigma would give the noisy input's local mean (removes the colour casts of noise clipped at black or white): auto (models trained on noise alone, sigma estimated from each image), off, or the input's sigma on the 0-1 scale.")
    var noiseConsistency = "auto"
    @OptionGroup var key: ImagesKeyOption
    @Option(help: "Format of the images written into a folder: png or jpeg (default png; x.jpg is written as x.png).")
    var format: ImageFormat?
    @Option(help: "JPEG quality (1-100) of JPEG output.")
    var quality = 95
    @Flag(name: .customLong("skip-bad"), help: "Folder input: skip images that cannot be read, list them at the end and exit with status 3 (without it, one unreadable image stops the run before anything is written).")
    var skipBad = false
    @OptionGroup var force: ForceOption
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        var o = RestoreOptions()
        (o.checkpoint, o.input, o.out, o.corrupt, o.damagedOut, o.seed) = (checkpoint.checkpoint, input, out, corrupt, damagedOut, seed)
        (o.overlap, o.whole, o.ensemble, o.batch, o.imagesKey, o.threads) = (overlap, whole, ensemble, batch, key.imagesKey, threads.threads)
        (o.format, o.quality, o.skipBad, o.force, o.mask) = (format, quality, skipBad, force.force, mask)
        o.fidelity = fidelity
        o.rawWeights = checkpoint.rawWeights
        guard let consistency = NoiseConsistencySetting(noiseConsistency) else {
            throw ValidationError("--noise-consistency must be auto, off or a sigma in (0, 0.5] (got \(noiseConsistency))")
        }
        o.noiseConsistency = consistency
        try finish(runAsOneProcess("restore") { try Restoration(options: o, console: $0).run().exitStatus })
    }
}

struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compress images to VQ-VAE code indices, bit-packed in an HDF5 code file.",
        discussion: """
        Each image becomes its latent grid of code indices (h x w), stored at ceil(log2 K) bits per \
        code. The file names the checkpoint and a checksum of its codebook; `vqvae decode` turns it \
        back into images, exactly the reconstructions `vqvae eval --recon-out` writes. Runs as one \
        process (--threads for more cores).
        """)

    @OptionGroup var checkpoint: CheckpointOption
    @OptionGroup var dataset: DatasetOptions
    @Option(help: "Output code file (HDF5).")
    var out: String
    @Option(help: "Images per forward pass.")
    var batch = 64
    @Option(help: "Encode only the first N images (0 = all).")
    var limit = 0
    @OptionGroup var force: ForceOption
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        var o = EncodeOptions()
        (o.checkpoint, o.data, o.imagesKey, o.out, o.batch, o.limit, o.threads, o.force) =
            (checkpoint.checkpoint, dataset.data, dataset.imagesKey, out, batch, limit, threads.threads, force.force)
        o.rawWeights = checkpoint.rawWeights
        try finish(runAsOneProcess("encode") { try CodeFiles.encode(o, console: $0); return 0 })
    }
}

struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn a code file from `vqvae encode` back into images.",
        discussion: """
        Writes (N, H, W, C) images to --out: float32 in [0, 1], unclipped (as `vqvae eval --recon-out`), \
        or with --dtype uint8 rounded and clipped to 0-255 (a quarter of the size); --png-out also \
        writes the first images as PNG files. The checkpoint defaults to the one named in the code \
        file; its codebook must be the one the codes were made with. Runs as one process (--threads \
        for more cores).
        """)

    @Option(help: "Code file written by `vqvae encode`.")
    var codes: String
    @Option(help: "VQ-VAE checkpoint (default: the one named in the code file).")
    var checkpoint: String?
    @Option(help: "Output HDF5 file for the decoded images.")
    var out: String
    @Option(help: "Sample type of --out: float32 (unclipped, as eval --recon-out) or uint8 (rounded and clipped).")
    var dtype: PixelType = .float32
    @Option(name: .customLong("png-out"), help: "Folder for PNG files of the first decoded images (created if missing; one that holds files needs --force).")
    var pngOut: String?
    @Option(name: .customLong("png-images"), help: "How many images --png-out writes.")
    var pngImages = 16
    @Option(help: "Images per decoder pass.")
    var batch = 64
    @OptionGroup var force: ForceOption
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        var o = DecodeOptions()
        (o.codes, o.checkpoint, o.out, o.pngOut, o.pngImages, o.batch, o.threads) =
            (codes, checkpoint, out, pngOut, pngImages, batch, threads.threads)
        (o.dtype, o.force) = (dtype, force.force)
        try finish(runAsOneProcess("decode") { try CodeFiles.decode(o, console: $0); return 0 })
    }
}
