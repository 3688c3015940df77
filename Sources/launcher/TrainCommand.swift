import ArgumentParser
import Data
import Model
import Training

private let trainingDefaults = TrainingOptions()

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model on HDF5 images and write checkpoints.",
        discussion: """
        Reads `images` (N, H, W, C), uint8 or float32, from the given HDF5 files (docs/formats.md), \
        or images of different sizes (`pixels`, `shapes`, `offsets`) with --crop, \
        trains with Adam, and writes <out>/checkpoints/step-XXXXXXXX.h5 and <out>/metrics.jsonl. \
        --steps 0 writes only the initial checkpoint.
        """)

    @Option(help: ArgumentHelp(
        "A run file (TOML): `key = value` lines named like the flags without -- (`data = [\"a.h5\", \"b.h5\"]`, `steps = 2000`, `no-shuffle = true`); flags given beside it take precedence.",
        discussion: "Every run writes its settings to <out>/run.toml, which --config reads back to repeat the run (docs/usage.md)."))
    var config: String?
    @Option(help: ArgumentHelp(
        "Defaults for a restoration task, under --config and the flags given; each sets the flags below.",
        discussion: TrainingTask.help))
    var task: TrainingTask?
    @OptionGroup var dataset: DatasetOptions
    @Option(help: "Output folder for checkpoints, metrics and run.toml (created if missing).")
    var out: String?
    @Option(parsing: .unconditional, help: "The total number of optimiser steps of the run (a resumed run trains up to it).")
    var steps = trainingDefaults.steps
    @Option(name: .customLong("global-batch-size"), parsing: .unconditional, help: "Images per step over all ranks; each of W ranks takes G/W.")
    var globalBatchSize = trainingDefaults.globalBatchSize
    @Option(parsing: .unconditional, help: ArgumentHelp(
        "Gradient accumulation: each rank runs its G/W images as N micro-batches of G/(W N), sums their gradients and codebook statistics, and all-reduces once per step.",
        discussion: "The update is the whole global batch's up to summation order; the model's buffers hold G/(W N) images. W*N must divide G. A resume may change N."))
    var accumulate = trainingDefaults.accumulate
    @Option(parsing: .unconditional, help: "Adam learning rate.")
    var lr = trainingDefaults.lr
    @Option(name: .customLong("beta1"), parsing: .unconditional, help: "Adam beta1.")
    var beta1 = trainingDefaults.beta1
    @Option(name: .customLong("beta2"), parsing: .unconditional, help: "Adam beta2.")
    var beta2 = trainingDefaults.beta2
    @Option(name: .customLong("adam-eps"), parsing: .unconditional, help: "Adam epsilon.")
    var adamEpsilon = trainingDefaults.adamEpsilon
    @Option(name: .customLong("weight-decay"), parsing: .unconditional, help: ArgumentHelp(
        "Weight decay: with --optimizer adam L2 added to the gradient (torch.optim.Adam's weight_decay), with adamw decoupled (torch.optim.AdamW's).",
        discussion: "Default 0 with adam, 0.01 with adamw (PyTorch's defaults)."))
    var weightDecay: Double?
    @Option(help: "Optimiser: adam, or adamw (decoupled weight decay: p *= 1 - lr * weight_decay before each step).")
    var optimizer: TrainingOptions.OptimizerKind = trainingDefaults.optimizer
    @Option(name: .customLong("warmup-steps"), parsing: .unconditional, help: "Raise the learning rate linearly from --lr/N at the first step to --lr at step N (0 = off).")
    var warmupSteps = trainingDefaults.warmupSteps
    @Option(name: .customLong("lr-schedule"), help: ArgumentHelp(
        "Learning rate after the warmup: constant, cosine (from --lr down to --lr-min at --lr-decay-steps) or step (times --lr-step-factor every --lr-step-every steps).",
        discussion: "A function of the step alone, stored in the checkpoint: a resumed run takes the same rates."))
    var lrSchedule: LearningRateSchedule.Kind = trainingDefaults.lrSchedule
    @Option(name: .customLong("lr-min"), parsing: .unconditional, help: "--lr-schedule cosine: the final learning rate.")
    var lrMin = trainingDefaults.lrMin
    @Option(name: .customLong("lr-decay-steps"), parsing: .unconditional, help: "--lr-schedule cosine: the step at which the rate reaches --lr-min (default: --steps of the first run).")
    var lrDecaySteps: Int?
    @Option(name: .customLong("lr-step-every"), parsing: .unconditional, help: "--lr-schedule step: multiply the rate by --lr-step-factor every N steps.")
    var lrStepEvery = trainingDefaults.lrStepEvery
    @Option(name: .customLong("lr-step-factor"), parsing: .unconditional, help: "--lr-schedule step: the factor, in (0, 1].")
    var lrStepFactor = trainingDefaults.lrStepFactor
    @Option(name: .customLong("clip-grad-norm"), parsing: .unconditional, help: ArgumentHelp(
        "Scale the averaged gradient down to this Euclidean norm when it is larger (0 = off), as torch.nn.utils.clip_grad_norm_.",
        discussion: "The norm is of the gradient all-reduced over the ranks, the same on every rank, so all ranks clip alike."))
    var clipGradNorm = trainingDefaults.clipGradNorm
    @Option(help: ArgumentHelp("Damage the input images (the target stays clean) for restoration training, e.g. noise:0.1,mask:0.25.",
                               discussion: "Items: noise:SIGMA, saltpepper:FRACTION, mask:AREA[:VALUE|noise], blur:SIGMA, dark:GAMMA[:GAIN]; applied in order, pixels in [0, 1]."))
    var corrupt = trainingDefaults.corrupt
    @Option(parsing: .unconditional, help: ArgumentHelp(
        "Train on random SxS crops of the images (needed for datasets of images of different sizes; every image must be at least S on both sides, and S divisible by 2^down).",
        discussion: "The crop of each sample is drawn from a stream keyed by (seed, epoch, sample index), so it does not depend on the number of ranks, prefetching or resuming. --val images not of size SxS are read as their centre SxS crops."))
    var crop: Int?
    @Option(help: "With --crop: none, flips (a random left-right mirror) or dihedral (one of the 8 mirrors and quarter turns of the square).")
    var augment: Augmentation = trainingDefaults.augment
    @Option(name: .customLong("crops-per-image"), parsing: .unconditional, help: "With --crop: crops of every image per epoch (each its own draw), so that a few large photos fill many batches.")
    var cropsPerImage = trainingDefaults.cropsPerImage
    @Option(parsing: .unconditional, help: "Batches prepared ahead on a background thread (0: read on the training thread).")
    var prefetch = trainingDefaults.prefetch
    @Option(help: "The end of an epoch that does not fill a global batch: drop or wrap into the next epoch.")
    var tail = trainingDefaults.tail
    @Option(parsing: .unconditional, help: "Seed of the initial weights, the shuffling and the corruptions.")
    var seed = trainingDefaults.seed
    @Flag(name: .customLong("no-shuffle"), help: "Take batches in file order (step 1 trains on images 0..B-1).")
    var noShuffle = false
    @OptionGroup var architecture: ArchitectureOptions
    @Option(name: .customLong("codebook-init"), help: ArgumentHelp(
        "How the VQ-VAE codebook starts: kmeans (centres of the first global batch's encoder outputs) or sonnet (spec/model.md's reference start).",
        discussion: "sonnet (E ~ N(0, 1), N = 0, M = E, no dead-code restart) is for exact comparison with PyTorch or Sonnet; on real data it collapses to a few codes. Models without a codebook ignore it."))
    var codebookInit: TrainingOptions.CodebookStart = trainingDefaults.codebookInit
    @Flag(name: .customLong("kmeans-init"), help: ArgumentHelp(
        "Same as --codebook-init kmeans (the default).",
        discussion: "Kept for existing command lines."))
    var kmeansInit = false
    @Option(name: .customLong("kmeans-iterations"), parsing: .unconditional, help: "Lloyd iterations of the k-means start.")
    var kmeansIterations = trainingDefaults.kmeansIterations
    @Option(name: .customLong("dead-code-threshold"), parsing: .unconditional, help: ArgumentHelp(
        "Re-seed codes whose EMA count falls below this from encoder outputs of the current global batch (0 = off; default \(TrainingOptions.defaultDeadCodeThreshold) with the k-means start, 0 with --codebook-init sonnet).",
        discussion: "Chosen on rank 0 with a stream keyed by (seed, step) and broadcast, so every rank keeps the same codebook. A re-seeded code gets N_k = the threshold and M_k = N_k * e_k. Needs --model vqvae --codebook ema."))
    var deadCodeThreshold: Double?
    @Option(name: .customLong("time-budget"), parsing: .unconditional, help: "Stop after the step that ends SECONDS of training (checkpointing as at the end; 0 = no limit; --steps still bounds the run).")
    var timeBudget = trainingDefaults.timeBudget
    @Option(name: .customLong("log-every"), parsing: .unconditional, help: "Print and record metrics every N steps.")
    var logEvery = trainingDefaults.logEvery
    @Option(help: ArgumentHelp("HDF5 dataset evaluated during training (MSE, PSNR, SSIM on 8-bit pixels; damaged by --corrupt like the training input).",
                               discussion: "Each rank evaluates a share; the figures go to the log and to metrics.jsonl as val_mse, val_psnr, val_ssim (and val_input_psnr, val_input_ssim with --corrupt)."))
    var val: String?
    @Option(name: .customLong("val-every"), parsing: .unconditional, help: "Evaluate --val every N steps (and at the end).")
    var valEvery = trainingDefaults.validationEvery
    @Option(name: .customLong("val-limit"), parsing: .unconditional, help: "Evaluate only the first N images of --val (0 = all).")
    var valLimit = trainingDefaults.validationLimit
    @Option(name: .customLong("sample-every"), parsing: .unconditional, help: "Every N steps (and at the end) write a PNG grid original | damaged | reconstruction of the first images of --val (or of the training data) to <out>/samples/ (0 = off).")
    var sampleEvery = trainingDefaults.sampleEvery
    @Option(name: .customLong("checkpoint-every"), parsing: .unconditional, help: "Write a checkpoint every N steps (0: only at the end).")
    var checkpointEvery = trainingDefaults.checkpointEvery
    @Option(help: ArgumentHelp("Continue a run: 'auto' (the newest valid checkpoint in <out>/checkpoints, or a fresh start) or a checkpoint's path.",
                               discussion: "The architecture, optimiser and data settings come from the checkpoint; --steps, intervals, the number of ranks and an explicit --lr may change."))
    var resume: String?
    @Flag(name: .customLong("allow-other-data"), help: "With --resume: continue although --data is not the data the checkpoint records (other image counts per file, shape, type or sampled pixels).")
    var allowOtherData = false
    @Option(parsing: .unconditional, help: "Keep only the newest K checkpoints (0: keep all).")
    var keep = trainingDefaults.keep
    @Option(name: .customLong("keep-best"), help: ArgumentHelp(
        "With --val: after each validation whose METRIC (val_psnr, val_ssim or val_mse) is the best so far, write <out>/checkpoints/best.h5 (never removed by --keep).",
        discussion: "The best score and its step are stored in every checkpoint, so a resumed run keeps them."))
    var keepBest: String?
    @Option(name: .customLong("weight-ema"), parsing: .unconditional, help: ArgumentHelp(
        "Keep a moving average of the parameters with this decay (e.g. 0.999), stored in checkpoints and used by validation, eval, restore, encode and probe (their --raw-weights uses the trained weights).",
        discussion: "Bias-corrected, so it never holds the initial weights; the EMA codebook is not averaged again."))
    var weightEMA: Double?
    @Flag(help: "Also write every record of metrics.jsonl to a TensorBoard event file in --out (events.out.tfevents.*), for `tensorboard --logdir`.")
    var tensorboard = false
    @OptionGroup var threads: ThreadOptions
    @Option(name: .customLong("bucket-mb"), parsing: .unconditional, help: "Size in MB of the gradient buckets all-reduced while the backward pass runs.")
    var bucketMegabytes = trainingDefaults.bucketMegabytes
    @Option(name: .customLong("allreduce"), help: ArgumentHelp(
        "How gradient buckets are summed over the ranks: flat (one all-reduce over all ranks), hierarchical (within each node, among the nodes, back to the node's ranks), auto (hierarchical when the ranks span several nodes, a node has more than one and the nodes' ranks are not consecutive, as under --map-by node).",
        discussion: "Nodes are the ranks that share memory as the launcher placed them, or --ranks-per-node consecutive ranks."))
    var allReduce = trainingDefaults.allReduce
    @Option(name: .customLong("ranks-per-node"), parsing: .unconditional, help: "Treat every N consecutive ranks as one node for --allreduce (default: the ranks that share memory).")
    var ranksPerNode: Int?
    @Option(name: .customLong("sync-check-every"), parsing: .unconditional, help: "Check every N steps (and at the end) that all ranks hold identical parameters and codebook (0: only at the end).")
    var syncCheckEvery = trainingDefaults.syncCheckEvery
    @Flag(name: .customLong("skip-nonfinite"), help: "Skip the update of a step whose loss is NaN or infinite instead of stopping the run.")
    var skipNonFinite = false
    @Option(parsing: .unconditional, help: ArgumentHelp("End this rank with a one-line error when one phase of training (a step's computation, its all-reduce, reading a batch, a checkpoint write) lasts longer than SECONDS (0: off).",
                               discussion: "A rank whose peer vanished (host down, network cut) can otherwise wait in a collective for as long as TCP keeps the connection, hours. Keep it above the longest checkpoint write."))
    var watchdog = trainingDefaults.watchdog

    /// The flags as the library's options.
    var options: TrainingOptions {
        var o = TrainingOptions()
        o.data = dataset.data
        o.imagesKey = dataset.imagesKey
        o.out = out ?? ""
        o.steps = steps
        o.globalBatchSize = globalBatchSize
        o.accumulate = accumulate
        o.lr = lr
        o.beta1 = beta1
        o.beta2 = beta2
        o.adamEpsilon = adamEpsilon
        o.weightDecay = weightDecay ?? (optimizer == .adamw ? 0.01 : 0)
        o.optimizer = optimizer
        o.warmupSteps = warmupSteps
        o.lrSchedule = lrSchedule
        o.lrMin = lrMin
        o.lrDecaySteps = lrDecaySteps
        o.lrStepEvery = lrStepEvery
        o.lrStepFactor = lrStepFactor
        o.clipGradNorm = clipGradNorm
        o.corrupt = corrupt
        o.crop = crop
        o.augment = augment
        o.cropsPerImage = cropsPerImage
        o.prefetch = prefetch
        o.tail = tail
        o.seed = seed
        o.shuffle = !noShuffle
        o.architecture = architecture.configuration(height: 0, width: 0, channels: 0)
        o.codebookInit = kmeansInit ? .kmeans : codebookInit
        o.kmeansIterations = kmeansIterations
        o.deadCodeThreshold = deadCodeThreshold
        o.timeBudget = timeBudget
        o.logEvery = logEvery
        o.validationData = val
        o.validationEvery = valEvery
        o.validationLimit = valLimit
        o.sampleEvery = sampleEvery
        o.checkpointEvery = checkpointEvery
        o.resume = resume
        o.allowOtherData = allowOtherData
        o.keep = keep
        o.keepBest = keepBest
        o.tensorboard = tensorboard
        o.weightEMA = weightEMA
        o.threads = threads.threads
        o.bucketMegabytes = bucketMegabytes
        o.allReduce = allReduce
        o.ranksPerNode = ranksPerNode
        o.syncCheckEvery = syncCheckEvery
        o.skipNonFinite = skipNonFinite
        o.watchdog = watchdog
        o.givenFlags = givenFlags()
        return o
    }

    func run() throws {
        let options = self.options
        do {
            try checkValues {
                if kmeansInit && codebookInit != .kmeans {
                    throw ValidationError("--kmeans-init contradicts --codebook-init \(codebookInit.rawValue); give one of them")
                }
                try options.validate()
            }
        } catch let error as ValidationError {
            throw (try? layeredCommandLine.get())?.attributed(error) ?? error
        }
        try finish(runOnEveryRank { communicator, console in
            let trainer = try Trainer(options: options, communicator: communicator, console: console)
            trainer.runFile = RunFile.text(of:path:)
            try trainer.run()
        })
    }
}
