import ArgumentParser
import Data
import Dist
import Foundation
import Model

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a checkpoint on an HDF5 dataset: MSE, PSNR, SSIM, codebook use and bits per pixel.",
        discussion: """
        Metrics compare the reconstruction with the clean image on [0, 1] pixels clipped and rounded \
        to 8 bits; PSNR and SSIM (Gaussian window, sigma 1.5, as scikit-image computes it) are \
        averaged over images (a per-image PSNR is capped at 100 dB). With --corrupt the model sees \
        the damaged image and the damaged input's own PSNR and SSIM are reported beside it. Under \
        mpirun each rank evaluates a contiguous share of the images and the figures are reduced.
        """)

    @Option(help: "Checkpoint file (HDF5) to evaluate.")
    var checkpoint: String
    @Option(name: .long, parsing: .upToNextOption, help: "HDF5 dataset file(s) with clean images.")
    var data: [String] = []
    @Option(name: .customLong("images-key"), help: "Name of the images dataset in each file.")
    var imagesKey = "images"
    @Option(help: ArgumentHelp("Damage the input first (the reference stays clean), e.g. noise:0.1 or mask:0.25.",
                               discussion: "The same syntax as train --corrupt; draws keyed by (--seed, image index)."))
    var corrupt = ""
    @Option(help: "Seed of the corruption's random streams.")
    var seed: UInt64 = 1
    @Option(help: "Images per forward pass.")
    var batch = 64
    @Option(help: "Evaluate only the first N images (0 = all).")
    var limit = 0
    @Flag(help: "Print one JSON object instead of a table.")
    var json = false
    @Option(name: .customLong("recon-out"), help: "Write the reconstructions as float32 (N, H, W, C) in [0, 1], unclipped, to this HDF5 file.")
    var reconOut: String?
    @Option(name: .customLong("grid-out"), help: "Write a PNG grid of the first images: original | damaged | reconstruction.")
    var gridOut: String?
    @Option(name: .customLong("grid-images"), help: "Images in --grid-out.")
    var gridImages = 8
    @Option(help: "BLAS threads per rank.")
    var threads = 1

    func run() throws {
        try runDistributed { communicator, console in
            try Evaluation(options: self, communicator: communicator, console: console).run()
        }
    }
}

/// The figures of an evaluation, summed over images on every rank, then reduced.
struct EvaluationSums {
    static let count = 6
    var values = [Double](repeating: 0, count: count)  // mse, psnr, ssim, input psnr, input ssim, images
}

final class Evaluation {
    let options: Eval
    let communicator: Communicator
    let console: Console

    init(options: Eval, communicator: Communicator, console: Console) {
        self.options = options
        self.communicator = communicator
        self.console = console
    }

    /// Psnr above this (identical images) counts as this in the mean.
    static let psnrCap = 100.0

