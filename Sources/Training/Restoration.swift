import Data
import Foundation
import Model

/// What `vqvae restore` is told.
public struct RestoreOptions: Sendable {
    public var checkpoint = ""
    /// An HDF5 dataset file, an image file (PNG or JPEG) or a folder of images (sub-folders included).
    public var input = ""
    /// Where the restored images go: the same kind as `input`.
    public var out = ""
    /// Damage the input first (for demonstrations), keyed by `seed` and the image's index.
    public var corrupt = ""
    /// With `corrupt` or `mask`: where to keep the damaged input (same kind as `out`).
    public var damagedOut: String?
    /// An image file of the input's size whose white pixels (gray level >= 128) are missing: they
    /// are filled as the model was trained to see holes, restored, and every other pixel is the
    /// input's own (image file input only).
    public var mask: String?
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
    /// Replace outputs that exist already (each file atomically).
    public var force = false
    /// Folder input: leave out images that cannot be read (listed at the end, exit status
    /// `Restoration.someInputsSkipped`) instead of refusing the whole run.
    public var skipBad = false
    /// The format of the images written into a folder (nil: PNG); a file output is written in the
    /// format its extension names.
    public var format: ImageFormat?
    /// JPEG quality, 1...100.
    public var quality = 95
    /// U-Net (`--skips`) models: the weight of the encoder's activations in the decoder, from 0
    /// (restore from the latent, or the codes, alone) to 1 (trust the input's detail fully); nil:
    /// the top of the model's training range.
    public var fidelity: Double?
    /// Use the checkpoint's trained weights even when it holds a weight EMA (`--raw-weights`).
    public var rawWeights = false
    /// Whether the restoration's local means are matched to the noisy input's (`NoiseConsistency`).
    public var noiseConsistency = NoiseConsistencySetting.auto

    public init() {}
}

/// `--noise-consistency`: `auto` (for models trained on noise alone, with sigma estimated from each
/// image), `off`, or the input's noise sigma.
public enum NoiseConsistencySetting: Equatable, Sendable, CustomStringConvertible {
    case auto
    case off
    case sigma(Double)

    /// `auto`, `off` or a sigma in (0, 0.5] on the [0, 1] pixel scale; nil for anything else.
    public init?(_ text: String) {
        switch text {
        case "auto": self = .auto
        case "off": self = .off
        default:
            guard let value = Double(text), value > 0, value <= 0.5 else { return nil }
            self = .sigma(value)
        }
    }

    public var description: String {
        switch self {
        case .auto: return "auto"
        case .off: return "off"
        case .sigma(let value): return "\(value)"
        }
    }
}

/// One image `[H, W, C]` with pixels in [0, 1], and its opacity `[H, W]` when it has one.
struct UnitImage {
    var height: Int
    var width: Int
    var channels: Int
    var pixels: [Float]
    var alpha: [UInt8]?
}

/// `vqvae restore`: damaged images of any size restored in overlapping tiles of the model's
/// training size (blended with a raised-cosine window, `TiledImage`), or whole.
///
/// Image files keep their own channels: a gray image given to a colour model goes in as three
/// equal channels and comes out gray (the mean of the three output channels); a colour image given
/// to a gray model becomes ITU-R 601 luma and comes out gray. Transparency is copied through
/// unchanged.
public final class Restoration {
    /// The exit status of a run that left out unreadable images (`skipBad`) and restored the rest.
    public static let someInputsSkipped: Int32 = 3

    /// What a run did.
    public struct Outcome: Sendable {
        public var restored = 0
        /// The images left out with `skipBad`, each with the reason.
        public var skipped: [String] = []
        /// 0, or `someInputsSkipped` when images were left out.
        public var exitStatus: Int32 { skipped.isEmpty ? 0 : Restoration.someInputsSkipped }
    }

