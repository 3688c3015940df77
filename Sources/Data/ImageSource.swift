import Model

/// Where training batches come from: a fixed set of `count` images of `height x width x channels`,
/// read by index into normalised floats (`v/255 - 0.5`), `[indices.count, H, W, C]`.
/// `ImageDataset` (HDF5 files) is one; `SyntheticImages` (for benchmarks) is another.
public protocol ImageSource: AnyObject {
    var count: Int { get }
    var height: Int { get }
    var width: Int { get }
    var channels: Int { get }
    func read(indices: [Int], into destination: UnsafeMutablePointer<Float>) throws
    /// The training samples `(epoch, index)` in order: what a step of `epoch` sees of each image.
    /// A function of `(epoch, index)` and the data alone (`CroppedImages` draws its crops from
    /// them); by default the images at `index`, whatever the epoch.
    func read(samples: [(epoch: Int, index: Int)], into destination: UnsafeMutablePointer<Float>) throws
}

extension ImageSource {
    public var imageElements: Int { height * width * channels }

    public func read(samples: [(epoch: Int, index: Int)], into destination: UnsafeMutablePointer<Float>) throws {
        try read(indices: samples.map(\.index), into: destination)
    }
}

extension ImageDataset: ImageSource {}

/// `count` images of uniform noise in [-0.5, 0.5), each a function of its index alone (a stream
/// keyed by the index), for benchmarks that should not depend on a file.
public final class SyntheticImages: ImageSource {
    public let count: Int
    public let height: Int
    public let width: Int
    public let channels: Int

    public init(count: Int, height: Int, width: Int, channels: Int) {
        self.count = count
        self.height = height
        self.width = width
        self.channels = channels
    }

    public func read(indices: [Int], into destination: UnsafeMutablePointer<Float>) throws {
        let elements = imageElements
        for (j, index) in indices.enumerated() {
            var random = SplitMix64(seed: 1, stream: UInt64(index))
            let image = destination + j * elements
            for i in 0..<elements { image[i] = random.uniform(-0.5, 0.5) }
        }
    }
}