    func run() throws {
        setBLASThreads(options.threads)
        let corruptions = try CorruptionPipeline(spec: options.corrupt)
        guard options.limit >= 0 else { throw TrainingError("--limit must not be negative") }
        guard !options.data.isEmpty else { throw TrainingError("--data is required") }
        let dataset = try ImageDataset(paths: try expandGlobs(options.data), imagesKey: options.imagesKey)
        let trained = try TrainedModel(checkpoint: options.checkpoint, batch: options.batch)
        try trained.checkImageSize(height: dataset.height, width: dataset.width, channels: dataset.channels,
                                   source: "--data")
        let c = trained.configuration
        guard c.height >= ImageMetrics.ssimWindow && c.width >= ImageMetrics.ssimWindow else {
            throw TrainingError("SSIM needs images of at least \(ImageMetrics.ssimWindow)x\(ImageMetrics.ssimWindow) pixels; these are \(c.height)x\(c.width)")
        }
        for path in [options.reconOut, options.gridOut].compactMap({ $0 }) { try checkWritable(path) }
        let total = options.limit > 0 ? min(options.limit, dataset.count) : dataset.count
        let share = shard(total, rank: communicator.rank, size: communicator.size)
        let elements = trained.imageElements
        let kept = FloatBuffer(count: options.reconOut != nil ? share.count * elements : 0)
        var grid: [[PNGImage]] = []
        let measured = try measureImages(model: trained.model, dataset: dataset, range: share, corruptions: corruptions,
                                         seed: options.seed) { start, n, clean, damaged, output in
            if options.reconOut != nil {
                (kept.pointer + (start - share.lowerBound) * elements).update(from: output, count: n * elements)
            }
            if communicator.isRoot && options.gridOut != nil && grid.count < options.gridImages {
                grid += try gridRows(clean: clean, damaged: damaged, output: output, count: min(n, options.gridImages - grid.count),
                                     configuration: c)
            }
        }
        var sums = measured.sums
        let counts = measured.codeCounts
        try sums.values.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0.baseAddress!, count: EvaluationSums.count) }
        let corrupted = !corruptions.isEmpty
        if counts.count > 0 { try communicator.allReduceSum(counts.pointer, count: counts.count) }
        if let reconOut = options.reconOut {
            let sizes = (0..<communicator.size).map { shard(total, rank: $0, size: communicator.size).count * elements }
            let all = FloatBuffer(count: communicator.isRoot ? total * elements : 0)
            try communicator.gather(kept.pointer, count: share.count * elements, counts: sizes, into: all.pointer)
            if communicator.isRoot {
                try OutputFile.writeFloatImages(path: reconOut, images: all.pointer, shape: [total, c.height, c.width, c.channels],
                                                attributes: ["checkpoint": trained.path, "corrupt": corruptions.description])
            }
            withExtendedLifetime(all) {}
        }
        if let gridOut = options.gridOut, communicator.isRoot, !grid.isEmpty {
            try ImageGrid.compose(rows: grid).write(to: gridOut)
        }
        withExtendedLifetime(kept) {}
        guard communicator.isRoot else { return }
        report(sums: sums.values, counts: counts, trained: trained, images: total, corrupted: corrupted)
    }

    func report(sums: [Double], counts: FloatBuffer, trained: TrainedModel, images: Int, corrupted: Bool) {
        let n = max(sums[5], 1)
        var result: [String: Any] = [
            "mse": sums[0] / n, "psnr": sums[1] / n, "ssim": sums[2] / n, "bpp": trained.bitsPerPixel,
            "images": images, "model": trained.configuration.model.rawValue, "checkpoint": trained.path,
        ]
        if trained.configuration.model == .vqvae {
            let (perplexity, used) = codebookPerplexity(counts.pointer, count: counts.count)
            result["perplexity"] = perplexity
            result["codes_used"] = used
        } else {
            result["perplexity"] = NSNull()
            result["codes_used"] = NSNull()
        }
        if corrupted {
            result["input_psnr"] = sums[3] / n
            result["input_ssim"] = sums[4] / n
            result["corrupt"] = options.corrupt
        }
        if options.json {
            if let data = try? JSONSerialization.data(withJSONObject: result, options: [.sortedKeys, .withoutEscapingSlashes]) {
                console.info(String(decoding: data, as: UTF8.self))
            }
            return
        }
        console.info("vqvae eval: \(trained.path) on \(images) images (\(trained.configuration.model.rawValue))")
        func line(_ name: String, _ key: String, _ format: String) {
            guard let value = result[key] as? Double else { return }
            console.info(name.padding(toLength: 14, withPad: " ", startingAt: 0) + String(format: format, value))
        }
        line("MSE", "mse", "%.6f")
        line("PSNR (dB)", "psnr", "%.2f")
        line("SSIM", "ssim", "%.4f")
        if corrupted {
            line("input PSNR", "input_psnr", "%.2f")
            line("input SSIM", "input_ssim", "%.4f")
            console.info(String(format: "gain          %+.2f dB PSNR, %+.4f SSIM", sums[1] / n - sums[3] / n, sums[2] / n - sums[4] / n))
        }
        line("perplexity", "perplexity", "%.1f")
        if let used = result["codes_used"] as? Int { console.info("codes used    \(used) of \(trained.configuration.codes)") }
        line("bits/pixel", "bpp", "%.4f")
    }
}

/// Figures of one rank's share of an evaluation: `EvaluationSums` and the code counts (VQ-VAE).
struct MeasuredShare {
    var sums = EvaluationSums()
    var codeCounts: FloatBuffer
}

