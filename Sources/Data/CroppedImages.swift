import Foundation
import Model

/// What `train --augment` does to each training crop.
public enum Augmentation: String, Sendable, CaseIterable {
    /// The crop as it is in the image.
    case none
    /// A left-right mirror with probability 1/2.
    case flips
    /// One of the 8 symmetries of the square (mirror and quarter turns), each with probability 1/8.
    case dihedral
}

/// Where a crop lies in its image and how it is turned: the rectangle of `size x size` at
/// `(top, left)`, then `transform`.
public struct CropPlacement: Equatable, Sendable {
    public var top: Int
    public var left: Int
    public var transform: Dihedral
}

/// `S x S` crops of image files (`train --crop S`): the images the model sees when training on
/// images of different sizes, or on random parts of larger images of one size.
///
/// - Training samples (`read(samples:)`): the crop of sample `index` in `epoch` lies at a random
///   position, uniform over every position inside the image, and with `--augment` is mirrored or
///   turned. Every draw comes from a counter-based stream keyed by `(seed, epoch, index)`
///   (`randomPlacement`), so what a step sees depends on nothing else: not on the number of ranks,
///   prefetching or resuming.
/// - Plain reads by index (`read(indices:)`: validation, sample grids): the centre crop, at
///   `((H - S) / 2, (W - S) / 2)` rounded down, unturned.
///
/// With `cropsPerImage` K the samples are `K` times the images: sample `v` is a crop of image
/// `v mod N`, keyed by `v`, so an epoch sees K independent crops of every image.
///
/// Only the crop's rectangle is read from the file.
public final class CroppedImages: ImageSource {
    public let files: any ImageFiles
    public let size: Int
    public let seed: UInt64
    public let augmentation: Augmentation
    public let cropsPerImage: Int
    /// Samples: `cropsPerImage` per image.
    public let count: Int
    public var height: Int { size }
    public var width: Int { size }
    public var channels: Int { files.channels }

    /// One crop's worth of floats for turning a crop, allocated at the first turn (after the
    /// trainer's memory checks); used under `lock` (the prefetch thread and the sample grids may
    /// read at once).
    private var scratch: FloatBuffer?
    private let lock = NSLock()

    /// Refuses a size below 1 and, naming the smallest, images smaller than `size` on a side.
    /// `what` names the files' flag in the message (`--data`, `--val`).
    public init(files: any ImageFiles, size: Int, seed: UInt64 = 0, augmentation: Augmentation = .none,
                cropsPerImage: Int = 1, what: String = "--data") throws {
        guard size >= 1 else { throw DataError("--crop must be at least 1 (got \(size))") }
        let (samples, overflow) = files.count.multipliedReportingOverflow(by: cropsPerImage)
        guard cropsPerImage >= 1 else { throw DataError("--crops-per-image must be at least 1 (got \(cropsPerImage))") }
        // The sampler keeps an index of every sample.
        guard !overflow, samples <= physicalMemoryBytes / 2 / 16 else {
            throw DataError("--crops-per-image \(cropsPerImage): \(files.count) images give more samples per epoch than this machine can index; take fewer crops per image")
        }
        let smallest = files.smallestImage
        guard smallest.height >= size && smallest.width >= size else {
            throw DataError("--crop \(size): \(files.describeImage(smallest.index)) is \(smallest.height)x\(smallest.width), smaller than \(size)x\(size) (the smallest image of \(what)); every image must be at least \(size) pixels on both sides")
        }
        self.files = files
        self.size = size
        self.seed = seed
        self.augmentation = augmentation
        self.cropsPerImage = cropsPerImage
        count = samples
    }

    /// The position of the crop of sample `index` in `epoch` in an `imageHeight x imageWidth`
    /// image, and its turn. The stream is `CorruptionPipeline`'s keyed stream of
    /// `(seed, epoch, index)` at position -1, which no corruption uses (they take positions 0, 1,
    /// ...), so it never equals a corruption's stream of the same sample. Draws in order: the top
    /// row (`below(H - S + 1)`), the left column (`below(W - S + 1)`), then with `flips` one draw
    /// whose top bit mirrors the crop, with `dihedral` `below(8)` indexing `Dihedral.all`.
    public static func randomPlacement(seed: UInt64, epoch: Int, index: Int, imageHeight: Int, imageWidth: Int, size: Int,
                                       augmentation: Augmentation) -> CropPlacement {
        var random = CorruptionPipeline.randomStream(seed: seed, epoch: epoch, sampleIndex: index, position: streamPosition)
        let top = random.below(imageHeight - size + 1)
        let left = random.below(imageWidth - size + 1)
        let transform: Dihedral
        switch augmentation {
        case .none: transform = Dihedral.all[0]
        case .flips: transform = Dihedral(rotations: 0, mirrored: random.next() >> 63 == 1)
        case .dihedral: transform = Dihedral.all[random.below(8)]
        }
        return CropPlacement(top: top, left: left, transform: transform)
    }

    /// The crops' place in the key of `CorruptionPipeline.randomStream`.
    static let streamPosition = -1

    /// The centre crop of an `imageHeight x imageWidth` image.
    public static func centrePlacement(imageHeight: Int, imageWidth: Int, size: Int) -> CropPlacement {
        CropPlacement(top: (imageHeight - size) / 2, left: (imageWidth - size) / 2, transform: Dihedral.all[0])
    }

    /// The image of sample `index`.
    public func image(ofSample index: Int) -> Int { index % files.count }

    /// Where the training crop of sample `index` in `epoch` lies (in image `image(ofSample:)`).
    public func placement(epoch: Int, index: Int) -> CropPlacement {
        let (h, w) = files.imageSize(image(ofSample: index))
        return Self.randomPlacement(seed: seed, epoch: epoch, index: index, imageHeight: h, imageWidth: w, size: size,
                                    augmentation: augmentation)
    }

    /// Centre crops, unturned.
    public func read(indices: [Int], into destination: UnsafeMutablePointer<Float>) throws {
        let elements = imageElements
        for (j, index) in indices.enumerated() {
            guard index >= 0 && index < count else { throw DataError("sample index \(index) is outside the dataset (N = \(count))") }
            let (h, w) = files.imageSize(image(ofSample: index))
            try read(index: index, at: Self.centrePlacement(imageHeight: h, imageWidth: w, size: size), into: destination + j * elements)
        }
    }

    /// Random crops keyed by `(seed, epoch, index)`, turned as `augmentation` says.
    public func read(samples: [(epoch: Int, index: Int)], into destination: UnsafeMutablePointer<Float>) throws {
        let elements = imageElements
        for (j, sample) in samples.enumerated() {
            guard sample.index >= 0 && sample.index < count else {
                throw DataError("sample index \(sample.index) is outside the dataset (N = \(count))")
            }
            try read(index: sample.index, at: placement(epoch: sample.epoch, index: sample.index), into: destination + j * elements)
        }
    }

    private func read(index: Int, at placement: CropPlacement, into target: UnsafeMutablePointer<Float>) throws {
        try files.readRegion(index: image(ofSample: index), top: placement.top, left: placement.left, height: size, width: size, into: target)
        guard placement.transform != Dihedral.all[0] else { return }
        lock.lock()
        defer { lock.unlock() }
        let elements = imageElements
        let buffer = scratch ?? FloatBuffer(count: elements)
        scratch = buffer
        buffer.pointer.update(from: target, count: elements)
        placement.transform.apply(UnsafePointer(buffer.pointer), height: size, width: size, channels: channels, into: target)
    }
}
