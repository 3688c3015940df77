import Data
import Dist
import Foundation
import Model

/// What `vqvae eval` is told.
public struct EvaluationOptions: Sendable {
    public var checkpoint = ""
    public var data: [String] = []
    public var imagesKey = "images"
    /// Damage the input first (the reference stays clean); keyed by `seed` and the image index.
    public var corrupt = ""
    public var seed: UInt64 = 1
    /// Images per forward pass.
    public var batch = 64
    /// Evaluate only the first N images (0 = all).
    public var limit = 0
    /// Write the reconstructions as float32 `(N, H, W, C)` in [0, 1] to this HDF5 file.
    public var reconstructionsOut: String?
    /// Write a PNG grid original | damaged | reconstruction of the first images.
    public var gridOut: String?
    public var gridImages = 8
    /// Replace an existing `reconstructionsOut` or `gridOut`.
    public var force = false
    public var threads = 1
    /// Evaluate the checkpoint's trained weights even when it holds a weight EMA (`--raw-weights`).
    public var rawWeights = false
    /// Residual VQ: decode with the first this many codebooks (nil: all).
    public var codebooks: Int?

    public init() {}
}

/// Sums over images of the figures of an evaluation, per rank before they are reduced.
public struct EvaluationSums: Sendable {
    public var meanSquaredError: Double = 0
    public var psnr: Double = 0
    public var ssim: Double = 0
    public var inputPSNR: Double = 0
    public var inputSSIM: Double = 0
    public var images: Double = 0

    static let count = 6

    var flat: [Double] { [meanSquaredError, psnr, ssim, inputPSNR, inputSSIM, images] }

    init() {}

    init(flat: [Double]) {
        (meanSquaredError, psnr, ssim, inputPSNR, inputSSIM, images) = (flat[0], flat[1], flat[2], flat[3], flat[4], flat[5])
    }

    /// The sums over every rank's share, as means per image.
    func reduced(_ communicator: Communicator) throws -> EvaluationFigures {
        var values = flat
        try values.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0.baseAddress!, count: Self.count) }
        return EvaluationSums(flat: values).means
    }

    var means: EvaluationFigures {
        let n = max(images, 1)
        return EvaluationFigures(meanSquaredError: meanSquaredError / n, psnr: psnr / n, ssim: ssim / n,
                                 inputPSNR: inputPSNR / n, inputSSIM: inputSSIM / n, images: Int(images))
    }
}

/// The figures of an evaluation, averaged over images: of the reconstruction against the clean
/// image, and of the damaged input (when there was damage) against it, on 8-bit pixels.
public struct EvaluationFigures: Equatable, Sendable {
    public var meanSquaredError: Double
    public var psnr: Double
    public var ssim: Double
    public var inputPSNR: Double
    public var inputSSIM: Double
    public var images: Int
}

/// The result of `vqvae eval`.
public struct EvaluationReport: Sendable {
    public var figures: EvaluationFigures
    /// VQ-VAE: code use over the evaluated images (nil for the other models).
    public var codebook: CodebookUsage?
    public var bitsPerPixel: Double
    public var model: ModelKind
    public var checkpoint: String
    /// The corruption evaluated ("" for none).
    public var corrupt: String
    /// The corruption the model was trained on, as its checkpoint records it ("" for none).
    public var trainedCorrupt: String
    public var codes: Int
    /// The weights evaluated: the weight EMA (`ema`) or the trained weights.
    public var weights: CheckpointWeights = .trained

    /// The `--json` object.
    public var json: [String: Any] {
        var result: [String: Any] = [
            "mse": figures.meanSquaredError, "psnr": figures.psnr, "ssim": figures.ssim, "bpp": bitsPerPixel,
            "images": figures.images, "model": model.rawValue, "checkpoint": checkpoint,
            "perplexity": codebook.map { $0.perplexity as Any } ?? NSNull(),
            "codes_used": codebook.map { $0.codesUsed as Any } ?? NSNull(),
            "corrupt": corrupt, "trained_corrupt": trainedCorrupt, "weights": weights.rawValue,
        ]
        if !corrupt.isEmpty {
            result["input_psnr"] = figures.inputPSNR
            result["input_ssim"] = figures.inputSSIM
        }
        return result
    }

