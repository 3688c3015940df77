import Data
import Dist
import Foundation
import Model

/// What `vqvae bench` is told.
public struct BenchmarkOptions: Sendable {
    /// The architecture; with `data`, its height, width and channels are the data's.
    public var architecture = ModelConfiguration(height: 32, width: 32, channels: 3)
    /// Images per rank per step.
    public var batch = 32
    /// HDF5 files to read instead of synthetic images.
    public var data: [String] = []
    /// Synthetic images in the sampled set (ignored with `data`).
    public var syntheticImages = 4096
    public var warmup = 5
    public var steps = 30
    public var threads = 1
    public var bucketMegabytes = 1.0
    /// Batches prepared ahead on a background thread, as `train --prefetch`.
    public var prefetch = 2
    /// Micro-batches per rank and step (gradient accumulation), as `train --accumulate`: the model
    /// holds `batch / accumulate` images at a time.
    public var accumulate = 1

    public init() {}

    func validate() throws {
        guard batch >= 1, steps >= 1, warmup >= 0, threads >= 1, syntheticImages >= 1 else {
            throw BenchmarkError("--batch, --steps and --threads must be positive, --warmup not negative")
        }
        guard accumulate >= 1, batch % accumulate == 0 else {
            throw BenchmarkError("--accumulate \(accumulate) must divide the batch per rank (\(batch)) into equal micro-batches")
        }
    }
}

/// One rank's figures of a benchmark, by name; `flat` is the view the gather needs.
public struct BenchmarkFigures: Equatable, Sendable {
    public var imagesPerSecond: Double
    public var millisecondsPerStep: Double
    public var forwardMilliseconds: Double
    public var quantizerMilliseconds: Double
    public var backwardMilliseconds: Double
    public var optimizerMilliseconds: Double
    public var communicationWaitMilliseconds: Double
    public var dataWaitMilliseconds: Double
    public var modelGFLOPs: Double
    public var sgemmGFLOPs: Double
    public var peakResidentMegabytes: Double

    static let count = 11
    /// The JSON keys, in `flat`'s order.
    static let names = ["images_per_second", "ms_per_step", "forward_ms", "quantizer_ms", "backward_ms", "optimizer_ms",
                        "communication_wait_ms", "data_wait_ms", "model_gflops", "sgemm_gflops", "peak_rss_mb"]

    var flat: [Double] {
        [imagesPerSecond, millisecondsPerStep, forwardMilliseconds, quantizerMilliseconds, backwardMilliseconds,
         optimizerMilliseconds, communicationWaitMilliseconds, dataWaitMilliseconds, modelGFLOPs, sgemmGFLOPs,
         peakResidentMegabytes]
    }

    init(imagesPerSecond: Double, millisecondsPerStep: Double, forwardMilliseconds: Double, quantizerMilliseconds: Double,
         backwardMilliseconds: Double, optimizerMilliseconds: Double, communicationWaitMilliseconds: Double,
         dataWaitMilliseconds: Double, modelGFLOPs: Double, sgemmGFLOPs: Double, peakResidentMegabytes: Double) {
        self.imagesPerSecond = imagesPerSecond
        self.millisecondsPerStep = millisecondsPerStep
        self.forwardMilliseconds = forwardMilliseconds
        self.quantizerMilliseconds = quantizerMilliseconds
        self.backwardMilliseconds = backwardMilliseconds
        self.optimizerMilliseconds = optimizerMilliseconds
        self.communicationWaitMilliseconds = communicationWaitMilliseconds
        self.dataWaitMilliseconds = dataWaitMilliseconds
        self.modelGFLOPs = modelGFLOPs
        self.sgemmGFLOPs = sgemmGFLOPs
        self.peakResidentMegabytes = peakResidentMegabytes
    }

    init(flat v: [Double]) {
        self.init(imagesPerSecond: v[0], millisecondsPerStep: v[1], forwardMilliseconds: v[2], quantizerMilliseconds: v[3],
                  backwardMilliseconds: v[4], optimizerMilliseconds: v[5], communicationWaitMilliseconds: v[6],
                  dataWaitMilliseconds: v[7], modelGFLOPs: v[8], sgemmGFLOPs: v[9], peakResidentMegabytes: v[10])
    }
}

/// The result of `vqvae bench` (on rank 0; other ranks get an empty `ranks`).
public struct BenchmarkReport: Sendable {
    public var ranks: [BenchmarkFigures]
    public var configuration: ModelConfiguration
    public var options: BenchmarkOptions
    public var flopsPerImage: Double
    public var blas: String
    /// The extensions the Swift code was compiled for (`ProcessEnvironment.instructionSet`).
    public var instructionSet = ProcessEnvironment.instructionSet

