import ArgumentParser
import Data
import Model

/// Architecture flags of spec/model.md, shared by every command that builds a model.
struct ArchitectureOptions: ParsableArguments {
    @Option(help: "Model: vqvae (vector-quantised codes), vae (Gaussian latent with a KL term) or ae (plain autoencoder); the same encoder and decoder.")
    var model: ModelKind = .vqvae
    @Option(help: "Hidden channels H of the encoder and decoder.")
    var hidden = 128
    @Option(name: .customLong("res-hidden"), help: "Hidden channels R inside each residual block.")
    var residualHidden = 32
    @Option(name: .customLong("res-blocks"), help: "Residual blocks B in the encoder and in the decoder.")
    var residualBlocks = 2
    @Option(help: "Stride-2 layers: the latent grid is (H/2^down) x (W/2^down).")
    var down = 2
    @Option(name: .customLong("code-dim"), help: "Dimension D of each code vector.")
    var codeDimension = 64
    @Option(help: "Codebook size K.")
    var codes = 512
    @Option(help: "Commitment weight beta.")
    var commitment = 0.25
    @Option(help: "EMA decay gamma of the codebook statistics.")
    var decay = 0.99
    @Option(name: .customLong("ema-eps"), help: "Laplace smoothing epsilon of the EMA counts.")
    var emaEpsilon = 1e-5
    @Option(help: "Codebook learning: ema (moving averages) or grad (trained with a codebook loss).")
    var codebook: CodebookKind = .ema
    @Option(name: .customLong("kl-weight"), help: "--model vae: weight of the KL term; the KL is summed over the latent and divided by the pixel elements N*H*W*C, like the reconstruction mean.")
    var klWeight = 0.001

    func configuration(height: Int, width: Int, channels: Int) -> ModelConfiguration {
        var c = ModelConfiguration(height: height, width: width, channels: channels)
        c.model = model
        c.hidden = hidden
        c.residualHidden = residualHidden
        c.residualBlocks = residualBlocks
        c.downsamplings = down
        c.codeDimension = codeDimension
        c.codes = codes
        c.commitment = commitment
        c.decay = decay
        c.emaEpsilon = emaEpsilon
        c.codebook = codebook
        c.klWeight = klWeight
        return c
    }
}