    /// Which damage is evaluated, against the damage the model was trained on; nil when both are
    /// none.
    public var damageLine: String? {
        switch (corrupt.isEmpty, trainedCorrupt.isEmpty) {
        case (true, true):
            return nil
        case (true, false):
            return "evaluating on clean inputs; the model was trained on \(trainedCorrupt) — pass --corrupt \(trainedCorrupt) to measure restoration"
        case (false, true):
            return "evaluating on \(corrupt); the model was trained on clean inputs"
        case (false, false):
            return (try? CorruptionPipeline(spec: corrupt).description) == trainedCorrupt
                ? "evaluating on \(corrupt), the damage the model was trained on"
                : "evaluating on \(corrupt); the model was trained on \(trainedCorrupt)"
        }
    }

    /// The human-readable table.
    public var lines: [String] {
        func row(_ name: String, _ text: String) -> String { name.padding(toLength: 14, withPad: " ", startingAt: 0) + text }
        var lines = ["vqvae eval: \(checkpoint) on \(figures.images) images (\(model.rawValue)\(weights == .averaged ? ", weight EMA" : ""))"]
        if let damageLine { lines.append(damageLine) }
        lines += [row("MSE", String(format: "%.6f", figures.meanSquaredError)),
                     row("PSNR (dB)", String(format: "%.2f", figures.psnr)),
                     row("SSIM", String(format: "%.4f", figures.ssim))]
        if !corrupt.isEmpty {
            lines += [row("input PSNR", String(format: "%.2f", figures.inputPSNR)),
                      row("input SSIM", String(format: "%.4f", figures.inputSSIM)),
                      String(format: "gain          %+.2f dB PSNR, %+.4f SSIM", figures.psnr - figures.inputPSNR,
                             figures.ssim - figures.inputSSIM)]
        }
        if let codebook {
            lines.append(row("perplexity", String(format: "%.1f", codebook.perplexity)))
            lines.append("codes used    \(codebook.codesUsed) of \(codes)")
        }
        lines.append(row("bits/pixel", String(format: "%.4f", bitsPerPixel)))
        return lines
    }
}

/// `vqvae eval`: every rank evaluates a contiguous share of the images; the figures are reduced,
/// reconstructions gathered to rank 0.
public enum Evaluation {
    /// PSNR above this (identical images) counts as this in the mean.
    static let psnrCap = 100.0

