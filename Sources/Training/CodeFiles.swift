import Data
import Foundation
import Model

/// What `vqvae encode` is told.
public struct EncodeOptions: Sendable {
    public var checkpoint = ""
    public var data: [String] = []
    public var imagesKey = "images"
    /// The code file to write (HDF5).
    public var out = ""
    /// Images per forward pass.
    public var batch = 64
    /// Encode only the first N images (0 = all).
    public var limit = 0
    public var threads = 1
    /// Replace an existing `out` (atomically).
    public var force = false
    /// Encode with the checkpoint's trained weights even when it holds a weight EMA (`--raw-weights`).
    public var rawWeights = false

    public init() {}
}

/// The sample type of decoded images.
public enum PixelType: String, CaseIterable, Sendable {
    /// Pixels in [0, 1], unclipped (as `vqvae eval --recon-out`).
    case float32
    /// `round(clip(v, 0, 1) * 255)`, as `vqvae restore` writes HDF5 output.
    case uint8
}

/// What `vqvae decode` is told.
public struct DecodeOptions: Sendable {
    /// The code file written by `vqvae encode`.
    public var codes = ""
    /// The VQ-VAE checkpoint (nil: the one the code file names).
    public var checkpoint: String?
    /// The HDF5 file for the decoded images.
    public var out = ""
    /// A folder for PNG files of the first `pngImages` decoded images.
    public var pngOut: String?
    public var pngImages = 16
    /// Images per decoder pass.
    public var batch = 64
    public var threads = 1
    /// Replace an existing `out` and write into a `pngOut` folder that holds files.
    public var force = false
    /// The sample type of `out`.
    public var dtype = PixelType.float32

    public init() {}
}

/// `vqvae encode` and `vqvae decode`: images to bit-packed code indices in an HDF5 code file
/// (`CodeFile`) and back.
public enum CodeFiles {
    /// Encodes the images of `options.data` into a code file.
    public static func encode(_ options: EncodeOptions, console: Console) throws {
        guard !options.data.isEmpty else { throw CodeFileError("--data is required") }
        guard options.limit >= 0 else { throw CodeFileError("--limit must not be negative") }
        let paths = try expandGlobs(options.data)
        try OutputSafety.check(options.out, flag: "--out", inputs: paths + [options.checkpoint], force: options.force, CodeFileError.self)
        try checkWritable(options.out, CodeFileError.self)
        setBLASThreads(options.threads)
        let dataset = try ImageDataset(paths: paths, imagesKey: options.imagesKey)
        let trained = try TrainedModel(checkpoint: options.checkpoint, batch: options.batch,
                                       weights: TrainedModel.weights(raw: options.rawWeights))
        let c = trained.configuration
        guard c.model == .vqvae else {
            throw CodeFileError("\(options.checkpoint) is a --model \(c.model.rawValue) checkpoint; encode needs a VQ-VAE (codes)")
        }
        guard !c.residual else {
            throw CodeFileError("\(options.checkpoint) is a --residual model: its output is its input plus a correction, so its codes alone cannot be decoded")
        }
        guard c.codesPerPosition == 1 else {
            throw CodeFileError("\(options.checkpoint) is residual VQ with \(c.codebooks) codebooks; code files hold one code per latent position")
        }
        guard !c.skips || c.skipWeightLow == 0 else {
            throw CodeFileError("\(options.checkpoint) is a --skips model trained with skip weights \(c.skipWeightLow)..\(c.skipWeightHigh): its decoder needs the encoder's activations, so its codes alone cannot be decoded (train with --skip-weight 0..1 to decode codes)")
        }
        try trained.checkImageSize(height: dataset.height, width: dataset.width, channels: dataset.channels, source: "--data")
        let total = options.limit > 0 ? min(options.limit, dataset.count) : dataset.count
        let batch = options.batch
        let elements = trained.imageElements, positions = trained.model.latentCount
        let images = FloatBuffer(count: batch * elements), output = FloatBuffer(count: batch * elements)
        var codes = [Int32](repeating: 0, count: total * positions)
        var start = 0
        while start < total {
            let n = min(batch, total - start)
            try dataset.read(indices: Array(start..<(start + n)), into: images.pointer)
            codes.withUnsafeMutableBufferPointer {
                trained.reconstruct(images.pointer, count: n, into: output.pointer, codes: $0.baseAddress! + start * positions)
            }
            start += n
        }
        withExtendedLifetime((images, output)) {}
        let file = CodeFile(count: total, latentHeight: c.latentHeight, latentWidth: c.latentWidth, codebookSize: c.codes,
                            height: c.height, width: c.width, channels: c.channels, checkpoint: trained.path,
                            codebookChecksum: trained.codebookChecksum, weights: trained.weights,
                            packed: try CodePacking.pack(codes, codes: c.codes))
        try file.write(path: options.out)
        let raw = Double(total * c.height * c.width * c.channels)
        console.info(String(format: "encoded %d images to %@: %d bytes of codes, %.4f bits per pixel (%d bits per code, %dx%d codes per image; %.1fx smaller than 8-bit pixels)",
                            total, options.out, file.packed.count, file.bitsPerPixel, file.bitsPerCode, c.latentHeight, c.latentWidth,
                            raw / Double(max(file.packed.count, 1))))
    }