extension ModelKind: ExpressibleByArgument {}
extension CodebookKind: ExpressibleByArgument {}
extension EpochTail: ExpressibleByArgument {}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model on HDF5 images and write checkpoints.",
        discussion: """
        Reads `images` (N, H, W, C), uint8 or float32, from the given HDF5 files (spec/dataset.md), \
        trains with Adam, and writes <out>/checkpoints/step-XXXXXXXX.h5 (spec/checkpoint.md) and \
        <out>/metrics.jsonl. --steps 0 writes only the initial checkpoint.
        """)

    @Option(name: .long, parsing: .upToNextOption, help: "HDF5 dataset file(s), concatenated in order.")
    var data: [String] = []
    @Option(name: .customLong("images-key"), help: "Name of the images dataset in each file.")
    var imagesKey = "images"
    @Option(help: "Output folder for checkpoints and metrics (created if missing).")
    var out: String
    @Option(help: "Optimiser steps to train.")
    var steps = 1000
    @Option(name: .customLong("global-batch-size"), help: "Images per step over all ranks; each of W ranks takes G/W.")
    var globalBatchSize = 32
    @Option(help: "Adam learning rate.")
    var lr: Float = 3e-4
    @Option(name: .customLong("beta1"), help: "Adam beta1.")
    var beta1 = 0.9
    @Option(name: .customLong("beta2"), help: "Adam beta2.")
    var beta2 = 0.999
    @Option(name: .customLong("adam-eps"), help: "Adam epsilon.")
    var adamEpsilon = 1e-8
    @Option(name: .customLong("weight-decay"), help: "L2 weight decay added to the gradient (PyTorch Adam's weight_decay).")
    var weightDecay = 0.0
    @Option(help: ArgumentHelp("Damage the input images (the target stays clean) for restoration training, e.g. noise:0.1,mask:0.25.",
                               discussion: "Items: noise:SIGMA, saltpepper:FRACTION, mask:AREA[:VALUE|noise], blur:SIGMA, dark:GAMMA[:GAIN]; applied in order, pixels in [0, 1]."))
    var corrupt = ""
    @Option(help: "Batches prepared ahead on a background thread (0: read on the training thread).")
    var prefetch = 2
    @Option(help: "The end of an epoch that does not fill a global batch: drop or wrap into the next epoch.")
    var tail: EpochTail = .drop
    @Option(help: "Seed of the initial weights, the shuffling and the corruptions.")
    var seed: UInt64 = 0
    @Flag(name: .customLong("no-shuffle"), help: "Take batches in file order (step 1 trains on images 0..B-1).")
    var noShuffle = false
    @OptionGroup var architecture: ArchitectureOptions
    @Flag(name: .customLong("kmeans-init"), help: ArgumentHelp(
        "Start the codebook from k-means centres of the first global batch's encoder outputs.",
        discussion: "Without it the codebook starts as spec/model.md says (E ~ N(0, 1), N = 0, M = E), and codes not chosen in the first step never recover."))
    var kmeansInit = false
    @Option(name: .customLong("kmeans-iterations"), help: "Lloyd iterations of --kmeans-init.")
    var kmeansIterations = 10
    @Option(name: .customLong("dead-code-threshold"), help: ArgumentHelp(
        "Re-seed codes whose EMA count falls below this from encoder outputs of the current global batch (0 = off).",
        discussion: "Chosen on rank 0 with a stream keyed by (seed, step) and broadcast, so every rank keeps the same codebook. A re-seeded code gets N_k = the threshold and M_k = N_k * e_k. Needs --model vqvae --codebook ema."))
    var deadCodeThreshold = 0.0
    @Option(name: .customLong("time-budget"), help: "Stop after the step that ends SECONDS of training (checkpointing as at the end; 0 = no limit; --steps still bounds the run).")
    var timeBudget = 0.0
    @Option(name: .customLong("log-every"), help: "Print and record metrics every N steps.")
    var logEvery = 50
    @Option(help: ArgumentHelp("HDF5 dataset evaluated during training (MSE, PSNR, SSIM on 8-bit pixels; damaged by --corrupt like the training input).",
                               discussion: "Each rank evaluates a share; the figures go to the log and to metrics.jsonl as val_mse, val_psnr, val_ssim (and val_input_psnr, val_input_ssim with --corrupt)."))
    var val: String?
    @Option(name: .customLong("val-every"), help: "Evaluate --val every N steps (and at the end).")
    var valEvery = 500
    @Option(name: .customLong("val-limit"), help: "Evaluate only the first N images of --val (0 = all).")
    var valLimit = 1000
    @Option(name: .customLong("sample-every"), help: "Every N steps (and at the end) write a PNG grid original | damaged | reconstruction of the first images of --val (or of the training data) to <out>/samples/ (0 = off).")
    var sampleEvery = 0
    @Option(name: .customLong("checkpoint-every"), help: "Write a checkpoint every N steps (0: only at the end).")
    var checkpointEvery = 500
    @Option(help: ArgumentHelp("Continue a run: 'auto' (the newest valid checkpoint in <out>/checkpoints, or a fresh start) or a checkpoint's path.",
                               discussion: "The architecture, optimiser and data settings come from the checkpoint; --steps, intervals, the number of ranks and an explicit --lr may change."))
    var resume: String?
    @Option(help: "Keep only the newest K checkpoints (0: keep all).")
    var keep = 0
    @Option(help: "BLAS threads per rank.")
    var threads = 1
    @Option(name: .customLong("bucket-mb"), help: "Size in MB of the gradient buckets all-reduced while the backward pass runs.")
    var bucketMegabytes = 1.0
    @Option(name: .customLong("sync-check-every"), help: "Check every N steps (and at the end) that all ranks hold identical parameters and codebook (0: only at the end).")
    var syncCheckEvery = 100
    @Flag(name: .customLong("skip-nonfinite"), help: "Skip the update of a step whose loss is NaN or infinite instead of stopping the run.")
    var skipNonFinite = false
    @Option(help: ArgumentHelp("End this rank with a one-line error when one phase of training (a step's computation, its all-reduce, reading a batch, a checkpoint write) lasts longer than SECONDS (0: off).",
                               discussion: "A rank whose peer vanished (host down, network cut) can otherwise wait in a collective for as long as TCP keeps the connection, hours. Keep it above the longest checkpoint write."))
    var watchdog = 300.0

    func validate() throws {
        if data.isEmpty { throw ValidationError("give at least one dataset with --data FILE") }
        if steps < 0 { throw ValidationError("--steps must not be negative") }
        if globalBatchSize < 1 { throw ValidationError("--global-batch-size must be at least 1") }
        if !(lr > 0) || !lr.isFinite { throw ValidationError("--lr must be a positive number") }
        if !(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) { throw ValidationError("--beta1 and --beta2 must be in [0, 1)") }
        if !(adamEpsilon > 0) { throw ValidationError("--adam-eps must be positive") }
        if weightDecay < 0 { throw ValidationError("--weight-decay must not be negative") }
        if logEvery < 1 { throw ValidationError("--log-every must be at least 1") }
        if checkpointEvery < 0 { throw ValidationError("--checkpoint-every must not be negative") }
        if keep < 0 { throw ValidationError("--keep must not be negative") }
        if prefetch < 0 || prefetch > 64 { throw ValidationError("--prefetch must be between 0 and 64") }
        if threads < 1 { throw ValidationError("--threads must be at least 1") }
        if !(bucketMegabytes > 0) { throw ValidationError("--bucket-mb must be positive") }
        if syncCheckEvery < 0 { throw ValidationError("--sync-check-every must not be negative") }
        if !(watchdog >= 0) || !watchdog.isFinite { throw ValidationError("--watchdog must be 0 (off) or a number of seconds") }
    }

    func run() throws {
        try runDistributed { communicator, console in
            let trainer = try Trainer(options: self, communicator: communicator, console: console)
            try trainer.run()
        }
    }
}