    let options: RestoreOptions
    let console: Console
    let corruptions: CorruptionPipeline
    let trained: TrainedModel
    let inputKind: Kind
    /// Models for whole-image runs, by image size.
    private var wholeModels: [String: VQVAE] = [:]
    private var progress: Progress?
    /// Whether the conversion of colour input for a gray model was announced.
    private var announcedGray = false
    /// Whether restorations get `NoiseConsistency` (`--noise-consistency`, and for `auto` a model
    /// trained on noise alone).
    let matchesNoiseMeans: Bool
    /// `auto`: the sigma of a model trained on one fixed sigma, for images whose own cannot be
    /// estimated.
    let trainedNoiseSigma: Double?
    /// The sigmas the noise consistency used, per image, for the summary.
    private var consistencySigmas: [Double] = []
    /// The images whose noise level could not be estimated (`auto`, a model trained on a range).
    private var unestimated: [String] = []
    /// How many of `consistencySigmas` are the model's training sigma (`auto`, not estimated).
    private var trainedSigmaUses = 0

    /// Checks every option and output before loading the model; nothing is written.
    public init(options: RestoreOptions, console: Console) throws {
        self.options = options
        self.console = console
        corruptions = try CorruptionPipeline(spec: options.corrupt)
        if options.damagedOut != nil && corruptions.isEmpty && options.mask == nil {
            throw RestorationError("--damaged-out needs --corrupt or --mask (there is no damage to keep)")
        }
        guard (1...100).contains(options.quality) else { throw RestorationError("--quality must be 1 to 100 (got \(options.quality))") }
        inputKind = try Self.kind(of: options.input, flag: "--input", mustExist: true)
        if let mask = options.mask {
            guard inputKind == .image else {
                throw RestorationError("--mask needs --input to be one image file (PNG or JPEG), not \(inputKind == .folder ? "a folder" : "an HDF5 file")")
            }
            guard try Self.kind(of: mask, flag: "--mask", mustExist: true) == .image else {
                throw RestorationError("--mask \(mask) must be an image file (PNG or JPEG) whose white pixels mark what is missing")
            }
        }
        let outputs = [("--out", options.out), ("--damaged-out", options.damagedOut)]
        for (flag, path) in outputs {
            guard let path else { continue }
            guard try Self.kind(of: path, flag: flag, mustExist: false) == inputKind else {
                throw RestorationError("\(flag) \(path) must be the same kind as --input \(options.input) (HDF5 file, image file or folder)")
            }
            if let format = options.format, inputKind != .folder {
                guard inputKind == .image, ImageFormat(path: path) == format else {
                    throw RestorationError("--format \(format.rawValue) is for folder output; \(flag) \(path) is written in the format \(inputKind == .hdf5 ? "of an HDF5 file (uint8 images)" : "its extension names")")
                }
            }
        }
        try OutputSafety.checkDistinct(outputs, RestorationError.self)
        for (flag, path) in outputs {
            guard let path else { continue }
            try OutputSafety.check(path, flag: flag, inputs: [options.input, options.checkpoint] + [options.mask].compactMap { $0 },
                                   force: options.force, RestorationError.self)
            if inputKind != .folder { try checkWritable(path, RestorationError.self) }
        }
        setBLASThreads(options.threads)
        trained = try TrainedModel(checkpoint: options.checkpoint, batch: options.batch,
                                   weights: TrainedModel.weights(raw: options.rawWeights))
        let c = trained.configuration
        if let fidelity = options.fidelity {
            guard c.skips else {
                throw RestorationError("--fidelity needs a model trained with --skips; \(options.checkpoint) has no skips")
            }
            guard fidelity >= 0, fidelity <= 1 else { throw RestorationError("--fidelity must be in [0, 1] (got \(fidelity))") }
            if fidelity < c.skipWeightLow || fidelity > c.skipWeightHigh {
                console.warning("--fidelity \(fidelity) is outside the skip weights \(options.checkpoint) was trained with (\(c.skipWeightLow)..\(c.skipWeightHigh)); expect a poor restoration")
            }
            trained.model.fidelity = Float(fidelity)
        }
        if let overlap = options.overlap, overlap < 0 || overlap >= min(c.height, c.width) {
            throw RestorationError("--overlap must be in 0..<\(min(c.height, c.width)) (the tiles are the model's \(c.height)x\(c.width))")
        }
        // The model's training damage and restore's own --corrupt must both be noise alone.
        let trainedDamage = try? CorruptionPipeline(spec: trained.run.data.corrupt)
        let inputIsNoisy = corruptions.isEmpty || corruptions.addsNoiseAlone
        switch options.noiseConsistency {
        case .off: matchesNoiseMeans = false
        case .auto: matchesNoiseMeans = trainedDamage?.addsNoiseAlone == true && options.mask == nil && inputIsNoisy
        case .sigma:
            guard options.mask == nil else {
                throw RestorationError("--noise-consistency \(options.noiseConsistency) cannot be used with --mask: it matches a noisy input's means, and a masked input is missing pixels")
            }
            guard inputIsNoisy else {
                throw RestorationError("--noise-consistency \(options.noiseConsistency) needs an input damaged by noise alone; --corrupt \(options.corrupt) does more")
            }
            matchesNoiseMeans = true
        }
        trainedNoiseSigma = trainedDamage?.fixedNoiseSigma.map(Double.init)
    }

