/// Small row-wise kernels over `[rows, channels]` matrices (NHWC activations flattened).

/// `y[r, c] += bias[c]`, optionally followed by ReLU in the same pass.
@inline(__always)
public func addBias(_ y: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, channels: Int, relu: Bool) {
    for r in 0..<rows {
        let row = y + r * channels
        if relu {
            for c in 0..<channels { row[c] = max(row[c] + bias[c], 0) }
        } else {
            for c in 0..<channels { row[c] += bias[c] }
        }
    }
}

/// `dBias[c] += sum_r dy[r, c]`.
@inline(__always)
public func accumulateBiasGradient(_ dBias: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, rows: Int, channels: Int) {
    for r in 0..<rows {
        let row = dy + r * channels
        for c in 0..<channels { dBias[c] += row[c] }
    }
}

/// `y = max(x, 0)`; `y` may alias `x`.
@inline(__always)
public func relu(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { y[i] = max(x[i], 0) }
}

/// ReLU's backward from its output: `dx = dy * (y > 0)`; `dx` may alias `dy`.
@inline(__always)
public func reluBackward(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, output y: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { dx[i] = y[i] > 0 ? dy[i] : 0 }
}

/// `y += x`.
@inline(__always)
public func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { y[i] += x[i] }
}
