#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The learning rate of each optimiser step, a function of the step alone (so a resumed run takes
/// the same rates, and every rank the same):
///
///     c = steps completed before this one (0 for the first step)
///     constant: base
///     cosine:   min + (base - min) * (1 + cos(pi * p)) / 2,  p = clamp((c - warmup) / (decay - warmup), 0, 1)
///     step:     base * factor^floor(c / every)
///     times (c + 1) / warmup while c < warmup (linear warmup from base / warmup to base)
///
/// computed in double precision and rounded to float once.
public struct LearningRateSchedule: Equatable, Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        case constant, cosine, step
    }
    public var kind: Kind
    public var base: Float
    public var warmupSteps: Int
    /// `cosine`: the rate at and after `decaySteps`.
    public var minimum: Float
    /// `cosine`: the step count (warmup included) at which the rate reaches `minimum`.
    public var decaySteps: Int
    /// `step`: the rate is multiplied by `stepFactor` every `stepEvery` steps.
    public var stepEvery: Int
    public var stepFactor: Double

    public init(kind: Kind = .constant, base: Float, warmupSteps: Int = 0, minimum: Float = 0, decaySteps: Int = 0,
                stepEvery: Int = 0, stepFactor: Double = 0.1) {
        self.kind = kind
        self.base = base
        self.warmupSteps = warmupSteps
        self.minimum = minimum
        self.decaySteps = decaySteps
        self.stepEvery = stepEvery
        self.stepFactor = stepFactor
    }

    /// The rate of the step taken after `completed` steps.
    public func rate(completedSteps completed: Int) -> Float {
        let c = max(completed, 0)
        var r: Double
        switch kind {
        case .constant:
            r = Double(base)
        case .cosine:
            let span = Double(max(decaySteps - warmupSteps, 1))
            let p = min(max(Double(c - warmupSteps) / span, 0), 1)
            r = Double(minimum) + (Double(base) - Double(minimum)) * 0.5 * (1 + cos(Double.pi * p))
        case .step:
            r = Double(base) * pow(stepFactor, Double(c / max(stepEvery, 1)))
        }
        if c < warmupSteps { r *= Double(c + 1) / Double(warmupSteps) }
        return Float(r)
    }
}

/// The Euclidean norm of `count` floats, summed in double precision in index order (the same
/// value on every rank that holds the same floats).
public func euclideanNorm(_ values: UnsafePointer<Float>, count: Int) -> Double {
    var lanes = SIMD8<Double>(repeating: 0)
    var i = 0
    while i + 8 <= count {
        let v = SIMD8<Double>(UnsafeRawPointer(values + i).loadUnaligned(as: SIMD8<Float>.self))
        lanes += v * v
        i += 8
    }
    var sum = lanes.sum()
    for i in i..<count { sum += Double(values[i]) * Double(values[i]) }
    return sum.squareRoot()
}

/// Global gradient-norm clipping as `torch.nn.utils.clip_grad_norm_`: when `norm > maxNorm`, the
/// gradients are scaled by `maxNorm / (norm + 1e-6)`. Returns the scale applied (1: none).
@discardableResult
public func clipGradients(_ gradients: UnsafeMutablePointer<Float>, count: Int, norm: Double, maxNorm: Double) -> Float {
    guard maxNorm > 0, norm.isFinite, norm > maxNorm else { return 1 }
    let scale = Float(maxNorm / (norm + 1e-6))
    for i in 0..<count { gradients[i] *= scale }
    return scale
}
