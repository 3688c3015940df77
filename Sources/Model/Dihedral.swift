/// One of the eight symmetries of the square applied to an `H x W x C` image (row-major, channels
/// last): an optional left-right mirror, then `rotations` quarter turns clockwise. Restoration's
/// self-ensemble runs the model on all eight and averages the results mapped back.
public struct Dihedral: Sendable, Equatable {
    public let rotations: Int
    public let mirrored: Bool

    public init(rotations: Int, mirrored: Bool) {
        self.rotations = ((rotations % 4) + 4) % 4
        self.mirrored = mirrored
    }

    /// The identity first, then the other seven.
    public static let all: [Dihedral] = (0..<8).map { Dihedral(rotations: $0 % 4, mirrored: $0 >= 4) }

    /// Size of the transformed image.
    public func size(height: Int, width: Int) -> (height: Int, width: Int) {
        rotations % 2 == 0 ? (height, width) : (width, height)
    }

    /// Where source pixel `(y, x)` of an `H x W` image lands.
    @inline(__always)
    func target(_ y: Int, _ x: Int, height: Int, width: Int) -> (Int, Int) {
        var (y, x, h, w) = (y, mirrored ? width - 1 - x : x, height, width)
        for _ in 0..<rotations { (y, x, h, w) = (x, h - 1 - y, w, h) }
        return (y, x)
    }

    /// The transformed image.
    public func apply(_ image: [Float], height: Int, width: Int, channels: Int) -> [Float] {
        permute(image, height: height, width: width, channels: channels, inverse: false)
    }

    /// The transformed image of `source` (`H x W x C`) written to `target`, which must not overlap
    /// it; allocates nothing.
    public func apply(_ source: UnsafePointer<Float>, height: Int, width: Int, channels: Int, into target: UnsafeMutablePointer<Float>) {
        let outWidth = size(height: height, width: width).width
        for y in 0..<height {
            for x in 0..<width {
                let (ty, tx) = self.target(y, x, height: height, width: width)
                (target + (ty * outWidth + tx) * channels).update(from: source + (y * width + x) * channels, count: channels)
            }
        }
    }

    /// Maps `transformed` (the image of `apply`) back to the original `H x W` layout.
    public func invert(_ transformed: [Float], height: Int, width: Int, channels: Int) -> [Float] {
        permute(transformed, height: height, width: width, channels: channels, inverse: true)
    }

    /// Moves every pixel of the original `H x W` layout to where `target` sends it, or back.
    private func permute(_ values: [Float], height: Int, width: Int, channels: Int, inverse: Bool) -> [Float] {
        var result = [Float](repeating: 0, count: values.count)
        let outWidth = size(height: height, width: width).width
        for y in 0..<height {
            for x in 0..<width {
                let (ty, tx) = target(y, x, height: height, width: width)
                let original = (y * width + x) * channels, moved = (ty * outWidth + tx) * channels
                let (from, to) = inverse ? (moved, original) : (original, moved)
                for c in 0..<channels { result[to + c] = values[from + c] }
            }
        }
        return result
    }
}
