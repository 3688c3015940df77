import ArgumentParser
import Data
import Model
import Foundation
import Training

struct TrainPrior: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-prior",
        abstract: "Train the learned prior over a VQ-VAE's codes that compress and sample use.",
        discussion: """
        The prior predicts each code of a grid from the codes coded before it: four phases over the \
        positions' parities, and within a phase the residual VQ's codebooks in order (docs/codec.md). \
        It trains on the codes the frozen VQ-VAE of --checkpoint gives random --crop crops of --data, \
        data-parallel under mpirun or srun like train: the same results on any number of ranks, \
        checkpoints in <out>/checkpoints, exact resume with --resume auto. Each image trains one \
        phase and its first n codebooks (n drawn from 1...L), so one prior serves every rate.
        """)

    @OptionGroup var checkpoint: CheckpointOption
    @OptionGroup var dataset: DatasetOptions
    @Option(help: "Output folder for the prior's checkpoints.")
    var out: String
    @Option(parsing: .unconditional, help: "The total number of optimiser steps (the cosine schedule ends there).")
    var steps = 3000
    @Option(name: .customLong("global-batch-size"), parsing: .unconditional, help: "Crops per step over all ranks.")
    var globalBatchSize = 32
    @Option(parsing: .unconditional, help: "Crop side in pixels (default: the VQ-VAE's training size).")
    var crop: Int?
    @Option(name: .customLong("crops-per-image"), parsing: .unconditional, help: "Crops of every image per epoch.")
    var cropsPerImage = 8
    @Option(parsing: .unconditional, help: "Adam learning rate (peak of the cosine schedule).")
    var lr = 2e-3
    @Option(name: .customLong("lr-min"), parsing: .unconditional, help: "The learning rate at the last step.")
    var lrMin = 2e-5
    @Option(name: .customLong("warmup-steps"), parsing: .unconditional, help: "Linear warm-up steps.")
    var warmupSteps = 100
    @Option(parsing: .unconditional, help: "Hidden channels of the prior (a multiple of 16).")
    var channels = 96
    @Option(parsing: .unconditional, help: "Seed of the prior's weights, the crops and the draws.")
    var seed: UInt64 = 1
    @Option(name: .customLong("checkpoint-every"), parsing: .unconditional, help: "Write a checkpoint every N steps (and at the end).")
    var checkpointEvery = 500
    @Option(name: .customLong("log-every"), parsing: .unconditional, help: "Print the training rate every N steps.")
    var logEvery = 50
    @Option(name: .customLong("time-budget"), parsing: .unconditional, help: "Stop after the step that ends SECONDS of training (0 = no limit).")
    var timeBudget = 0.0
    @Option(help: "Continue from a prior checkpoint: a path, or auto (the newest in <out>/checkpoints).")
    var resume: String?
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        var o = PriorTrainingOptions()
        (o.checkpoint, o.rawWeights, o.data, o.imagesKey, o.out) = (checkpoint.checkpoint, checkpoint.rawWeights, dataset.data, dataset.imagesKey, out)
        (o.steps, o.globalBatchSize, o.crop, o.cropsPerImage, o.lr, o.lrMin, o.warmupSteps) = (steps, globalBatchSize, crop, cropsPerImage, lr, lrMin, warmupSteps)
        (o.channels, o.seed, o.checkpointEvery, o.logEvery, o.timeBudget, o.resume, o.threads) = (channels, seed, checkpointEvery, logEvery, timeBudget, resume, threads.threads)
        try finish(runOnEveryRank { communicator, console in
            try PriorTrainer(options: o, communicator: communicator, console: console).run()
        })
    }
}

/// `--checkpoint` and `--prior` of the codec commands.
struct CodecModelOptions: ParsableArguments {
    @OptionGroup var checkpoint: CheckpointOption
    @Option(help: "The prior (vqvae train-prior) the codes are entropy-coded with; without one every code costs log2(K) bits.")
    var prior: String?
}