    /// Runs the evaluation on every rank; returns the report (the same on every rank).
    public static func run(_ options: EvaluationOptions, communicator: Communicator) throws -> EvaluationReport {
        setBLASThreads(options.threads)
        let corruptions = try CorruptionPipeline(spec: options.corrupt)
        guard options.limit >= 0 else { throw EvaluationError("--limit must not be negative") }
        guard !options.data.isEmpty else { throw EvaluationError("--data is required") }
        let files = try expandGlobs(options.data)
        try checkOutputs(options, inputs: files + [options.checkpoint], communicator: communicator)
        let dataset = try ImageDataset(paths: files, imagesKey: options.imagesKey)
        let trained = try TrainedModel(checkpoint: options.checkpoint, batch: options.batch,
                                       weights: TrainedModel.weights(raw: options.rawWeights))
        try trained.checkImageSize(height: dataset.height, width: dataset.width, channels: dataset.channels,
                                   source: "--data")
        let c = trained.configuration
        if let codebooks = options.codebooks {
            guard c.hasCodebook, (1...c.codebooks).contains(codebooks) else {
                throw EvaluationError("--codebooks \(codebooks): \(options.checkpoint) has \(c.hasCodebook ? "\(c.codebooks) codebook(s)" : "no codebook"); give 1 to \(c.hasCodebook ? c.codebooks : 1)")
            }
            trained.model.evaluationCodebooks = codebooks
        }
        guard c.height >= ImageMetrics.ssimWindow && c.width >= ImageMetrics.ssimWindow else {
            throw EvaluationError("SSIM needs images of at least \(ImageMetrics.ssimWindow)x\(ImageMetrics.ssimWindow) pixels; these are \(c.height)x\(c.width)")
        }
        for path in [options.reconstructionsOut, options.gridOut].compactMap({ $0 }) { try checkWritable(path, EvaluationError.self) }
        let total = options.limit > 0 ? min(options.limit, dataset.count) : dataset.count
        let share = shard(total, rank: communicator.rank, size: communicator.size)
        let elements = trained.imageElements
        let kept = FloatBuffer(count: options.reconstructionsOut != nil ? share.count * elements : 0)
        var grid: [[PNGImage]] = []
        let measured = try measureImages(model: trained.model, dataset: dataset, range: share, corruptions: corruptions,
                                         seed: options.seed) { start, n, clean, damaged, output in
            if options.reconstructionsOut != nil {
                (kept.pointer + (start - share.lowerBound) * elements).update(from: output, count: n * elements)
            }
            if communicator.isRoot && options.gridOut != nil && grid.count < options.gridImages {
                grid += try gridRows(clean: clean, damaged: damaged, output: output, count: min(n, options.gridImages - grid.count),
                                     configuration: c)
            }
        }
        let figures = try measured.sums.reduced(communicator)
        let counts = measured.codeCounts
        if counts.count > 0 { try communicator.allReduceSum(counts.pointer, count: counts.count) }
        if let reconstructionsOut = options.reconstructionsOut {
            let sizes = (0..<communicator.size).map { shard(total, rank: $0, size: communicator.size).count * elements }
            let all = FloatBuffer(count: communicator.isRoot ? total * elements : 0)
            try communicator.gather(kept.pointer, count: share.count * elements, counts: sizes, into: all.pointer)
            if communicator.isRoot {
                try OutputFile.writeFloatImages(path: reconstructionsOut, images: all.pointer, shape: [total, c.height, c.width, c.channels],
                                                attributes: ["checkpoint": trained.path, "corrupt": corruptions.description,
                                                             "weights": trained.weights.rawValue])
            }
            withExtendedLifetime(all) {}
        }
        if let gridOut = options.gridOut, communicator.isRoot, !grid.isEmpty {
            try ImageGrid.compose(rows: grid).write(to: gridOut)
        }
        withExtendedLifetime(kept) {}
        return EvaluationReport(
            figures: EvaluationFigures(meanSquaredError: figures.meanSquaredError, psnr: figures.psnr, ssim: figures.ssim,
                                       inputPSNR: figures.inputPSNR, inputSSIM: figures.inputSSIM, images: total),
            codebook: c.model == .vqvae ? CodebookUsage(counts: counts.pointer, count: counts.count) : nil,
            bitsPerPixel: trained.bitsPerPixel * Double(trained.model.evaluationCodebooks) / Double(c.codesPerPosition), model: c.model, checkpoint: trained.path,
            corrupt: corruptions.isEmpty ? "" : options.corrupt, trainedCorrupt: trained.run.data.corrupt, codes: c.codes * c.codesPerPosition,
            weights: trained.weights)
    }

    /// Refuses, before any work, an output that is one of `inputs` or that exists already (without
    /// `--force`). Rank 0, which writes the outputs, checks; every rank learns its verdict, so all
    /// stop together and the refusal is printed once.
    static func checkOutputs(_ options: EvaluationOptions, inputs: [String], communicator: Communicator) throws {
        var refusal: String?
        if communicator.isRoot {
            do {
                for (flag, path) in [("--recon-out", options.reconstructionsOut), ("--grid-out", options.gridOut)] {
                    guard let path else { continue }
                    try OutputSafety.check(path, flag: flag, inputs: inputs, force: options.force, EvaluationError.self)
                }
            } catch {
                refusal = "\(error)"
            }
        }
        var refused: Float = refusal == nil ? 0 : 1
        try communicator.broadcast(&refused, count: 1)
        if refused != 0 { throw CollectiveError(refusal ?? "an output was refused") }
    }
}