    public var totalImagesPerSecond: Double { ranks.map(\.imagesPerSecond).reduce(0, +) }
    public var totalModelGFLOPs: Double { ranks.map(\.modelGFLOPs).reduce(0, +) }
    public var meanSGEMM: Double { ranks.map(\.sgemmGFLOPs).reduce(0, +) / Double(max(ranks.count, 1)) }
    /// Model GFLOP/s per core against the measured single-core sgemm.
    public var efficiency: Double { totalModelGFLOPs / Double(max(ranks.count, 1)) / meanSGEMM }

    public var json: [String: Any] {
        let c = configuration
        return [
            "model": "\(c.height)x\(c.width)x\(c.channels) hidden \(c.hidden) codes \(c.codes)x\(c.codeDimension)",
            "ranks": ranks.count, "batch_per_rank": options.batch, "micro_batches": options.accumulate, "steps": options.steps, "blas": blas,
            "instruction_set": instructionSet,
            "images_per_second": totalImagesPerSecond, "model_gflop_per_image": flopsPerImage / 1e9,
            "model_gflops": totalModelGFLOPs, "sgemm_gflops_per_core": meanSGEMM, "efficiency_per_core": efficiency,
            "per_rank": ranks.map { Dictionary(uniqueKeysWithValues: zip(BenchmarkFigures.names, $0.flat)) },
        ]
    }

    public var lines: [String] {
        let c = configuration
        var lines = [
            "vqvae bench: \(c.height)x\(c.width)x\(c.channels), hidden \(c.hidden), codebook \(c.codes)x\(c.codeDimension); "
                + "\(ranks.count) rank(s) x batch \(options.batch)"
                + (options.accumulate > 1 ? " (\(options.accumulate) micro-batches of \(options.batch / options.accumulate))" : "")
                + ", \(options.steps) timed steps after \(options.warmup); BLAS \(blas), \(options.threads) thread(s) per rank; built for \(instructionSet)",
            String(format: "model: %.1f MFLOP per image and step (forward + backward, from layer shapes)", flopsPerImage / 1e6),
            "rank  img/s   ms/step  forward  quantizer  backward  optimizer  comm-wait  data-wait  GFLOP/s  sgemm GFLOP/s  peak RSS MB",
        ]
        for (rank, r) in ranks.enumerated() {
            lines.append(String(format: "%4d  %6.1f  %7.2f  %7.2f  %9.2f  %8.2f  %9.2f  %9.2f  %9.2f  %7.1f  %13.1f  %11.1f",
                                rank, r.imagesPerSecond, r.millisecondsPerStep, r.forwardMilliseconds, r.quantizerMilliseconds,
                                r.backwardMilliseconds, r.optimizerMilliseconds, r.communicationWaitMilliseconds,
                                r.dataWaitMilliseconds, r.modelGFLOPs, r.sgemmGFLOPs, r.peakResidentMegabytes))
        }
        lines.append(String(format: "total: %.1f images/s, %.1f model GFLOP/s; per core %.0f%% of the measured single-core sgemm (%.1f GFLOP/s)",
                            totalImagesPerSecond, totalModelGFLOPs, efficiency * 100, meanSGEMM))
        return lines
    }
}