struct Compress: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compress an image (PNG or JPEG, any size) to a .vqz file: the VQ-VAE's codes, entropy-coded under the prior.",
        discussion: """
        The whole image is encoded at once (padded by repeating its edges to a multiple of 2^down, \
        cropped back on decompression: no tiles, no seams). With a residual VQ, --levels Q codes only \
        the first Q codebooks: a lower rate from the same model; --psnr DB instead lets every position \
        code as many of them as reaching DB over the whole image needs, the fewest bits for that \
        quality (a version-2 file, with a map of the levels), or --lambda L at a fixed trade-off of \
        error against bits. The file names the model and the prior \
        by fingerprints; docs/codec.md describes it. Bits per pixel = file bytes x 8 / pixels.
        """)

    @OptionGroup var models: CodecModelOptions
    @Argument(help: "The image to compress (PNG or JPEG).")
    var input: String
    @Option(name: .short, help: "The .vqz file to write.")
    var output: String
    @Option(parsing: .unconditional, help: "Residual VQ: code only the first Q codebooks (default: all).")
    var levels: Int?
    @Option(parsing: .unconditional, help: ArgumentHelp(
        "Residual VQ: reach this PSNR (dB) with the fewest bits, each position coding its own number of codebooks (up to --levels).",
        valueName: "dB"))
    var psnr: Double?
    @Option(parsing: .unconditional, help: ArgumentHelp(
        "Residual VQ: per-position codebooks at a fixed trade-off instead, each position minimising its squared error (8-bit units) + L x its bits; the same L for every image gives a rate-distortion curve.",
        valueName: "L"))
    var lambda: Double?
    @Option(parsing: .unconditional, help: ArgumentHelp(
        "Choose the codes for the decoded image rather than for the latent: this many rounds of a gradient step through the decoder and a new quantization, each kept only when the 8-bit image's squared error (with --lambda: error + L x bits) falls. Slower encoding; decoding unchanged.",
        valueName: "ROUNDS"))
    var refine: Int = 0
    @OptionGroup var force: ForceOption
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        guard (0...10_000).contains(refine) else {
            throw ValidationError("--refine must be in 0...10000 (got \(refine))")
        }
        var o = ImageCompression.Options()
        (o.checkpoint, o.prior, o.rawWeights, o.input, o.output, o.levels, o.psnr, o.lambda, o.refine, o.force) =
            (models.checkpoint.checkpoint, models.prior, models.checkpoint.rawWeights, input, output, levels, psnr, lambda, refine,
             force.force)
        try runReporting("compress", threads: threads.threads) { try ImageCompression.compress(o) }
    }
}

struct Decompress: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decompress a .vqz file to an image (PNG, or JPEG by the -o extension).",
        discussion: """
        Needs the model and prior the file was written with (--checkpoint, --prior): the file names \
        them by fingerprint and any other is refused. The decoded image is the VQ-VAE's reconstruction \
        from the coded codebooks, bit for bit.
        """)

    @OptionGroup var models: CodecModelOptions
    @Argument(help: "The .vqz file.")
    var input: String
    @Option(name: .short, help: "The image file to write (.png or .jpg).")
    var output: String
    @OptionGroup var force: ForceOption
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        var o = ImageCompression.Options()
        (o.checkpoint, o.prior, o.rawWeights, o.input, o.output, o.force) =
            (models.checkpoint.checkpoint, models.prior, models.checkpoint.rawWeights, input, output, force.force)
        try runReporting("decompress", threads: threads.threads) { try ImageCompression.decompress(o) }
    }
}

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw code grids from the prior and decode them: a PNG grid of generated images.",
        discussion: """
        Codes are drawn in the prior's coding order (four phases, the codebooks in order), each from \
        the prior's softmax at --temperature, restricted to its --top-k most likely codes when given; \
        sample n draws from its own stream keyed by (--seed, n).
        """)

    @OptionGroup var checkpoint: CheckpointOption
    @Option(help: "The prior (vqvae train-prior) to draw from.")
    var prior: String
    @Option(name: .short, help: "The PNG file to write.")
    var output: String
    @Option(name: .short, parsing: .unconditional, help: "How many images.")
    var n = 16
    @Option(parsing: .unconditional, help: "Side of each image in pixels (a multiple of 2^down).")
    var size = 128
    @Option(parsing: .unconditional, help: "Softmax temperature (below 1: safer, above: more varied).")
    var temperature = 1.0
    @Option(name: .customLong("top-k"), parsing: .unconditional, help: "Draw only among the K most likely codes (0 = all).")
    var topK = 0
    @Option(parsing: .unconditional, help: "Residual VQ: draw only the first Q codebooks.")
    var levels: Int?
    @Option(parsing: .unconditional, help: "Seed of the draws.")
    var seed: UInt64 = 1
    @OptionGroup var force: ForceOption
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        var o = CodeSampling.Options()
        (o.checkpoint, o.rawWeights, o.prior, o.output, o.count, o.size) = (checkpoint.checkpoint, checkpoint.rawWeights, prior, output, n, size)
        (o.temperature, o.topK, o.levels, o.seed, o.force) = (temperature, topK, levels, seed, force.force)
        try runReporting("sample", threads: threads.threads) { try CodeSampling.run(o) }
    }
}

/// Runs a single-process codec command with `threads` BLAS threads and prints its one-line report.
func runReporting(_ command: String, threads: Int, _ body: @escaping () throws -> String) throws {
    try finish(runAsOneProcess(command) { console in
        setBLASThreads(threads)
        console.info(try body())
        return 0
    })
}
