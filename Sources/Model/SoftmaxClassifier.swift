/// Multinomial logistic regression on fixed features (the linear probe of `vqvae probe`):
/// `logits = x' W^T + b` over standardised features `x' = (x - mean) / std` (mean and std of the
/// training features), trained with the mean cross-entropy plus `weightDecay/2 * |W|^2` by Adam on
/// shuffled minibatches.
///
/// Features are `[N, F]` row-major; `W` is `[classes, F]`, `b` `[classes]`, both in one buffer
/// `[W | b]`.
public final class SoftmaxClassifier {
    public let featureCount: Int
    public let classCount: Int
    /// `[W (classes*F) | b (classes)]`.
    public let parameters: FloatBuffer
    public let gradients: FloatBuffer
    public private(set) var mean: [Float]
    public private(set) var scale: [Float]

    public init(featureCount: Int, classCount: Int) throws {
        guard featureCount >= 1 else { throw ModelError("a classifier needs at least one feature") }
        guard classCount >= 2 else { throw ModelError("a classifier needs at least two classes (got \(classCount))") }
        self.featureCount = featureCount
        self.classCount = classCount
        parameters = FloatBuffer(count: classCount * featureCount + classCount)
        gradients = FloatBuffer(count: parameters.count)
        mean = [Float](repeating: 0, count: featureCount)
        scale = [Float](repeating: 1, count: featureCount)
    }

    /// Sets `mean` and `scale = 1 / std` (1 for a constant feature) from `count` feature rows.
    public func standardise(from features: UnsafePointer<Float>, count: Int) {
        let f = featureCount
        var sum = [Double](repeating: 0, count: f), squares = [Double](repeating: 0, count: f)
        for i in 0..<count {
            let row = features + i * f
            for j in 0..<f { let v = Double(row[j]); sum[j] += v; squares[j] += v * v }
        }
        for j in 0..<f {
            let m = sum[j] / Double(max(count, 1))
            let variance = max(squares[j] / Double(max(count, 1)) - m * m, 0)
            mean[j] = Float(m)
            scale[j] = variance > 1e-12 ? Float(1 / variance.squareRoot()) : 1
        }
    }

    /// Standardised copy of `count` rows into `destination`.
    func standardised(_ features: UnsafePointer<Float>, count: Int, into destination: UnsafeMutablePointer<Float>) {
        let f = featureCount
        for i in 0..<count {
            for j in 0..<f { destination[i * f + j] = (features[i * f + j] - mean[j]) * scale[j] }
        }
    }

    /// Mean cross-entropy of `count` STANDARDISED rows with `labels` plus the weight-decay term;
    /// WRITES its gradient into `gradients`. `logits` holds `count * classes` floats.
    public func lossAndGradient(standardisedFeatures x: UnsafePointer<Float>, labels: UnsafePointer<Int32>, count: Int,
                                weightDecay: Float, logits: UnsafeMutablePointer<Float>) -> Double {
        let f = featureCount, k = classCount
        let w = UnsafePointer(parameters.pointer), b = parameters.pointer + k * f
        gemm(transposeA: false, transposeB: true, m: count, n: k, k: f, a: x, lda: f, b: w, ldb: f, beta: 0, c: logits, ldc: k)
        var loss: Double = 0
        for i in 0..<count {
            let row = logits + i * k
            var largest = -Float.infinity
            for c in 0..<k { row[c] += b[c]; largest = max(largest, row[c]) }
            var total: Float = 0
            for c in 0..<k { row[c] = exp(row[c] - largest); total += row[c] }
            let label = Int(labels[i])
            loss -= Double(log(max(row[label] / total, Float.leastNormalMagnitude)))
            // dL/dlogits = (softmax - onehot) / count, kept in `logits`.
            for c in 0..<k { row[c] = (row[c] / total - (c == label ? 1 : 0)) / Float(count) }
        }
        let dw = gradients.pointer, db = gradients.pointer + k * f
        // dW[k, F] = dlogits^T[k, N] * x[N, F]
        gemm(transposeA: true, transposeB: false, m: k, n: f, k: count, a: logits, lda: k, b: x, ldb: f, beta: 0, c: dw, ldc: f)
        db.update(repeating: 0, count: k)
        for i in 0..<count { for c in 0..<k { db[c] += logits[i * k + c] } }
        var decay: Double = 0
        if weightDecay != 0 {
            for i in 0..<(k * f) { decay += Double(w[i] * w[i]); dw[i] += weightDecay * w[i] }
        }
        return loss / Double(count) + 0.5 * Double(weightDecay) * decay
    }

    /// Fits on `count` raw feature rows (standardising them first) for `epochs` passes of
    /// shuffled minibatches drawn from `seed`. Returns the last epoch's mean loss.
    @discardableResult
    public func fit(features: UnsafePointer<Float>, labels: [Int32], count: Int, epochs: Int, batch: Int,
                    learningRate: Float, weightDecay: Float, seed: UInt64) throws -> Double {
        guard labels.count == count, count >= 1 else { throw ModelError("the probe needs one label per feature row") }
        guard labels.allSatisfy({ $0 >= 0 && Int($0) < classCount }) else {
            throw ModelError("labels must be in 0..<\(classCount)")
        }
        standardise(from: features, count: count)
        let f = featureCount
        let x = FloatBuffer(count: count * f)
        standardised(features, count: count, into: x.pointer)
        let size = min(batch, count)
        let rows = FloatBuffer(count: size * f), logits = FloatBuffer(count: size * classCount)
        var batchLabels = [Int32](repeating: 0, count: size)
        let adam = Adam(count: parameters.count, learningRate: learningRate)
        parameters.zero()
        var random = SplitMix64(seed: seed, stream: 0x50_524F_4245)
        var order = Array(0..<count)
        var epochLoss: Double = 0
        for _ in 0..<epochs {
            for i in stride(from: count - 1, to: 0, by: -1) { order.swapAt(i, random.below(i + 1)) }
            epochLoss = 0
            var start = 0
            while start < count {
                let n = min(size, count - start)
                for r in 0..<n {
                    (rows.pointer + r * f).update(from: x.pointer + order[start + r] * f, count: f)
                    batchLabels[r] = labels[order[start + r]]
                }
                let loss = batchLabels.withUnsafeBufferPointer {
                    lossAndGradient(standardisedFeatures: rows.pointer, labels: $0.baseAddress!, count: n,
                                    weightDecay: weightDecay, logits: logits.pointer)
                }
                epochLoss += loss * Double(n)
                adam.update(parameters: parameters.pointer, gradients: gradients.pointer)
                start += n
            }
            epochLoss /= Double(count)
        }
        withExtendedLifetime((x, rows, logits)) {}
        return epochLoss
    }

    /// The most likely class of each of `count` raw feature rows.
    public func predict(features: UnsafePointer<Float>, count: Int) -> [Int] {
        let f = featureCount, k = classCount
        let x = FloatBuffer(count: count * f), logits = FloatBuffer(count: count * k)
        standardised(features, count: count, into: x.pointer)
        gemm(transposeA: false, transposeB: true, m: count, n: k, k: f, a: x.pointer, lda: f, b: parameters.pointer, ldb: f,
             beta: 0, c: logits.pointer, ldc: k)
        let b = parameters.pointer + k * f
        let result = (0..<count).map { i -> Int in
            var best = 0
            for c in 1..<k where logits[i * k + c] + b[c] > logits[i * k + best] + b[best] { best = c }
            return best
        }
        withExtendedLifetime((x, logits)) {}
        return result
    }
}

#if canImport(Glibc)
import Glibc
#endif
