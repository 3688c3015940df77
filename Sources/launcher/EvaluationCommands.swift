import ArgumentParser
import Foundation
import Training

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a checkpoint on an HDF5 dataset: MSE, PSNR, SSIM, codebook use and bits per pixel.",
        discussion: """
        Metrics compare the reconstruction with the clean image on [0, 1] pixels clipped and rounded \
        to 8 bits; PSNR and SSIM (Gaussian window, sigma 1.5, as scikit-image computes it) are \
        averaged over images (a per-image PSNR is capped at 100 dB). With --corrupt the model sees \
        the damaged image and the damaged input's own PSNR and SSIM are reported beside it. Under \
        mpirun each rank evaluates a contiguous share of the images and the figures are reduced. \
        The table says which damage is evaluated and which the model was trained on.
        """)

    @OptionGroup var checkpoint: CheckpointOption
    @OptionGroup var dataset: DatasetOptions
    @Option(help: ArgumentHelp("Damage the input first (the reference stays clean), e.g. noise:0.1 or mask:0.25.",
                               discussion: "The same syntax as train --corrupt; draws keyed by (--seed, image index)."))
    var corrupt = ""
    @Option(parsing: .unconditional, help: "Seed of the corruption's random streams.")
    var seed: UInt64 = 1
    @Option(parsing: .unconditional, help: "Images per forward pass.")
    var batch = 64
    @Option(parsing: .unconditional, help: "Evaluate only the first N images (0 = all).")
    var limit = 0
    @Flag(help: "Print one JSON object instead of a table.")
    var json = false
    @Option(name: .customLong("recon-out"), help: "Write the reconstructions as float32 (N, H, W, C) in [0, 1], unclipped, to this HDF5 file.")
    var reconOut: String?
    @Option(name: .customLong("grid-out"), help: "Write a PNG grid of the first images: original | damaged | reconstruction.")
    var gridOut: String?
    @Option(name: .customLong("grid-images"), parsing: .unconditional, help: "Images in --grid-out.")
    var gridImages = 8
    @Option(parsing: .unconditional, help: "Residual VQ (--codebooks N): decode with only the first Q codebooks (a lower rate; a model trained with --quantizer-dropout decodes at any Q).")
    var codebooks: Int?
    @OptionGroup var force: ForceOption
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        var o = EvaluationOptions()
        o.codebooks = codebooks
        (o.checkpoint, o.data, o.imagesKey, o.corrupt, o.seed) = (checkpoint.checkpoint, dataset.data, dataset.imagesKey, corrupt, seed)
        (o.batch, o.limit, o.reconstructionsOut, o.gridOut, o.gridImages, o.force, o.threads) =
            (batch, limit, reconOut, gridOut, gridImages, force.force, threads.threads)
        o.rawWeights = checkpoint.rawWeights
        let json = self.json
        try finish(runOnEveryRank { communicator, console in
            let report = try Evaluation.run(o, communicator: communicator)
            if json {
                console.info(jsonLine(report.json))
            } else {
                report.lines.forEach(console.info)
            }
        })
    }
}

struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Linear probe: how much class information the frozen encoder's codes keep.",
        discussion: """
        Extracts the decoder's input for every image (the VQ-VAE's quantized vectors q, the VAE's \
        mean, the autoencoder's latent; h*w*D features per image) with the frozen model, fits a \
        softmax classifier on --train's features and `labels`, and reports its accuracy on --test. \
        Features are standardised with the training set's mean and deviation. Runs as one process.
        """)

    @OptionGroup var checkpoint: CheckpointOption
    @Option(help: "HDF5 dataset with `images` and `labels` to fit the classifier on.")
    var train: String
    @Option(help: "HDF5 dataset with `images` and `labels` to measure accuracy on.")
    var test: String
    @Option(parsing: .unconditional, help: "Passes over the training features.")
    var epochs = 30
    @Option(name: .customLong("batch"), parsing: .unconditional, help: "Images per encoder pass and per classifier minibatch.")
    var batch = 128
    @Option(parsing: .unconditional, help: "Adam learning rate of the classifier.")
    var lr: Float = 1e-3
    @Option(name: .customLong("weight-decay"), parsing: .unconditional, help: "L2 penalty on the classifier's weights.")
    var weightDecay: Float = 1e-4
    @Option(parsing: .unconditional, help: "Seed of the minibatch order.")
    var seed: UInt64 = 1
    @Option(parsing: .unconditional, help: "Use only the first N images of each dataset (0 = all).")
    var limit = 0
    @Flag(help: "Print one JSON object instead of text.")
    var json = false
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        var o = ProbeOptions()
        (o.checkpoint, o.train, o.test, o.epochs, o.batch) = (checkpoint.checkpoint, train, test, epochs, batch)
        (o.lr, o.weightDecay, o.seed, o.limit, o.threads) = (lr, weightDecay, seed, limit, threads.threads)
        o.rawWeights = checkpoint.rawWeights
        let json = self.json
        try finish(runAlone { console in
            let report = try LinearProbe(options: o).run()
            if json { console.info(jsonLine(report.json)) } else { report.lines.forEach(console.info) }
        })
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training speed: images/s, time per phase, GFLOP/s against sgemm, peak memory.",
        discussion: """
        Trains the given model for --steps steps after --warmup steps with the same step, sampler \
        and prefetcher as `train`, on synthetic images (or --data), on every rank of the MPI world, \
        and reports per rank and in total.
        """)

    @OptionGroup var architecture: ArchitectureOptions
    @Option(parsing: .unconditional, help: "Images per rank per step.")
    var batch = 32
    @Option(parsing: .unconditional, help: "Synthetic image height (ignored with --data).")
    var height = 32
    @Option(parsing: .unconditional, help: "Synthetic image width (ignored with --data).")
    var width = 32
    @Option(parsing: .unconditional, help: "Synthetic image channels, 1 or 3 (ignored with --data).")
    var channels = 3
    @Option(name: .long, parsing: .upToNextOption, help: "Benchmark on these HDF5 files instead of synthetic images.")
    var data: [String] = []
    @Option(parsing: .unconditional, help: "Steps before timing starts.")
    var warmup = 5
    @Option(parsing: .unconditional, help: "Timed steps.")
    var steps = 30
    @OptionGroup var threads: ThreadOptions
    @Option(name: .customLong("bucket-mb"), parsing: .unconditional, help: "Gradient bucket size in MB.")
    var bucketMegabytes = 1.0
    @Option(parsing: .unconditional, help: "Batches prepared ahead on a background thread (0: read on the training thread).")
    var prefetch = 2
    @Option(parsing: .unconditional, help: "Micro-batches per rank and step (gradient accumulation, as train --accumulate); must divide --batch.")
    var accumulate = 1
    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func run() throws {
        try checkValues {
            if batch < 1 || steps < 1 || warmup < 0 || threads.threads < 1 { throw ValidationError("--batch, --steps and --threads must be positive") }
            if accumulate < 1 || batch % accumulate != 0 {
                throw ValidationError("--accumulate \(accumulate) must divide --batch \(batch) into equal micro-batches")
            }
        }
        var o = BenchmarkOptions()
        o.architecture = architecture.configuration(height: height, width: width, channels: channels)
        (o.batch, o.data, o.warmup, o.steps, o.threads, o.bucketMegabytes, o.prefetch) =
            (batch, data, warmup, steps, threads.threads, bucketMegabytes, prefetch)
        o.accumulate = accumulate
        let json = self.json
        try finish(runOnEveryRank { communicator, console in
            let report = try Benchmark.run(o, communicator: communicator)
            if json { console.info(jsonLine(report.json)) } else { report.lines.forEach(console.info) }
        })
    }
}

/// One JSON object on one line, keys sorted.
func jsonLine(_ object: [String: Any]) -> String {
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
}
