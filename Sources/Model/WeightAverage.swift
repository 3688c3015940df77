#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `train --weight-ema DECAY`: an exponential moving average of every trained parameter (the
/// parameter store: weights, biases and a `--codebook grad` codebook), updated after each
/// optimiser update and bias-corrected like Adam's moments. With `p_t` the parameters after update
/// `t` and `d` the decay, after `T` updates it holds
///
///     avg_T = sum_{t=1..T} (1 - d) d^(T-t) p_t / (1 - d^T),
///
/// the average of the parameters after each update, update `t` weighted by `d^(T-t)`: the trained
/// weights themselves after the first update, and no trace of the initial weights at any point. It
/// is kept in that corrected form, `avg_t = avg_{t-1} + w_t (p_t - avg_{t-1})` with
/// `w_t = (1 - d) / (1 - d^t)` formed in double precision, so a checkpoint holds weights that load
/// as they are. Every rank computes it from identical parameters with identical arithmetic, so it
/// is identical on every rank.
///
/// The EMA codebook (`--codebook ema`: codebook, counts and sums) is not averaged again: it is a
/// moving average of the encoder outputs assigned to each code already (`--decay`), and dead-code
/// restart re-seeds codes, which a second average would drag back towards where they died. A model
/// with averaged weights uses the live EMA codebook.
public final class WeightAverage {
    public let decay: Double
    /// The averaged parameters, laid out like the parameter store.
    public let values: FloatBuffer
    /// Updates averaged so far (`T` above).
    public var updates: Int64 = 0

    public init(decay: Double, count: Int) {
        precondition(decay > 0 && decay < 1, "the decay must be in (0, 1)")
        self.decay = decay
        values = FloatBuffer(count: count)
    }

    /// Starts over from `parameters` (a fresh run): before any update the average is the weights.
    public func reset(to parameters: FloatBuffer) {
        values.copy(from: parameters)
        updates = 0
    }

    /// The weight of update `t` (1-based) in the corrected average: `(1 - d) / (1 - d^t)`.
    public static func weight(decay: Double, update t: Int64) -> Float {
        Float((1 - decay) / (1 - pow(decay, Double(t))))
    }

    /// Averages in the parameters after one more update.
    public func update(from parameters: FloatBuffer) {
        precondition(parameters.count == values.count, "parameter and average sizes differ")
        updates += 1
        let w = Self.weight(decay: decay, update: updates)
        let average = values.pointer, p = UnsafePointer(parameters.pointer)
        if w == 1 {
            average.update(from: p, count: values.count)
            return
        }
        for i in 0..<values.count { average[i] += w * (p[i] - average[i]) }
    }

    /// Exchanges the averaged weights with `parameters`, exactly (validation and samples during
    /// training run the averaged model between two exchanges).
    public func exchange(with parameters: FloatBuffer) {
        precondition(parameters.count == values.count, "parameter and average sizes differ")
        let a = values.pointer, b = parameters.pointer
        for i in 0..<values.count { (a[i], b[i]) = (b[i], a[i]) }
    }

    /// The checkpoint group of the averaged weights (`/weight_ema/<parameter path>`).
    public static let group = "weight_ema"
}
