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
        var result = [Float](repeating: 0, count: image.count)
        let outWidth = size(height: height, width: width).width
        for y in 0..<height {
            for x in 0..<width {
                let (ty, tx) = target(y, x, height: height, width: width)
                for c in 0..<channels { result[(ty * outWidth + tx) * channels + c] = image[(y * width + x) * channels + c] }
            }
        }
        return result
    }

    /// Maps `transformed` (the image of `apply`) back to the original `H x W` layout.
    public func invert(_ transformed: [Float], height: Int, width: Int, channels: Int) -> [Float] {
        var result = [Float](repeating: 0, count: transformed.count)
        let outWidth = size(height: height, width: width).width
        for y in 0..<height {
            for x in 0..<width {
                let (ty, tx) = target(y, x, height: height, width: width)
                for c in 0..<channels { result[(y * width + x) * channels + c] = transformed[(ty * outWidth + tx) * channels + c] }
            }
        }
        return result
    }
}
