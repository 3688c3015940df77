import Data
import Foundation
import Model

/// What `vqvae restore` is told.
public struct RestoreOptions: Sendable {
    public var checkpoint = ""
    /// An HDF5 dataset file, a PNG file or a folder of PNG files.
    public var input = ""
    /// Where the restored images go: the same kind as `input`.
    public var out = ""
    /// Damage the input first (for demonstrations), keyed by `seed` and the image's index.
    public var corrupt = ""
    /// With `corrupt`: where to keep the damaged input (same kind as `out`).
    public var damagedOut: String?
    public var seed: UInt64 = 1
    /// Least overlap in pixels between neighbouring tiles (nil: a quarter of the tile's side).
    public var overlap: Int?
    /// Run the model on each whole image instead of tiles.
    public var whole = false
    /// Average the restorations of the image's eight mirrored and rotated copies.
    public var ensemble = false
    /// Tiles per forward pass.
    public var batch = 32
    public var imagesKey = "images"
    public var threads = 1

    public init() {}
}

/// One image `[H, W, C]` with pixels in [0, 1].
struct UnitImage {
    var height: Int
    var width: Int
    var channels: Int
    var pixels: [Float]
}

/// `vqvae restore`: damaged images of any size restored in overlapping tiles of the model's
/// training size (blended with a raised-cosine window, `TiledImage`), or whole.
public final class Restoration {
    let options: RestoreOptions
    let console: Console
    let corruptions: CorruptionPipeline
    let trained: TrainedModel
    /// Models for whole-image runs, by image size.
    private var wholeModels: [String: VQVAE] = [:]

    public init(options: RestoreOptions, console: Console) throws {
        self.options = options
        self.console = console
        setBLASThreads(options.threads)
        corruptions = try CorruptionPipeline(spec: options.corrupt)
        if options.damagedOut != nil && corruptions.isEmpty {
            throw RestorationError("--damaged-out needs --corrupt (there is no damage to keep)")
        }
        trained = try TrainedModel(checkpoint: options.checkpoint, batch: options.batch)
        let c = trained.configuration
        if let overlap = options.overlap, overlap < 0 || overlap >= min(c.height, c.width) {
            throw RestorationError("--overlap must be in 0..<\(min(c.height, c.width)) (the tiles are the model's \(c.height)x\(c.width))")
        }
    }

    enum Kind { case hdf5, png, folder }