/// Figures of one rank's share of an evaluation: the sums and the code counts (VQ-VAE).
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
    model: VQVAE, dataset: any ImageSource, range: Range<Int>, corruptions: CorruptionPipeline, seed: UInt64,
    visit: (Int, Int, UnsafePointer<Float>, UnsafePointer<Float>?, UnsafePointer<Float>) throws -> Void = { _, _, _, _, _ in }
) throws -> MeasuredShare {
    let c = model.configuration
    let elements = model.imageCount, positions = model.latentCount, chunk = model.maxBatch
    let clean = FloatBuffer(count: chunk * elements), damaged = FloatBuffer(count: chunk * elements)
    let output = FloatBuffer(count: chunk * elements)
    // Mask-aware models read the mask of the pixels the corruptions filled.
    let pixels = c.height * c.width
    let missing = FloatBuffer(count: c.maskChannel ? chunk * pixels : 0)
    let scratch = FloatBuffer(count: CorruptionPipeline.scratchCount(height: c.height, width: c.width, channels: c.channels))
    var result = MeasuredShare(codeCounts: FloatBuffer(count: c.model == .vqvae ? c.codes * c.codesPerPosition : 0))
    var start = range.lowerBound
    while start < range.upperBound {
        let n = min(chunk, range.upperBound - start)
        try dataset.read(indices: Array(start..<(start + n)), into: clean.pointer)
        var input = UnsafePointer(clean.pointer)
        if !corruptions.isEmpty {
            damaged.pointer.update(from: clean.pointer, count: n * elements)
            for j in 0..<n {
                corruptions.apply(to: damaged.pointer + j * elements, height: c.height, width: c.width, channels: c.channels,
                                  seed: seed, epoch: 0, sampleIndex: start + j, scratch: scratch.pointer,
                                  missing: c.maskChannel ? missing.pointer + j * pixels : nil)
            }
            input = UnsafePointer(damaged.pointer)
        }
        model.forward(images: input, masks: c.maskChannel && !corruptions.isEmpty ? UnsafePointer(missing.pointer) : nil, batch: n, training: false)
        output.pointer.update(from: model.reconstruction.pointer, count: n * elements)
        if c.model == .vqvae {
            // Residual VQ: codebook l's code k counts as l*K + k.
            let perPosition = c.codesPerPosition
            for i in 0..<(n * positions * perPosition) where model.codeIndices[i] >= 0 {  // -1: a codebook not in use
                result.codeCounts[(i % perPosition) * c.codes + Int(model.codeIndices[i])] += 1
            }
        }
        for buffer in [clean, damaged, output] { unitPixels(buffer.pointer, count: n * elements) }
        let reference = UnsafeBufferPointer(start: clean.pointer, count: n * elements)
        for q in try ImageMetrics.qualities(UnsafeBufferPointer(start: output.pointer, count: n * elements), reference,
                                            count: n, height: c.height, width: c.width, channels: c.channels, quantize: true) {
            result.sums.meanSquaredError += q.meanSquaredError
            result.sums.psnr += min(q.peakSignalToNoiseRatio, Evaluation.psnrCap)
            result.sums.ssim += q.structuralSimilarity
        }
        if !corruptions.isEmpty {
            for q in try ImageMetrics.qualities(UnsafeBufferPointer(start: damaged.pointer, count: n * elements), reference,
                                                count: n, height: c.height, width: c.width, channels: c.channels, quantize: true) {
                result.sums.inputPSNR += min(q.peakSignalToNoiseRatio, Evaluation.psnrCap)
                result.sums.inputSSIM += q.structuralSimilarity
            }
        }
        result.sums.images += Double(n)
        try visit(start, n, clean.pointer, corruptions.isEmpty ? nil : UnsafePointer(damaged.pointer), output.pointer)
        start += n
    }
    withExtendedLifetime((clean, damaged, output, scratch, missing)) {}
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
public func shard(_ total: Int, rank: Int, size: Int) -> Range<Int> {
    let base = total / size, extra = total % size
    let start = rank * base + min(rank, extra)
    return start..<(start + base + (rank < extra ? 1 : 0))
}

/// One image `[H, W, C]` with pixels in [0, 1] as an 8-bit PNG image.
func png(_ pixels: UnsafePointer<Float>, _ c: ModelConfiguration) throws -> PNGImage {
    try PNGImage(unitFloats: UnsafeBufferPointer(start: pixels, count: c.height * c.width * c.channels),
                 height: c.height, width: c.width, channels: c.channels)
}

/// Fails early, before any work, when `path`'s folder does not exist.
func checkWritable<Failure: UserFacingError>(_ path: String, _ failure: Failure.Type) throws {
    let folder = (path as NSString).deletingLastPathComponent
    var isFolder: ObjCBool = false
    guard folder.isEmpty || (FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) && isFolder.boolValue) else {
        throw Failure("\(path): the folder \(folder) does not exist")
    }
}
