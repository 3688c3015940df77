#if canImport(Glibc)
import Glibc
#endif

/// Adam with PyTorch's semantics (`torch.optim.Adam`, single-tensor path, no AMSGrad):
///
///     m = m + (1 - beta1) * (g - m)          (lerp)
///     v = beta2 * v + (1 - beta2) * g^2
///     step = lr / (1 - beta1^t)
///     p -= step * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
///
/// with optional weight decay: L2, added to the gradient (`g += weightDecay * p`), as
/// `torch.optim.Adam` does, or decoupled (`decoupled`, `torch.optim.AdamW`): `p *= 1 - lr *
/// weightDecay` before the step, the gradient untouched. The moments are flat buffers parallel to
/// the parameter buffer.
public final class Adam {
    public var learningRate: Float
    // Kept in double precision like PyTorch's Python floats; `1 - beta` is formed in double
    // and only then rounded, exactly as PyTorch passes it to its float kernels.
    public let beta1: Double
    public let beta2: Double
    public let epsilon: Double
    public let weightDecay: Double
    /// AdamW's decoupled weight decay instead of L2 on the gradient.
    public let decoupled: Bool
    /// Steps taken so far (PyTorch's `state["step"]`).
    public var step: Int64 = 0
    public let firstMoment: FloatBuffer
    public let secondMoment: FloatBuffer

    public init(count: Int, learningRate: Float = 3e-4, beta1: Double = 0.9, beta2: Double = 0.999,
                epsilon: Double = 1e-8, weightDecay: Double = 0, decoupled: Bool = false) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.decoupled = decoupled
        firstMoment = FloatBuffer(count: count)
        secondMoment = FloatBuffer(count: count)
    }

    /// One update of `parameters` from `gradients` (both of the moments' length).
    public func update(parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>) {
        step += 1
        // PyTorch computes the corrections in Python floats (double precision).
        let correction1 = 1 - pow(beta1, Double(step))
        let correction2 = 1 - pow(beta2, Double(step))
        let stepSize = Float(Double(learningRate) / correction1)
        let correction2Root = Float(correction2.squareRoot())
        let m = firstMoment.pointer, v = secondMoment.pointer
        let oneMinusBeta1 = Float(1 - beta1), oneMinusBeta2 = Float(1 - beta2)
        let decay = Float(beta2), eps = Float(epsilon)
        let l2 = decoupled ? 0 : Float(weightDecay)
        // AdamW: PyTorch forms 1 - lr * weight_decay in Python floats and multiplies in float.
        let shrink = Float(1 - Double(learningRate) * weightDecay)
        let shrinking = decoupled && weightDecay != 0
        let vshrink = Vector(repeating: shrink)
        // 16 at a time, then the tail; the same operations per element either way.
        let count = firstMoment.count
        var i = 0
        let vl2 = Vector(repeating: l2), vb1 = Vector(repeating: oneMinusBeta1), vb2 = Vector(repeating: oneMinusBeta2)
        let vdecay = Vector(repeating: decay), veps = Vector(repeating: eps), vstep = Vector(repeating: stepSize)
        let vroot = Vector(repeating: correction2Root)
        while i + vectorWidth <= count {
            var g = load(gradients + i)
            var w = load(parameters + i)
            if shrinking { w *= vshrink }
            if l2 != 0 { g += vl2 * w }
            var mi = load(m + i), vi = load(v + i)
            mi += vb1 * (g - mi)
            vi = vdecay * vi + vb2 * (g * g)
            let denominator = vi.squareRoot() / vroot + veps
            store(mi, m + i)
            store(vi, v + i)
            store(w - vstep * (mi / denominator), parameters + i)
            i += vectorWidth
        }
        for i in i..<count {
            var g = gradients[i]
            if shrinking { parameters[i] *= shrink }
            if l2 != 0 { g += l2 * parameters[i] }
            m[i] += oneMinusBeta1 * (g - m[i])
            v[i] = decay * v[i] + oneMinusBeta2 * (g * g)
            let denominator = v[i].squareRoot() / correction2Root + eps
            parameters[i] -= stepSize * (m[i] / denominator)
        }
    }
}