/// `vqvae bench`: trains with the same step as `train` (`TrainingStep`), fed by the same sampler
/// and prefetcher from synthetic images or HDF5 files, and times each phase on every rank.
public enum Benchmark {
    public static func run(_ options: BenchmarkOptions, communicator: Communicator) throws -> BenchmarkReport {
        try options.validate()
        setBLASThreads(options.threads)
        let source: any ImageSource
        var configuration = options.architecture
        if options.data.isEmpty {
            source = SyntheticImages(count: options.syntheticImages, height: configuration.height, width: configuration.width,
                                     channels: configuration.channels)
        } else {
            let dataset = try ImageDataset(paths: try expandGlobs(options.data))
            (configuration.height, configuration.width, configuration.channels) = (dataset.height, dataset.width, dataset.channels)
            source = dataset
        }
        let globalBatch = options.batch * communicator.size
        guard source.count >= globalBatch else {
            throw BenchmarkError("the data holds \(source.count) images, fewer than one global batch of \(globalBatch)")
        }
        let sampler = try ShardedSampler(datasetSize: source.count, globalBatchSize: globalBatch, seed: 1, shuffle: true,
                                         tail: .wrap, rank: communicator.rank, worldSize: communicator.size)
        let model = try VQVAE(configuration: configuration, maxBatch: options.batch / options.accumulate)
        model.initialize(seed: 1)
        let state = TrainingState(model: model, optimizer: Adam(count: model.parameters.count))
        let runner = TrainingStep(state: state, communicator: communicator, bucketMegabytes: options.bucketMegabytes, seed: 1)
        let total = options.warmup + options.steps
        let prefetcher = BatchPrefetcher(dataset: source, sampler: sampler, corruptions: try CorruptionPipeline(spec: ""),
                                         seed: 1, firstStep: 0, endStep: total, depth: options.prefetch)
        defer { prefetcher.stop() }
        let sgemm = measureSGEMM()
        try communicator.barrier()

        func train(_ steps: Range<Int>) throws {
            for step in steps {
                let batch = try prefetcher.batch(step: step)
                _ = try runner.run(input: batch.input, target: batch.target, batch: options.batch, number: step + 1,
                                   microBatches: options.accumulate, skipNonFinite: true)
            }
        }
        try train(0..<options.warmup)
        try communicator.barrier()
        runner.resetTimes()
        let waitBefore = prefetcher.waitSeconds
        let start = monotonicNanoseconds()
        try train(options.warmup..<total)
        let seconds = Double(monotonicNanoseconds() - start) * 1e-9

        // Training FLOPs per image from the layer shapes: forward, the weight gradient and the
        // input gradient of every layer but the first, and the quantizer's distances.
        let flopsPerImage = 2.0 * Double(model.trainingMultiplyAddsPerImage)
        let times = model.times
        let perStep = { (value: Double) in value / Double(options.steps) * 1000 }
        let figures = BenchmarkFigures(
            imagesPerSecond: Double(options.batch * options.steps) / seconds, millisecondsPerStep: perStep(seconds),
            forwardMilliseconds: perStep(times.forward), quantizerMilliseconds: perStep(times.quantizer),
            backwardMilliseconds: perStep(times.backward), optimizerMilliseconds: perStep(runner.optimizerSeconds),
            communicationWaitMilliseconds: perStep(runner.communicationSeconds),
            dataWaitMilliseconds: perStep(prefetcher.waitSeconds - waitBefore),
            modelGFLOPs: flopsPerImage * Double(options.batch * options.steps) / seconds / 1e9, sgemmGFLOPs: sgemm,
            peakResidentMegabytes: peakResidentMegabytes())
        let mine = figures.flat
        var gathered = [Double](repeating: 0, count: BenchmarkFigures.count * communicator.size)
        try mine.withUnsafeBufferPointer { source in
            try gathered.withUnsafeMutableBufferPointer {
                try communicator.gather(doubles: source.baseAddress!, count: BenchmarkFigures.count, into: $0.baseAddress!)
            }
        }
        let ranks = communicator.isRoot ? (0..<communicator.size).map {
            BenchmarkFigures(flat: Array(gathered[($0 * BenchmarkFigures.count)..<(($0 + 1) * BenchmarkFigures.count)]))
        } : []
        return BenchmarkReport(ranks: ranks, configuration: configuration, options: options, flopsPerImage: flopsPerImage,
                               blas: blasCoreName())
    }
}

/// Single-thread sgemm GFLOP/s on 1024x1024 matrices, as this rank measures it now.
func measureSGEMM() -> Double {
    let n = 1024
    let a = FloatBuffer(count: n * n), b = FloatBuffer(count: n * n), c = FloatBuffer(count: n * n)
    for i in 0..<(n * n) { a[i] = Float(i % 7) * 0.1; b[i] = Float(i % 5) * 0.1 }
    return withExtendedLifetime((a, b, c)) {
        gemm(transposeA: false, transposeB: false, m: n, n: n, k: n, a: a.pointer, lda: n, b: b.pointer, ldb: n, beta: 0, c: c.pointer, ldc: n)
        let repeats = 10
        let start = monotonicNanoseconds()
        for _ in 0..<repeats {
            gemm(transposeA: false, transposeB: false, m: n, n: n, k: n, a: a.pointer, lda: n, b: b.pointer, ldb: n, beta: 0, c: c.pointer, ldc: n)
        }
        let seconds = Double(monotonicNanoseconds() - start) * 1e-9
        return 2 * Double(n * n * n * repeats) / seconds / 1e9
    }
}

/// Peak resident memory of this process in MB (getrusage's maximum resident set size).
func peakResidentMegabytes() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}
