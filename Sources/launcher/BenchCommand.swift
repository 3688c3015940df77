import ArgumentParser
import Data
import Dist
import Foundation
import Model

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training speed: images/s, time per phase, GFLOP/s against sgemm, peak memory.",
        discussion: """
        Trains the given model for --steps steps after --warmup steps on synthetic images (or --data) \
        exactly as `train` does, on every rank of the MPI world, and reports per rank and in total.
        """)

    @OptionGroup var architecture: ArchitectureOptions
    @Option(help: "Images per rank per step.")
    var batch = 32
    @Option(help: "Synthetic image height (ignored with --data).")
    var height = 32
    @Option(help: "Synthetic image width (ignored with --data).")
    var width = 32
    @Option(help: "Synthetic image channels, 1 or 3 (ignored with --data).")
    var channels = 3
    @Option(name: .long, parsing: .upToNextOption, help: "Benchmark on these HDF5 files instead of synthetic images.")
    var data: [String] = []
    @Option(help: "Steps before timing starts.")
    var warmup = 5
    @Option(help: "Timed steps.")
    var steps = 30
    @Option(help: "BLAS threads per rank.")
    var threads = 1
    @Option(name: .customLong("bucket-mb"), help: "Gradient bucket size in MB.")
    var bucketMegabytes = 1.0
    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func validate() throws {
        if batch < 1 || steps < 1 || warmup < 0 || threads < 1 { throw ValidationError("--batch, --steps and --threads must be positive") }
    }

    func run() throws {
        try runDistributed { communicator, console in
            setBLASThreads(threads)
            var images: FloatBuffer
            var configuration: ModelConfiguration
            if data.isEmpty {
                configuration = architecture.configuration(height: height, width: width, channels: channels)
                images = FloatBuffer(count: batch * height * width * channels)
                var random = SplitMix64(seed: 1, stream: UInt64(communicator.rank))
                for i in 0..<images.count { images[i] = random.uniform(-0.5, 0.5) }
            } else {
                let dataset = try ImageDataset(paths: try expandGlobs(data))
                configuration = architecture.configuration(height: dataset.height, width: dataset.width, channels: dataset.channels)
                images = FloatBuffer(count: batch * dataset.imageElements)
                // Each rank its own consecutive images, wrapping around a small dataset.
                let indices = (0..<batch).map { (communicator.rank * batch + $0) % dataset.count }
                try dataset.read(indices: indices, into: images.pointer)
            }
            let model = try VQVAE(configuration: configuration, maxBatch: batch)
            model.initialize(seed: 1)
            let optimizer = Adam(count: model.parameters.count)
            let runner = StepRunner(model: model, optimizer: optimizer, communicator: communicator, bucketMegabytes: bucketMegabytes,
                                    seed: 1)
            let sgemm = measureSGEMM()
            try communicator.barrier()

            for step in 0..<warmup {
                _ = try runner.run(input: images.pointer, target: images.pointer, batch: batch, number: step + 1, skipNonFinite: true)
            }
            try communicator.barrier()
            runner.resetTimes()
            let start = monotonicNanoseconds()
            for step in 0..<steps {
                _ = try runner.run(input: images.pointer, target: images.pointer, batch: batch, number: warmup + step + 1, skipNonFinite: true)
            }
            let seconds = Double(monotonicNanoseconds() - start) * 1e-9
            withExtendedLifetime(images) {}

            // Training FLOPs per image from the layer shapes: forward, the weight gradient and the
            // input gradient of every layer but the first, and the quantizer's distances.
            let flopsPerImage = 2.0 * Double(model.trainingMultiplyAddsPerImage)
            let times = model.times
            let perStep = { (value: Double) in value / Double(steps) * 1000 }
            let figures: [Double] = [
                Double(batch * steps) / seconds,                                      // 0 images/s of this rank
                perStep(seconds),                                                     // 1 ms per step
                perStep(times.forward), perStep(times.quantizer), perStep(times.backward),
                perStep(runner.optimizerSeconds), perStep(runner.communicationSeconds),
                0,                                                                    // 7 data wait (synthetic: none)
                flopsPerImage * Double(batch * steps) / seconds / 1e9,                // 8 model GFLOP/s
                sgemm,                                                                // 9 sgemm GFLOP/s
                peakResidentMegabytes(),                                              // 10 MB
            ]
            var gathered = [Double](repeating: 0, count: figures.count * communicator.size)
            try figures.withUnsafeBufferPointer { source in
                try gathered.withUnsafeMutableBufferPointer {
                    try communicator.gather(doubles: source.baseAddress!, count: figures.count, into: $0.baseAddress!)
                }
            }
            guard communicator.isRoot else { return }
            let ranks = (0..<communicator.size).map { Array(gathered[($0 * figures.count)..<(($0 + 1) * figures.count)]) }
            report(ranks: ranks, configuration: configuration, flopsPerImage: flopsPerImage, seconds: seconds, console: console)
        }
    }

    func report(ranks: [[Double]], configuration c: ModelConfiguration, flopsPerImage: Double, seconds: Double, console: Console) {
        let names = ["images_per_second", "ms_per_step", "forward_ms", "quantizer_ms", "backward_ms", "optimizer_ms",
                     "communication_wait_ms", "data_wait_ms", "model_gflops", "sgemm_gflops", "peak_rss_mb"]
        let total = ranks.map { $0[0] }.reduce(0, +)
        let modelGFLOPs = ranks.map { $0[8] }.reduce(0, +)
        let meanSGEMM = ranks.map { $0[9] }.reduce(0, +) / Double(ranks.count)
        let efficiency = modelGFLOPs / Double(ranks.count) / meanSGEMM
        if json {
            let object: [String: Any] = [
                "model": "\(c.height)x\(c.width)x\(c.channels) hidden \(c.hidden) codes \(c.codes)x\(c.codeDimension)",
                "ranks": ranks.count, "batch_per_rank": batch, "steps": steps, "blas": blasCoreName(),
                "images_per_second": total, "model_gflop_per_image": flopsPerImage / 1e9,
                "model_gflops": modelGFLOPs, "sgemm_gflops_per_core": meanSGEMM, "efficiency_per_core": efficiency,
                "per_rank": ranks.map { Dictionary(uniqueKeysWithValues: zip(names, $0)) },
            ]
            if let text = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                print(String(decoding: text, as: UTF8.self))
            }
            return
        }
        console.info("vqvae bench: \(c.height)x\(c.width)x\(c.channels), hidden \(c.hidden), codebook \(c.codes)x\(c.codeDimension); "
            + "\(ranks.count) rank(s) x batch \(batch), \(steps) timed steps after \(warmup); BLAS \(blasCoreName()), \(threads) thread(s) per rank")
        console.info(String(format: "model: %.1f MFLOP per image and step (forward + backward, from layer shapes)", flopsPerImage / 1e6))
        console.info("rank  img/s   ms/step  forward  quantizer  backward  optimizer  comm-wait  data-wait  GFLOP/s  sgemm GFLOP/s  peak RSS MB")
        for (rank, r) in ranks.enumerated() {
            console.info(String(format: "%4d  %6.1f  %7.2f  %7.2f  %9.2f  %8.2f  %9.2f  %9.2f  %9.2f  %7.1f  %13.1f  %11.1f",
                                rank, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10]))
        }
        console.info(String(format: "total: %.1f images/s, %.1f model GFLOP/s; per core %.0f%% of the measured single-core sgemm (%.1f GFLOP/s)",
                            total, modelGFLOPs, efficiency * 100, meanSGEMM))
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
