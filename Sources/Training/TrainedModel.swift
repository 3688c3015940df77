import Data
import Foundation
import Model

/// A model read from a checkpoint, for the commands that apply it (`eval`, `restore`, `encode`,
/// `decode`, `probe`). Images go in and come out in the model's normalised space (`p - 0.5`).
///
/// Which weights: a checkpoint of a run with `--weight-ema` holds the trained parameters and their
/// moving average; the average is what these commands use unless told otherwise (`--raw-weights`),
/// as validation during training does. A checkpoint without one has only the trained weights.
public final class TrainedModel {
    /// Which weights to load.
    public enum Weights: Sendable {
        /// The weight average when the checkpoint holds one, the trained weights otherwise.
        case preferAveraged
        /// The trained weights (`--raw-weights`).
        case trained
        /// Exactly these (`decode` takes what its code file was encoded with).
        case required(CheckpointWeights)
    }

    public let path: String
    public let run: RunConfiguration
    public let model: VQVAE
    /// The weights loaded: `.averaged` (the weight EMA) or `.trained`.
    public let weights: CheckpointWeights

    public var configuration: ModelConfiguration { model.configuration }
    var imageElements: Int { model.imageCount }
    var batch: Int { model.maxBatch }

    public init(checkpoint path: String, batch: Int, weights choice: Weights = .preferAveraged) throws {
        guard batch >= 1 else { throw ModelLoadError("--batch must be at least 1 (got \(batch))") }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue else {
            throw ModelLoadError("--checkpoint \(path): no such file")
        }
        self.path = path
        run = try RunConfiguration.decode(try Checkpoint.configuration(path: path), path: path)
        model = try VQVAE(configuration: run.model, maxBatch: batch)
        switch choice {
        case .preferAveraged: weights = try Checkpoint.hasWeightAverage(path: path) ? .averaged : .trained
        case .trained: weights = .trained
        case .required(let required): weights = required
        }
        _ = try Checkpoint.load(path: path, into: model, optimizer: nil, weights: weights)
    }

    /// How `--raw-weights` chooses.
    public static func weights(raw: Bool) -> Weights { raw ? .trained : .preferAveraged }

    /// Names the weights in messages: "" for a checkpoint's only weights, otherwise which of two.
    var weightsNote: String {
        switch weights {
        case .averaged: return "its weight EMA (--raw-weights for the trained weights)"
        case .trained: return run.weightEma != nil ? "its trained weights, not its weight EMA" : ""
        }
    }

    /// Checks that images of `height x width x channels` are what the model was trained on.
    func checkImageSize(height: Int, width: Int, channels: Int, source: String) throws {
        let c = configuration
        guard (height, width, channels) == (c.height, c.width, c.channels) else {
            throw ModelLoadError("\(source) holds \(height)x\(width)x\(channels) images, but \(path) was trained on \(c.height)x\(c.width)x\(c.channels)")
        }
    }

    /// Reconstructs `count` images `[count, H, W, C]` into `output` in chunks of `batch`: the
    /// VQ-VAE through its codes (also written to `codes` `[count, h, w]` when given), the VAE
    /// through its mean, the autoencoder through its latent.
    func reconstruct(_ input: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>,
                     codes: UnsafeMutablePointer<Int32>? = nil) {
        let elements = imageElements, positions = model.latentCount
        var start = 0
        while start < count {
            let n = min(batch, count - start)
            model.forward(images: input + start * elements, batch: n, training: false)
            (output + start * elements).update(from: model.reconstruction.pointer, count: n * elements)
            if let codes { (codes + start * positions).update(from: model.codeIndices.baseAddress!, count: n * positions) }
            start += n
        }
    }

    /// VQ-VAE: decodes `count` images' code indices `[count, h, w]` into `output` in chunks of `batch`.
    func decode(codes: UnsafePointer<Int32>, count: Int, into output: UnsafeMutablePointer<Float>) {
        let elements = imageElements, positions = model.latentCount
        var start = 0
        while start < count {
            let n = min(batch, count - start)
            model.decode(codes: codes + start * positions, batch: n)
            (output + start * elements).update(from: model.reconstruction.pointer, count: n * elements)
            start += n
        }
    }

    /// FNV-1a over the codebook's float bits: names the codebook a code file was made with.
    var codebookChecksum: UInt64 {
        if let scalar = model.scalarQuantizer {
            // FSQ's codebook is its levels.
            return scalar.levels.map(Float.init).withUnsafeBufferPointer { bitFingerprint($0.baseAddress!, count: $0.count) }
        }
        guard let quantizer = model.quantizer else { return 0 }
        return bitFingerprint(quantizer.codebook(parameters: model.parameters), count: quantizer.codes * quantizer.dimension)
    }

    /// Bits per image pixel of what the model compresses an image to: the packed code indices for
    /// the VQ-VAE (`h*w*ceil(log2 K) / (H*W)`), the float32 latent for the VAE (its mean) and the
    /// autoencoder (`h*w*D*32 / (H*W)`).
    var bitsPerPixel: Double {
        let c = configuration
        let perPosition = c.model == .vqvae ? ((try? CodePacking.bitsPerCode(codes: c.codes)) ?? 0) * c.codesPerPosition : 32 * c.codeDimension
        return Double(c.latentHeight * c.latentWidth * perPosition) / Double(c.height * c.width)
    }
}

/// Pixels in [0, 1] from the model's normalised space, in place.
func unitPixels(_ values: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { values[i] += 0.5 }
}