/// Runs `model` (in evaluation mode, in chunks of its `maxBatch`) over the images `range` of
/// `dataset`, damaged by `corruptions` (keyed by `seed` and the image index), and sums MSE, PSNR and
/// SSIM of the reconstruction against the clean image on 8-bit-clipped [0, 1] pixels (and of the
/// damaged input, when there are corruptions). `visit(start, n, clean, damaged, output)` sees each
/// chunk with pixels in [0, 1] (`damaged` nil without corruptions).
func measureImages(
    model: VQVAE, dataset: ImageDataset, range: Range<Int>, corruptions: CorruptionPipeline, seed: UInt64,
    visit: (Int, Int, UnsafePointer<Float>, UnsafePointer<Float>?, UnsafePointer<Float>) throws -> Void = { _, _, _, _, _ in }
) throws -> MeasuredShare {
    let c = model.configuration
    let elements = model.imageCount, positions = model.latentCount, chunk = model.maxBatch
    let clean = FloatBuffer(count: chunk * elements), damaged = FloatBuffer(count: chunk * elements)
    let output = FloatBuffer(count: chunk * elements)
    let scratch = FloatBuffer(count: CorruptionPipeline.scratchCount(height: c.height, width: c.width, channels: c.channels))
    var result = MeasuredShare(codeCounts: FloatBuffer(count: c.model == .vqvae ? c.codes : 0))
    var start = range.lowerBound
    while start < range.upperBound {
        let n = min(chunk, range.upperBound - start)
        try dataset.read(indices: Array(start..<(start + n)), into: clean.pointer)
        var input = UnsafePointer(clean.pointer)
        if !corruptions.isEmpty {
            damaged.pointer.update(from: clean.pointer, count: n * elements)
            for j in 0..<n {
                corruptions.apply(to: damaged.pointer + j * elements, height: c.height, width: c.width, channels: c.channels,
                                  seed: seed, epoch: 0, sampleIndex: start + j, scratch: scratch.pointer)
            }
            input = UnsafePointer(damaged.pointer)
        }
        model.forward(images: input, batch: n, training: false)
        output.pointer.update(from: model.reconstruction.pointer, count: n * elements)
        if c.model == .vqvae { for p in 0..<(n * positions) { result.codeCounts[Int(model.codeIndices[p])] += 1 } }
        for buffer in [clean, damaged, output] { unitPixels(buffer.pointer, count: n * elements) }
        let reference = UnsafeBufferPointer(start: clean.pointer, count: n * elements)
        for q in try ImageMetrics.qualities(UnsafeBufferPointer(start: output.pointer, count: n * elements), reference,
                                            count: n, height: c.height, width: c.width, channels: c.channels, quantize: true) {
            result.sums.values[0] += q.meanSquaredError
            result.sums.values[1] += min(q.peakSignalToNoiseRatio, Evaluation.psnrCap)
            result.sums.values[2] += q.structuralSimilarity
        }
        if !corruptions.isEmpty {
            for q in try ImageMetrics.qualities(UnsafeBufferPointer(start: damaged.pointer, count: n * elements), reference,
                                                count: n, height: c.height, width: c.width, channels: c.channels, quantize: true) {
                result.sums.values[3] += min(q.peakSignalToNoiseRatio, Evaluation.psnrCap)
                result.sums.values[4] += q.structuralSimilarity
            }
        }
        result.sums.values[5] += Double(n)
        try visit(start, n, clean.pointer, corruptions.isEmpty ? nil : UnsafePointer(damaged.pointer), output.pointer)
        start += n
    }
    withExtendedLifetime((clean, damaged, output, scratch)) {}
    return result
}

/// PNG rows original | damaged | reconstruction of the first `count` images of a chunk.
func gridRows(clean: UnsafePointer<Float>, damaged: UnsafePointer<Float>?, output: UnsafePointer<Float>, count: Int,
              configuration c: ModelConfiguration) throws -> [[PNGImage]] {
    let elements = c.height * c.width * c.channels
    return try (0..<count).map { j in
        var row = [try png(clean + j * elements, c)]
        if let damaged { row.append(try png(damaged + j * elements, c)) }
        row.append(try png(output + j * elements, c))
        return row
    }
}

/// The contiguous share of `0..<total` that `rank` of `size` handles (the first `total % size`
/// ranks take one more).
func shard(_ total: Int, rank: Int, size: Int) -> Range<Int> {
    let base = total / size, extra = total % size
    let start = rank * base + min(rank, extra)
    return start..<(start + base + (rank < extra ? 1 : 0))
}

/// Perplexity `exp(-sum p log p)` of code counts, and how many codes were used.
func codebookPerplexity(_ counts: UnsafePointer<Float>, count: Int) -> (Double, Int) {
    var total: Double = 0
    var used = 0
    for i in 0..<count where counts[i] > 0 { total += Double(counts[i]); used += 1 }
    guard total > 0 else { return (0, 0) }
    var entropy: Double = 0
    for i in 0..<count where counts[i] > 0 {
        let p = Double(counts[i]) / total
        entropy -= p * log(p)
    }
    return (exp(entropy), used)
}

/// One image `[H, W, C]` with pixels in [0, 1] as an 8-bit PNG image.
func png(_ pixels: UnsafePointer<Float>, _ c: ModelConfiguration) throws -> PNGImage {
    try PNGImage(unitFloats: UnsafeBufferPointer(start: pixels, count: c.height * c.width * c.channels),
                 height: c.height, width: c.width, channels: c.channels)
}

/// Fails early, before any work, when `path`'s folder does not exist.
func checkWritable(_ path: String) throws {
    let folder = (path as NSString).deletingLastPathComponent
    var isFolder: ObjCBool = false
    guard folder.isEmpty || (FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) && isFolder.boolValue) else {
        throw TrainingError("\(path): the folder \(folder) does not exist")
    }
}