    /// Decodes a code file into float32 or uint8 images (and optionally PNG files).
    public static func decode(_ options: DecodeOptions, console: Console) throws {
        let file = try CodeFile.read(path: options.codes)
        let path = options.checkpoint ?? file.checkpoint
        try OutputSafety.checkDistinct([("--out", options.out), ("--png-out", options.pngOut)], CodeFileError.self)
        try OutputSafety.check(options.out, flag: "--out", inputs: [options.codes, path], force: options.force, CodeFileError.self)
        try checkWritable(options.out, CodeFileError.self)
        if let pngOut = options.pngOut {
            try OutputSafety.check(pngOut, flag: "--png-out", inputs: [options.codes, path], force: options.force, CodeFileError.self)
        }
        setBLASThreads(options.threads)
        // The weights the codes were encoded with (an older code file: the trained ones).
        if file.weights == .averaged, !(try Checkpoint.hasWeightAverage(path: path)) {
            throw CodeFileError("\(options.codes) was encoded with the weight EMA of \(file.checkpoint), but \(path) holds none; pass that checkpoint with --checkpoint")
        }
        let trained = try TrainedModel(checkpoint: path, batch: options.batch, weights: .required(file.weights))
        let c = trained.configuration
        guard c.model == .vqvae else { throw CodeFileError("\(path) is not a VQ-VAE checkpoint") }
        guard !c.residual else {
            throw CodeFileError("\(path) is a --residual model: its output is its input plus a correction, so codes alone cannot be decoded")
        }
        guard c.codesPerPosition == 1 else {
            throw CodeFileError("\(path) is residual VQ with \(c.codebooks) codebooks; code files hold one code per latent position")
        }
        guard !c.skips || c.skipWeightLow == 0 else {
            throw CodeFileError("\(path) is a --skips model trained with skip weights \(c.skipWeightLow)..\(c.skipWeightHigh): its decoder needs the encoder's activations, so codes alone cannot be decoded (train with --skip-weight 0..1 to decode codes)")
        }
        guard (file.latentHeight, file.latentWidth, file.codebookSize, file.height, file.width, file.channels)
                == (c.latentHeight, c.latentWidth, c.codes, c.height, c.width, c.channels) else {
            throw CodeFileError("\(options.codes) holds \(file.latentHeight)x\(file.latentWidth) codes of a \(file.codebookSize)-code book for \(file.height)x\(file.width)x\(file.channels) images; \(path) does not match")
        }
        guard file.codebookChecksum == trained.codebookChecksum else {
            throw CodeFileError("\(path) has another codebook than the one \(options.codes) was encoded with (\(file.checkpoint)); pass that checkpoint with --checkpoint")
        }
        let indices = try CodePacking.unpack(file.packed, count: file.indexCount, codes: file.codebookSize)
        let elements = trained.imageElements
        let images = FloatBuffer(count: file.count * elements)
        indices.withUnsafeBufferPointer { trained.decode(codes: $0.baseAddress!, count: file.count, into: images.pointer) }
        unitPixels(images.pointer, count: file.count * elements)
        let shape = [file.count, c.height, c.width, c.channels], attributes = ["checkpoint": trained.path, "corrupt": "",
                                                                      "weights": trained.weights.rawValue]
        switch options.dtype {
        case .float32:
            try OutputFile.writeFloatImages(path: options.out, images: images.pointer, shape: shape, attributes: attributes)
        case .uint8:
            let bytes = UnsafeBufferPointer(start: images.pointer, count: file.count * elements).map(PNGImage.quantize)
            try OutputFile.writeByteImages(path: options.out, images: bytes, shape: shape, attributes: attributes)
        }
        if let pngOut = options.pngOut {
            try FileManager.default.createDirectory(atPath: pngOut, withIntermediateDirectories: true)
            for i in 0..<min(options.pngImages, file.count) {
                try png(images.pointer + i * elements, c).write(to: pngOut + "/" + String(format: "%06d.png", i))
            }
        }
        withExtendedLifetime(images) {}
        console.info(String(format: "decoded %d images from %@ (%.4f bits per pixel) to %@", file.count, options.codes,
                            file.bitsPerPixel, options.out))
    }
}