    /// Says, once the inputs are known to be good, what damage the model was trained to repair,
    /// or warns that it was trained on clean images only.
    func describeModel() {
        let damage = trained.run.data.corrupt
        if damage.isEmpty {
            console.warning("\(options.checkpoint) was trained to reconstruct clean images, not to repair damage (it was trained without --corrupt); restoration will mostly reproduce the damage")
        } else {
            console.info("\(options.checkpoint) was trained to repair \(damage)")
        }
        if trained.configuration.maskChannel && options.mask == nil && !corruptions.fillsMissingPixels {
            console.warning("\(options.checkpoint) fills the pixels a mask marks as missing and keeps all others (--mask-channel); without --mask MASK.png (or --corrupt with mask or holes) nothing is missing and the output is the input")
        }
        if !trained.weightsNote.isEmpty { console.info("restoring with \(trained.weightsNote)") }
    }

    enum Kind { case hdf5, image, folder }

    /// What `path` names: an existing folder, an `.h5`/`.hdf5` file, a `.png`/`.jpg`/`.jpeg` file,
    /// or (for an output that does not exist yet) a folder when the name has no extension.
    static func kind(of path: String, flag: String, mustExist: Bool) throws -> Kind {
        var isFolder: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isFolder)
        if mustExist && !exists { throw RestorationError("\(flag) \(path): no such file or folder") }
        if exists && isFolder.boolValue { return .folder }
        let lower = path.lowercased()
        if lower.hasSuffix(".h5") || lower.hasSuffix(".hdf5") { return .hdf5 }
        if ImageFormat(path: path) != nil { return .image }
        if !exists && !(lower as NSString).lastPathComponent.contains(".") { return .folder }
        throw RestorationError("\(flag) \(path): expected an HDF5 file (.h5), an image file (.png, .jpg, .jpeg) or a folder of images")
    }

    /// Restores every image and writes the results; unreadable images left out with `skipBad` are
    /// listed on standard error, one line each, before the summary.
    @discardableResult
    public func run() throws -> Outcome {
        let started = monotonicSeconds()
        var outcome: Outcome
        switch inputKind {
        case .image: outcome = try restoreFile()
        case .folder: outcome = try restoreFolder()
        case .hdf5: outcome = try restoreDataset()
        }
        progress?.finish()
        if let low = consistencySigmas.min(), let high = consistencySigmas.max() {
            let estimated = consistencySigmas.count - trainedSigmaUses
            let given = if case .sigma = options.noiseConsistency { "given" } else if trainedSigmaUses == 0 { "estimated from each image" }
                        else { "estimated from \(estimated) image(s), the model's training sigma for \(trainedSigmaUses) whose level could not be estimated" }
            let range = low == high ? String(format: "%.4f", low) : String(format: "%.4f to %.4f", low, high)
            console.info("matched each restoration's local means to its noisy input's (--noise-consistency; sigma \(range), \(given))")
        }
        if let first = unestimated.first {
            let more = unestimated.count > 1 ? " and \(unestimated.count - 1) more image(s)" : ""
            console.warning("\(first)\(more): too few flat, unclipped pixels to estimate the noise level; the model's output was kept as it is (--noise-consistency SIGMA gives the level)")
        }
        for reason in outcome.skipped { console.warning("skipped \(reason)") }
        console.info(String(format: "restored %d image(s) from %@ into %@ in %.2f s (%@)", outcome.restored, options.input, options.out,
                     monotonicSeconds() - started, options.whole ? "whole images" : "tiles of \(trained.configuration.height)x\(trained.configuration.width)"))
        return outcome
    }

    func restoreFile() throws -> Outcome {
        let image = try read(options.input)
        for path in [options.out, options.damagedOut].compactMap({ $0 }) where ImageFormat(path: path) == .jpeg && image.alpha != nil {
            throw RestorationError("\(options.input) has transparency (alpha), which a JPEG file cannot hold; write \(path) as a .png (the alpha is copied through)")
        }
        let holes = try options.mask.map { try readMask($0, height: image.height, width: image.width) }
        describeModel()
        progress = Progress(total: try work(height: image.height, width: image.width), unit: "tiles")
        progress?.stage = "image 1/1"
        let (damaged, restored) = try restore(image, index: 0, holes: holes, name: options.input)
        try write(restored, to: options.out)
        if let damagedOut = options.damagedOut { try write(damaged, to: damagedOut) }
        return Outcome(restored: 1)
    }

    /// Every image under the input folder, restored into the same relative path under the output
    /// folder (with the extension of `--format`). Each input is read once before anything is
    /// written: an unreadable one stops the run before any output (or, with `skipBad`, is left out).
    func restoreFolder() throws -> Outcome {
        let files = try Self.imageFiles(in: options.input)
        guard !files.isEmpty else {
            throw RestorationError("--input \(options.input): no .png, .jpg or .jpeg files in this folder or its sub-folders")
        }
        let format = options.format ?? .png
        let names = files.map { ($0 as NSString).deletingPathExtension + "." + format.fileExtension }
        var claimed: [String: String] = [:]
        for (file, name) in zip(files, names) {
            if let other = claimed[name] {
                throw RestorationError("\(other) and \(file) in \(options.input) would both be written as \(name); rename one of them")
            }
            claimed[name] = file
        }
        // An input folder inside the output folder could map an output onto an input file.
        let inputPaths = Set(files.map { OutputSafety.resolved(options.input + "/" + $0) })
        for folder in [options.out, options.damagedOut].compactMap({ $0 }) {
            for name in names where inputPaths.contains(OutputSafety.resolved(folder + "/" + name)) {
                throw RestorationError("\(folder)/\(name) would be written over an input image; write the output somewhere else (the input would be destroyed)")
            }
        }
        var readable: [(index: Int, work: Int)] = [], unreadable: [String] = []
        for (index, file) in files.enumerated() {
            let path = options.input + "/" + file
            do {
                let image = try ImageFormat.read(path: path)
                if format == .jpeg && image.alpha != nil {
                    throw RestorationError("\(path) has transparency (alpha), which JPEG files cannot hold; use --format png (the alpha is copied through)")
                }
                readable.append((index, try work(height: image.height, width: image.width)))
            } catch let error as DataError {
                unreadable.append(error.description)
            }
        }
        if !unreadable.isEmpty && !options.skipBad {
            let more = unreadable.count > 1 ? "; \(unreadable.count - 1) more file(s) cannot be read either" : ""
            throw RestorationError("\(unreadable[0])\(more); nothing was written (--skip-bad restores the readable images and lists the others)")
        }
        guard !readable.isEmpty else {
            for reason in unreadable { console.warning("skipped \(reason)") }
            throw RestorationError("--input \(options.input): none of its \(files.count) image(s) can be read; nothing was written")
        }
        describeModel()
        progress = Progress(total: readable.reduce(0) { $0 + $1.work }, unit: "tiles")
        var outcome = Outcome(restored: 0, skipped: unreadable)
        for (position, item) in readable.enumerated() {
            progress?.stage = "image \(position + 1)/\(readable.count) (\(files[item.index]))"
            let image: UnitImage
            do {
                image = try read(options.input + "/" + files[item.index])
            } catch let error as DataError where options.skipBad {
                // Changed since it was checked.
                outcome.skipped.append(error.description)
                progress?.advance(by: item.work)
                continue
            }
            let (damaged, restored) = try restore(image, index: item.index, name: options.input + "/" + files[item.index])
            try write(restored, to: options.out + "/" + names[item.index], format: format)
            if let damagedOut = options.damagedOut { try write(damaged, to: damagedOut + "/" + names[item.index], format: format) }
            outcome.restored += 1
        }
        return outcome
    }

    func restoreDataset() throws -> Outcome {
        let dataset = try ImageDataset(paths: [options.input], imagesKey: options.imagesKey)
        try dataset.checkFitsInMemory(batch: 1, bytesPerImageElement: 64)
        let elements = dataset.imageElements
        let c = trained.configuration
        guard dataset.channels == c.channels else {
            throw RestorationError("--input holds \(dataset.channels)-channel images; the model was trained on \(c.channels)")
        }
        describeModel()
        progress = Progress(total: dataset.count * (try work(height: dataset.height, width: dataset.width)), unit: "tiles")
        var restoredBytes = [UInt8](), damagedBytes = [UInt8]()
        restoredBytes.reserveCapacity(dataset.count * elements)
        var buffer = [Float](repeating: 0, count: elements)
        for index in 0..<dataset.count {
            progress?.stage = "image \(index + 1)/\(dataset.count)"
            try buffer.withUnsafeMutableBufferPointer { try dataset.read(indices: [index], into: $0.baseAddress!) }
            let image = UnitImage(height: dataset.height, width: dataset.width, channels: dataset.channels,
                                  pixels: buffer.map { $0 + 0.5 })
            let (damaged, restored) = try restore(image, index: index, name: "\(options.input) image \(index)")
            restoredBytes += restored.pixels.map(PNGImage.quantize)
            if options.damagedOut != nil { damagedBytes += damaged.pixels.map(PNGImage.quantize) }
        }
        let shape = [dataset.count, dataset.height, dataset.width, dataset.channels]
        try OutputFile.writeByteImages(path: options.out, images: restoredBytes, shape: shape)
        if let damagedOut = options.damagedOut { try OutputFile.writeByteImages(path: damagedOut, images: damagedBytes, shape: shape) }
        return Outcome(restored: dataset.count)
    }

    /// The image files (`.png`, `.jpg`, `.jpeg`, any case) under `folder` and its sub-folders, as
    /// sorted paths relative to it. Hidden files and folders (names starting with `.`) are left
    /// out, and links to folders are not followed.
    static func imageFiles(in folder: String) throws -> [String] {
        var files: [String] = [], pending = [""]
        while let relative = pending.popLast() {
            let path = relative.isEmpty ? folder : folder + "/" + relative
            for name in try FileManager.default.contentsOfDirectory(atPath: path) where !name.hasPrefix(".") {
                let child = relative.isEmpty ? name : relative + "/" + name
                let type = try? FileManager.default.attributesOfItem(atPath: folder + "/" + child)[.type] as? FileAttributeType
                if type == .typeDirectory {
                    pending.append(child)
                } else if ImageFormat(path: name) != nil && !OutputSafety.isFolder(folder + "/" + child) {
                    files.append(child)
                }
            }
        }
        return files.sorted()
    }

    /// Reads an image file with the channels it has (a colour image becomes gray for a gray model)
    /// and its transparency.
    func read(_ path: String) throws -> UnitImage {
        var image = try ImageFormat.read(path: path)
        if trained.configuration.channels == 1 && image.channels == 3 {
            image = try image.converted(toChannels: 1)
            if !announcedGray {
                console.warning("\(options.checkpoint) restores gray images: colour input is converted to gray (ITU-R 601 luma) and written gray")
                announcedGray = true
            }
        }
        return UnitImage(height: image.height, width: image.width, channels: image.channels, pixels: image.unitFloats, alpha: image.alpha)
    }

    /// Writes an image file, in `format` or the one `path`'s extension names.
    func write(_ image: UnitImage, to path: String, format: ImageFormat? = nil) throws {
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        let file = try PNGImage(unitFloats: image.pixels, height: image.height, width: image.width, channels: image.channels)
        let withAlpha = try PNGImage(height: file.height, width: file.width, channels: file.channels, pixels: file.pixels, alpha: image.alpha)
        try (format ?? ImageFormat(path: path) ?? .png).write(withAlpha, to: path, quality: options.quality)
    }

    /// The missing pixels of `--mask` (gray level >= 128 after conversion to gray), for an image
    /// of `height x width`.
    func readMask(_ path: String, height: Int, width: Int) throws -> [Bool] {
        var mask = try ImageFormat.read(path: path)
        if mask.channels == 3 { mask = try mask.converted(toChannels: 1) }
        guard (mask.height, mask.width) == (height, width) else {
            throw RestorationError("--mask \(path) is \(mask.width)x\(mask.height) but --input \(options.input) is \(width)x\(height); the mask must have the image's size")
        }
        let holes = mask.pixels.map { $0 >= 128 }
        if !holes.contains(true) { console.warning("--mask \(path) marks no pixel as missing (none is white); the image is restored as a whole") }
        return holes
    }

    /// How the model saw holes in training: the fill of the first `mask` or `holes` item of its
    /// `--corrupt` (black when there is none).
    var trainedHoleFill: MaskFill {
        for corruption in (try? CorruptionPipeline(spec: trained.run.data.corrupt))?.corruptions ?? [] {
            switch corruption {
            case .mask(_, let fill), .holes(_, let fill, _): return fill
            default: continue
            }
        }
        return .value(0)
    }

    /// The tiles (or whole-image passes) one image of `height x width` takes.
    func work(height: Int, width: Int) throws -> Int {
        let passes = options.ensemble ? Dihedral.all.map { $0.size(height: height, width: width) } : [(height: height, width: width)]
        if options.whole { return passes.count }
        return try passes.reduce(0) { $0 + (try tiling(height: $1.height, width: $1.width)).tileCount }
    }

    /// The tile plan for an image of `height x width` with the model's input channels.
    func tiling(height: Int, width: Int) throws -> TiledImage {
        let c = trained.configuration
        return try TiledImage(height: height, width: width, channels: c.inputChannels, tileHeight: c.height, tileWidth: c.width,
                              rowOverlap: options.overlap ?? c.height / 4, columnOverlap: options.overlap ?? c.width / 4)
    }

    /// Damages (with --corrupt) and restores one image; returns the model's input and its output,
    /// both with the image's own channels and alpha. A gray image for a colour model goes in as
    /// three equal channels, and the mean of the three output channels comes back.
    ///
    /// With `holes` (`[H, W]`, true = missing), the missing pixels are filled as in training (its
    /// mask's value, or uniform noise from a stream keyed by `seed`) before the model sees them, and
    /// every other pixel of the result is the input's own. A mask-aware model (`--mask-channel`)
    /// reads the holes, with those the corruptions filled, as its mask channel.
    func restore(_ image: UnitImage, index: Int, holes: [Bool]? = nil, name: String) throws -> (damaged: UnitImage, restored: UnitImage) {
        var input = image.pixels.map { $0 - 0.5 }
        let pixelCount = image.height * image.width
        let maskChannel = trained.configuration.maskChannel
        var missing = [Float](repeating: 0, count: maskChannel ? pixelCount : 0)
        if !corruptions.isEmpty {
            var scratch = [Float](repeating: 0, count: CorruptionPipeline.scratchCount(height: image.height, width: image.width, channels: image.channels))
            input.withUnsafeMutableBufferPointer { pixels in
                scratch.withUnsafeMutableBufferPointer { scratch in
                    missing.withUnsafeMutableBufferPointer { marks in
                        corruptions.apply(to: pixels.baseAddress!, height: image.height, width: image.width, channels: image.channels,
                                          seed: options.seed, epoch: 0, sampleIndex: index, scratch: scratch.baseAddress!,
                                          missing: maskChannel ? marks.baseAddress! : nil)
                    }
                }
            }
        }
        if maskChannel, let holes { for pixel in holes.indices where holes[pixel] { missing[pixel] = 1 } }
        if let holes {
            let fill = trainedHoleFill
            var random = SplitMix64(seed: options.seed, stream: 0x4D41_534B)
            for pixel in holes.indices where holes[pixel] {
                for c in 0..<image.channels {
                    switch fill {
                    case .value(let value): input[pixel * image.channels + c] = value - 0.5
                    case .noise: input[pixel * image.channels + c] = random.uniform(0, 1) - 0.5
                    }
                }
            }
        }
        let channels = trained.configuration.channels
        var fed = input
        if image.channels != channels {
            fed = [Float](repeating: 0, count: input.count * channels)
            for pixel in input.indices { for c in 0..<channels { fed[pixel * channels + c] = input[pixel] } }
        }
        if maskChannel {
            // The mask rides along as the last channel, through tiles and mirrors alike.
            var joined = [Float](repeating: 0, count: pixelCount * (channels + 1))
            for pixel in 0..<pixelCount {
                for c in 0..<channels { joined[pixel * (channels + 1) + c] = fed[pixel * channels + c] }
                joined[pixel * (channels + 1) + channels] = missing[pixel]
            }
            fed = joined
        }
        let fedChannels = trained.configuration.inputChannels
        var output: [Float]
        if options.ensemble {
            // Self-ensemble: the eight mirrored and rotated copies, each restored and mapped back,
            // averaged in a fixed order.
            output = [Float](repeating: 0, count: pixelCount * channels)
            for symmetry in Dihedral.all {
                let size = symmetry.size(height: image.height, width: image.width)
                let restored = try restoreOnce(symmetry.apply(fed, height: image.height, width: image.width, channels: fedChannels),
                                               height: size.height, width: size.width)
                let back = symmetry.invert(restored, height: image.height, width: image.width, channels: channels)
                for i in output.indices { output[i] += back[i] }
            }
            let count = Float(Dihedral.all.count)
            for i in output.indices { output[i] /= count }
        } else {
            output = try restoreOnce(fed, height: image.height, width: image.width)
        }
        if image.channels != channels {
            var mean = [Float](repeating: 0, count: input.count)
            for pixel in mean.indices {
                for c in 0..<channels { mean[pixel] += output[pixel * channels + c] }
                mean[pixel] /= Float(channels)
            }
            output = mean
        }
        if let holes {
            for pixel in holes.indices where !holes[pixel] {
                for c in 0..<image.channels { output[pixel * image.channels + c] = input[pixel * image.channels + c] }
            }
        }
        var damaged = image, restored = image
        damaged.pixels = input.map { $0 + 0.5 }
        restored.pixels = output.map { $0 + 0.5 }
        if matchesNoiseMeans { matchNoiseMeans(&restored, noisy: damaged, name: name) }
        return (damaged, restored)
    }

    /// `NoiseConsistency` with the given sigma or, for `auto`, the one `ClippedGaussian` estimates
    /// from the image. Where it cannot be estimated (a small, saturated or textured image), a model
    /// trained on one fixed sigma is taken at its word; otherwise the image keeps the model's
    /// output (and the summary says so).
    func matchNoiseMeans(_ restored: inout UnitImage, noisy: UnitImage, name: String) {
        let (height, width, channels) = (noisy.height, noisy.width, noisy.channels)
        let sigma: Double
        if case .sigma(let given) = options.noiseConsistency {
            sigma = given
        } else {
            let estimate = noisy.pixels.withUnsafeBufferPointer { y in
                restored.pixels.withUnsafeBufferPointer { x in
                    ClippedGaussian.estimateSigma(noisy: y.baseAddress!, restored: x.baseAddress!, height: height, width: width, channels: channels)
                }
            }
            if let estimate {
                sigma = estimate
            } else if let trainedNoiseSigma {
                sigma = trainedNoiseSigma
                trainedSigmaUses += 1
            } else {
                unestimated.append(name)
                return
            }
        }
        consistencySigmas.append(sigma)
        let consistency = NoiseConsistency(sigma: sigma)
        noisy.pixels.withUnsafeBufferPointer { y in
            restored.pixels.withUnsafeMutableBufferPointer { x in
                consistency.apply(restored: x.baseAddress!, noisy: y.baseAddress!, height: height, width: width, channels: channels)
            }
        }
    }

    /// The model's output for one image (the model's channels) in [-0.5, 0.5]: in tiles, or whole
    /// with --whole. A mask-aware model's `input` carries the mask as one more, last, channel.
    func restoreOnce(_ input: [Float], height: Int, width: Int) throws -> [Float] {
        if options.whole {
            defer { progress?.advance(by: 1) }
            return try restoreWhole(input, height: height, width: width)
        }
        let model = trained.model
        let c = trained.configuration
        let split = MaskSplit(configuration: c, batch: trained.batch)
        return try tiling(height: height, width: width).process(input, outputChannels: c.channels, batchSize: trained.batch) { tiles, count, results in
            let (images, masks) = split.images(tiles, count: count)
            model.forward(images: images, masks: masks, batch: count, training: false)
            results.update(from: model.reconstruction.pointer, count: count * model.imageCount)
            progress?.advance(by: count)
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
        // The configuration of this size, for the cached model as for a new one (MaskSplit sizes
        // its buffers by it).
        c.height = height
        c.width = width
        let key = "\(height)x\(width)"
        let model: VQVAE
        if let cached = wholeModels[key] {
            model = cached
        } else {
            model = try VQVAE(configuration: c, maxBatch: 1)
            model.copyState(from: trained.model)
            model.fidelity = trained.model.fidelity
            wholeModels[key] = model
        }
        let split = MaskSplit(configuration: c, batch: 1)
        _ = input.withUnsafeBufferPointer {
            let (images, masks) = split.images($0.baseAddress!, count: 1)
            return model.forward(images: images, masks: masks, batch: 1, training: false)
        }
        return Array(UnsafeBufferPointer(start: model.reconstruction.pointer, count: model.imageCount))
    }
}

/// Mask-aware models: separates images `[N, H, W, C + 1]` whose last channel is the mask into the
/// images `[N, H, W, C]` and masks `[N, H, W]` the model takes (buffers allocated once); other
/// models' images pass through.
final class MaskSplit {
    let channels: Int
    let pixels: Int
    let images: FloatBuffer
    let masks: FloatBuffer

    init(configuration c: ModelConfiguration, batch: Int) {
        channels = c.channels
        pixels = c.height * c.width
        images = FloatBuffer(count: c.maskChannel ? batch * pixels * c.channels : 0)
        masks = FloatBuffer(count: c.maskChannel ? batch * pixels : 0)
    }

    func images(_ joined: UnsafePointer<Float>, count: Int) -> (images: UnsafePointer<Float>, masks: UnsafePointer<Float>?) {
        guard masks.count > 0 else { return (joined, nil) }
        let (x, m) = (images.pointer, masks.pointer)
        for q in 0..<(count * pixels) {
            (x + q * channels).update(from: joined + q * (channels + 1), count: channels)
            m[q] = joined[q * (channels + 1) + channels]
        }
        return (UnsafePointer(x), UnsafePointer(m))
    }
}
