#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Finite scalar quantization (FSQ; Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made
/// Simple") of `P` vectors `z` `[P, d]`, one level count `L_j` per channel (`d` = the number of
/// levels, e.g. 8,5,5,5): no codebook, no EMA, no collective, no auxiliary loss.
///
/// Per channel `j`, with `h_j = (L_j - 1)(1 + 1e-3) / 2`, `o_j = 0.5` for even `L_j` (0 for odd),
/// `s_j = atanh(o_j / h_j)` and `w_j = floor(L_j / 2)`:
///
///     b = tanh(z + s_j) h_j - o_j          (bounded to (-h_j - o_j, h_j - o_j))
///     q = round(b) / w_j                   (round half to even, as torch.round)
///
/// so `q` takes `L_j` values in [-1, 1]. The gradient is straight-through the rounding:
/// `dq/dz = h_j (1 - tanh^2(z + s_j)) / w_j`. The code of a vector is its mixed-radix index
/// `sum_j (q_j w_j + w_j) B_j` with `B_0 = 1`, `B_j = B_{j-1} L_{j-1}`, in `0..<prod L_j`.
/// This is `vector_quantize_pytorch.FSQ` without projections (its default `bound`; the
/// encoder's `pre_quant` already maps to `d` channels and the decoder reads `d`).
public struct FiniteScalarQuantizer: Sendable, Equatable {
    public let levels: [Int]
    let halfLevels: [Float]
    let offsets: [Float]
    let shifts: [Float]
    let halfWidths: [Float]
    let basis: [Int]

    /// The largest product of the levels accepted (the number of codes).
    public static let largestCodeCount = 1 << 20

    /// Checks the levels: 1 to 16 channels, each `L_j` in 3...256 (2 levels cannot be centred by
    /// this bound), at most `largestCodeCount` codes in all.
    public static func validate(levels: [Int]) throws {
        guard (1...16).contains(levels.count) else {
            throw ModelError("--levels needs 1 to 16 comma-separated level counts, e.g. 8,5,5,5 (got \(levels.count))")
        }
        for level in levels where !(3...256).contains(level) {
            throw ModelError("--levels: every level count must be between 3 and 256 (got \(level))")
        }
        var product = 1
        for level in levels {
            product *= level
            guard product <= largestCodeCount else {
                throw ModelError("--levels \(levels.map(String.init).joined(separator: ",")) gives more than \(largestCodeCount) codes")
            }
        }
    }

    public init(levels: [Int]) {
        self.levels = levels
        halfLevels = levels.map { Float($0 - 1) * (1 + 1e-3) / 2 }
        offsets = levels.map { $0 % 2 == 0 ? 0.5 : 0 }
        shifts = zip(offsets, halfLevels).map { atanhf($0 / $1) }
        halfWidths = levels.map { Float($0 / 2) }
        var basis: [Int] = []
        var product = 1
        for level in levels { basis.append(product); product *= level }
        self.basis = basis
    }

    public var dimension: Int { levels.count }
    /// The number of codes, `prod L_j`.
    public var codes: Int { levels.reduce(1, *) }

    /// Fills `quantized` `[P, d]` and `indices` `[P]` from `z` `[P, d]`.
    func forward(quantized: UnsafeMutablePointer<Float>, indices: UnsafeMutablePointer<Int32>,
                 vectors z: UnsafePointer<Float>, count: Int) {
        let d = dimension
        for p in 0..<count {
            var index = 0
            for j in 0..<d {
                let bounded = tanhf(z[p * d + j] + shifts[j]) * halfLevels[j] - offsets[j]
                let level = bounded.rounded(.toNearestOrEven) + 0  // + 0: -0 becomes 0, as the decoded vector has it
                quantized[p * d + j] = level / halfWidths[j]
                index += (Int(level) + Int(halfWidths[j])) * basis[j]
            }
            indices[p] = Int32(index)
        }
    }

    /// `dz = dq * h_j (1 - tanh^2(z + s_j)) / w_j` (straight-through the rounding).
    func backward(vectorGradient: UnsafeMutablePointer<Float>, quantizedGradient: UnsafePointer<Float>,
                  vectors z: UnsafePointer<Float>, count: Int) {
        let d = dimension
        for p in 0..<count {
            for j in 0..<d {
                let i = p * d + j
                let t = tanhf(z[i] + shifts[j])
                vectorGradient[i] = quantizedGradient[i] * (halfLevels[j] * (1 - t * t) / halfWidths[j])
            }
        }
    }

    /// The vector of code `index` (in `0..<codes`) into `q` `[d]`: exactly what `forward` gives for
    /// any `z` with that code.
    func vector(of index: Int, into q: UnsafeMutablePointer<Float>) {
        for j in 0..<dimension {
            let level = (index / basis[j]) % levels[j]
            q[j] = (Float(level) - halfWidths[j]) / halfWidths[j]
        }
    }
}
