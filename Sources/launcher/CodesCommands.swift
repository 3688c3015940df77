import ArgumentParser
import Data
import Foundation
import Model

struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compress images to VQ-VAE code indices, bit-packed in an HDF5 code file.",
        discussion: """
        Each image becomes its latent grid of code indices (h x w), stored at ceil(log2 K) bits per \
        code. The file names the checkpoint and a checksum of its codebook; `vqvae decode` turns it \
        back into images, exactly the reconstructions `vqvae eval --recon-out` writes. Runs as one process.
        """)

    @Option(help: "VQ-VAE checkpoint (HDF5).")
    var checkpoint: String
    @Option(name: .long, parsing: .upToNextOption, help: "HDF5 dataset file(s) with the images.")
    var data: [String] = []
    @Option(name: .customLong("images-key"), help: "Name of the images dataset in each file.")
    var imagesKey = "images"
    @Option(help: "Output code file (HDF5).")
    var out: String
    @Option(help: "Images per forward pass.")
    var batch = 64
    @Option(help: "Encode only the first N images (0 = all).")
    var limit = 0

    func run() throws {
        try reportingErrors {
            guard !data.isEmpty else { throw TrainingError("--data is required") }
            guard limit >= 0 else { throw TrainingError("--limit must not be negative") }
            try checkWritable(out)
            let dataset = try ImageDataset(paths: try expandGlobs(data), imagesKey: imagesKey)
            let trained = try TrainedModel(checkpoint: checkpoint, batch: batch)
            let c = trained.configuration
            guard c.model == .vqvae else {
                throw TrainingError("\(checkpoint) is a --model \(c.model.rawValue) checkpoint; encode needs a VQ-VAE (codes)")
            }
            try trained.checkImageSize(height: dataset.height, width: dataset.width, channels: dataset.channels, source: "--data")
            let total = limit > 0 ? min(limit, dataset.count) : dataset.count
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
                                codebookChecksum: trained.codebookChecksum, packed: try CodePacking.pack(codes, codes: c.codes))
            try file.write(path: out)
            let raw = Double(total * c.height * c.width * c.channels)
            print(String(format: "encoded %d images to %@: %d bytes of codes, %.4f bits per pixel (%d bits per code, %dx%d codes per image; %.1fx smaller than 8-bit pixels)",
                         total, out, file.packed.count, file.bitsPerPixel, file.bitsPerCode, c.latentHeight, c.latentWidth,
                         raw / Double(max(file.packed.count, 1))))
        }
    }
}

struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn a code file from `vqvae encode` back into images.",
        discussion: """
        Writes float32 (N, H, W, C) images in [0, 1], unclipped (as `vqvae eval --recon-out`), to --out; \
        --png-out also writes the first images as PNG files. The checkpoint defaults to the one named \
        in the code file; its codebook must be the one the codes were made with. Runs as one process.
        """)

    @Option(help: "Code file written by `vqvae encode`.")
    var codes: String
    @Option(help: "VQ-VAE checkpoint (default: the one named in the code file).")
    var checkpoint: String?
    @Option(help: "Output HDF5 file for the decoded images.")
    var out: String
    @Option(name: .customLong("png-out"), help: "Folder for PNG files of the first decoded images (created if missing).")
    var pngOut: String?
    @Option(name: .customLong("png-images"), help: "How many images --png-out writes.")
    var pngImages = 16
    @Option(help: "Images per decoder pass.")
    var batch = 64

    func run() throws {
        try reportingErrors {
            try checkWritable(out)
            let file = try CodeFile.read(path: codes)
            let path = checkpoint ?? file.checkpoint
            let trained = try TrainedModel(checkpoint: path, batch: batch)
            let c = trained.configuration
            guard c.model == .vqvae else { throw TrainingError("\(path) is not a VQ-VAE checkpoint") }
            guard (file.latentHeight, file.latentWidth, file.codebookSize, file.height, file.width, file.channels)
                    == (c.latentHeight, c.latentWidth, c.codes, c.height, c.width, c.channels) else {
                throw TrainingError("\(codes) holds \(file.latentHeight)x\(file.latentWidth) codes of a \(file.codebookSize)-code book for \(file.height)x\(file.width)x\(file.channels) images; \(path) does not match")
            }
            guard file.codebookChecksum == trained.codebookChecksum else {
                throw TrainingError("\(path) has another codebook than the one \(codes) was encoded with (\(file.checkpoint)); pass that checkpoint with --checkpoint")
            }
            let indices = try CodePacking.unpack(file.packed, count: file.indexCount, codes: file.codebookSize)
            let elements = trained.imageElements
            let images = FloatBuffer(count: file.count * elements)
            indices.withUnsafeBufferPointer { trained.decode(codes: $0.baseAddress!, count: file.count, into: images.pointer) }
            unitPixels(images.pointer, count: file.count * elements)
            try OutputFile.writeFloatImages(path: out, images: images.pointer, shape: [file.count, c.height, c.width, c.channels],
                                            attributes: ["checkpoint": trained.path, "corrupt": ""])
            if let pngOut {
                try FileManager.default.createDirectory(atPath: pngOut, withIntermediateDirectories: true)
                for i in 0..<min(pngImages, file.count) {
                    try png(images.pointer + i * elements, c).write(to: pngOut + "/" + String(format: "%06d.png", i))
                }
            }
            withExtendedLifetime(images) {}
            print(String(format: "decoded %d images from %@ (%.4f bits per pixel) to %@", file.count, codes, file.bitsPerPixel, out))
        }
    }
}

/// Runs a single-process command: any error becomes one line on standard error and exit code 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as ExitCode {
        throw error
    } catch {
        Console().error("\(error)")
        throw ExitCode(1)
    }
}