    /// What `path` names: an existing folder, an `.h5`/`.hdf5` file, a `.png` file, or (for an
    /// output that does not exist yet) a folder when the name has no extension.
    static func kind(of path: String, mustExist: Bool) throws -> Kind {
        var isFolder: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isFolder)
        if mustExist && !exists { throw RestorationError("--input \(path): no such file or folder") }
        if exists && isFolder.boolValue { return .folder }
        let lower = path.lowercased()
        if lower.hasSuffix(".h5") || lower.hasSuffix(".hdf5") { return .hdf5 }
        if lower.hasSuffix(".png") { return .png }
        if !exists && !(lower as NSString).lastPathComponent.contains(".") { return .folder }
        throw RestorationError("\(path): expected an HDF5 file (.h5), a PNG file (.png) or a folder of PNG files")
    }

    public func run() throws {
        let inputKind = try Self.kind(of: options.input, mustExist: true)
        let outputKind = try Self.kind(of: options.out, mustExist: false)
        guard inputKind == outputKind else {
            throw RestorationError("--out \(options.out) must be the same kind as --input \(options.input) (HDF5 file, PNG file or folder)")
        }
        let started = monotonicSeconds()
        var restoredCount = 0
        switch inputKind {
        case .png:
            for path in [options.out, options.damagedOut].compactMap({ $0 }) { try checkWritable(path, RestorationError.self) }
            let image = try readPNG(options.input)
            let (damaged, restored) = try restore(image, index: 0)
            try writePNG(restored, to: options.out)
            if let damagedOut = options.damagedOut { try writePNG(damaged, to: damagedOut) }
            restoredCount = 1
        case .folder:
            let names = try FileManager.default.contentsOfDirectory(atPath: options.input)
                .filter { $0.lowercased().hasSuffix(".png") }.sorted()
            guard !names.isEmpty else { throw RestorationError("--input \(options.input): no .png files in this folder") }
            for folder in [options.out, options.damagedOut].compactMap({ $0 }) {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            }
            for (index, name) in names.enumerated() {
                let (damaged, restored) = try restore(try readPNG(options.input + "/" + name), index: index)
                try writePNG(restored, to: options.out + "/" + name)
                if let damagedOut = options.damagedOut { try writePNG(damaged, to: damagedOut + "/" + name) }
            }
            restoredCount = names.count
        case .hdf5:
            for path in [options.out, options.damagedOut].compactMap({ $0 }) { try checkWritable(path, RestorationError.self) }
            let dataset = try ImageDataset(paths: [options.input], imagesKey: options.imagesKey)
            try dataset.checkFitsInMemory(batch: 1, bytesPerImageElement: 64)
            let elements = dataset.imageElements
            let c = trained.configuration
            guard dataset.channels == c.channels else {
                throw RestorationError("--input holds \(dataset.channels)-channel images; the model was trained on \(c.channels)")
            }
            var restoredBytes = [UInt8](), damagedBytes = [UInt8]()
            restoredBytes.reserveCapacity(dataset.count * elements)
            var buffer = [Float](repeating: 0, count: elements)
            for index in 0..<dataset.count {
                try buffer.withUnsafeMutableBufferPointer { try dataset.read(indices: [index], into: $0.baseAddress!) }
                let image = UnitImage(height: dataset.height, width: dataset.width, channels: dataset.channels,
                                      pixels: buffer.map { $0 + 0.5 })
                let (damaged, restored) = try restore(image, index: index)
                restoredBytes += restored.pixels.map(PNGImage.quantize)
                if options.damagedOut != nil { damagedBytes += damaged.pixels.map(PNGImage.quantize) }
            }
            let shape = [dataset.count, dataset.height, dataset.width, dataset.channels]
            try OutputFile.writeByteImages(path: options.out, images: restoredBytes, shape: shape)
            if let damagedOut = options.damagedOut { try OutputFile.writeByteImages(path: damagedOut, images: damagedBytes, shape: shape) }
            restoredCount = dataset.count
        }
        console.info(String(format: "restored %d image(s) from %@ into %@ in %.2f s (%@)", restoredCount, options.input, options.out,
                     monotonicSeconds() - started, options.whole ? "whole images" : "tiles of \(trained.configuration.height)x\(trained.configuration.width)"))
    }

    func readPNG(_ path: String) throws -> UnitImage {
        let image = try PNGImage.read(path: path, channels: trained.configuration.channels)
        return UnitImage(height: image.height, width: image.width, channels: image.channels, pixels: image.unitFloats)
    }

    func writePNG(_ image: UnitImage, to path: String) throws {
        try PNGImage(unitFloats: image.pixels, height: image.height, width: image.width, channels: image.channels).write(to: path)
    }

    /// Damages (with --corrupt) and restores one image; returns the model's input and its output.
    func restore(_ image: UnitImage, index: Int) throws -> (damaged: UnitImage, restored: UnitImage) {
        var input = image.pixels.map { $0 - 0.5 }
        if !corruptions.isEmpty {
            var scratch = [Float](repeating: 0, count: CorruptionPipeline.scratchCount(height: image.height, width: image.width, channels: image.channels))
            input.withUnsafeMutableBufferPointer { pixels in
                scratch.withUnsafeMutableBufferPointer {
                    corruptions.apply(to: pixels.baseAddress!, height: image.height, width: image.width, channels: image.channels,
                                      seed: options.seed, epoch: 0, sampleIndex: index, scratch: $0.baseAddress!)
                }
            }
        }
        var output: [Float]
        if options.ensemble {
            // Self-ensemble: the eight mirrored and rotated copies, each restored and mapped back,
            // averaged in a fixed order.
            output = [Float](repeating: 0, count: input.count)
            for symmetry in Dihedral.all {
                let size = symmetry.size(height: image.height, width: image.width)
                let restored = try restoreOnce(symmetry.apply(input, height: image.height, width: image.width, channels: image.channels),
                                               height: size.height, width: size.width, channels: image.channels)
                let back = symmetry.invert(restored, height: image.height, width: image.width, channels: image.channels)
                for i in output.indices { output[i] += back[i] }
            }
            let count = Float(Dihedral.all.count)
            for i in output.indices { output[i] /= count }
        } else {
            output = try restoreOnce(input, height: image.height, width: image.width, channels: image.channels)
        }
        let damaged = UnitImage(height: image.height, width: image.width, channels: image.channels, pixels: input.map { $0 + 0.5 })
        for i in output.indices { output[i] += 0.5 }
        return (damaged, UnitImage(height: image.height, width: image.width, channels: image.channels, pixels: output))
    }

    /// The model's output for one image in [-0.5, 0.5]: in tiles, or whole with --whole.
    func restoreOnce(_ input: [Float], height: Int, width: Int, channels: Int) throws -> [Float] {
        if options.whole { return try restoreWhole(input, height: height, width: width) }
        let c = trained.configuration
        let plan = try TiledImage(height: height, width: width, channels: channels, tileHeight: c.height, tileWidth: c.width,
                                  rowOverlap: options.overlap ?? c.height / 4, columnOverlap: options.overlap ?? c.width / 4)
        let model = trained.model
        return try plan.process(input, batchSize: trained.batch) { tiles, count, results in
            model.forward(images: tiles, batch: count, training: false)
            results.update(from: model.reconstruction.pointer, count: count * model.imageCount)
        }
    }

    /// The fully convolutional model over the whole image: a model built for this size with the
    /// checkpoint's parameters and codebook.
    func restoreWhole(_ input: [Float], height: Int, width: Int) throws -> [Float] {
        var c = trained.configuration
        let factor = 1 << c.downsamplings
        guard height % factor == 0, width % factor == 0 else {
            throw RestorationError("--whole needs image sides that are multiples of 2^down = \(factor); this image is \(height)x\(width) (leave out --whole to restore in tiles)")
        }
        let key = "\(height)x\(width)"
        let model: VQVAE
        if let cached = wholeModels[key] {
            model = cached
        } else {
            c.height = height
            c.width = width
            model = try VQVAE(configuration: c, maxBatch: 1)
            model.copyState(from: trained.model)
            wholeModels[key] = model
        }
        _ = input.withUnsafeBufferPointer { model.forward(images: $0.baseAddress!, batch: 1, training: false) }
        return Array(UnsafeBufferPointer(start: model.reconstruction.pointer, count: model.imageCount))
    }
}
