/// Where the VAE's reparameterisation noise comes from: image `i` of a rank's share draws from the
/// stream keyed by `(seed, step, firstImage + i)`, where `firstImage` is the share's offset in the
/// global batch. The noise of a global batch therefore does not depend on the number of ranks, and a
/// resumed run draws what the uninterrupted run would have drawn.
public struct NoiseKey: Equatable, Sendable {
    public var seed: UInt64
    public var step: UInt64
    public var firstImage: Int

    public init(seed: UInt64, step: UInt64, firstImage: Int) {
        self.seed = seed
        self.step = step
        self.firstImage = firstImage
    }
}

/// The VAE's Gaussian latent (spec/model.md: `pre_quant` outputs `2D` channels, `0..D-1` the mean
/// `mu`, `D..2D-1` the log-variance `lv`). Over `P` latent positions `[P, 2D]`:
///
/// - training: `q = mu + exp(lv / 2) * eps`, `eps ~ N(0, I)` (reparameterisation); evaluation: `q = mu`;
/// - `KL(q(z|x) || N(0, I)) = sum over positions and channels of 0.5 * (mu^2 + exp(lv) - 1 - lv)`.
///
/// The loss adds `klWeight * KL / (N*H*W*C)`: the KL summed over the latent and divided by the
/// number of pixel elements, the same denominator as the reconstruction mean, so
/// `klWeight = 1` is the negative ELBO of a Gaussian decoder with variance 1/2 in normalised pixel
/// space, divided by the pixel count. The log-variance is clamped to [-30, 20] inside `exp`.
public enum GaussianLatent {
    static let minimumLogVariance: Float = -30
    static let maximumLogVariance: Float = 20

    /// Fills `sample` `[P, D]` from `moments` `[P, 2D]` and returns the KL sum. With a `key`,
    /// draws `eps` into `noise` `[P, D]` (kept for the backward pass) for `images` images of
    /// `positionsPerImage` positions each; without one, `sample = mu` and `noise` is zeroed.
    public static func forward(
        sample: UnsafeMutablePointer<Float>, noise: UnsafeMutablePointer<Float>,
        moments: UnsafePointer<Float>, dimension d: Int, images: Int, positionsPerImage: Int, key: NoiseKey?
    ) -> Double {
        let positions = images * positionsPerImage
        if let key {
            for image in 0..<images {
                var random = SplitMix64(seed: key.seed &+ SplitMix64.mix(key.step ^ 0x5641_4553),
                                        stream: UInt64(key.firstImage + image))
                let base = noise + image * positionsPerImage * d
                for i in 0..<(positionsPerImage * d) { base[i] = random.normal() }
            }
        } else {
            noise.update(repeating: 0, count: positions * d)
        }
        var kl: Double = 0
        for p in 0..<positions {
            let mu = moments + p * 2 * d, logVariance = mu + d
            let eps = noise + p * d, q = sample + p * d
            var rowKL: Float = 0
            for j in 0..<d {
                let lv = min(max(logVariance[j], minimumLogVariance), maximumLogVariance)
                let variance = exp(lv)
                q[j] = mu[j] + variance.squareRoot() * eps[j]
                rowKL += mu[j] * mu[j] + variance - 1 - lv
            }
            kl += 0.5 * Double(rowKL)
        }
        return kl
    }

    /// WRITES `dL/dmoments` `[P, 2D]` from `dL/dsample` `[P, D]`, adding the KL term's gradient
    /// scaled by `klScale` (= klWeight / (N*H*W*C)).
    public static func backward(
        momentsGradient: UnsafeMutablePointer<Float>, sampleGradient: UnsafePointer<Float>,
        moments: UnsafePointer<Float>, noise: UnsafePointer<Float>, dimension d: Int, positions: Int, klScale: Float
    ) {
        for p in 0..<positions {
            let mu = moments + p * 2 * d, logVariance = mu + d
            let dq = sampleGradient + p * d, eps = noise + p * d
            let dMu = momentsGradient + p * 2 * d, dLogVariance = dMu + d
            for j in 0..<d {
                let lv = min(max(logVariance[j], minimumLogVariance), maximumLogVariance)
                let variance = exp(lv)
                dMu[j] = dq[j] + klScale * mu[j]
                dLogVariance[j] = dq[j] * eps[j] * 0.5 * variance.squareRoot() + klScale * 0.5 * (variance - 1)
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
