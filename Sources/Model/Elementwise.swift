/// Small row-wise kernels over `[rows, channels]` matrices (NHWC activations flattened).
///
/// Plain loops the compiler vectorises, except where it cannot see the pattern (the bias
/// gradient's column sums, Adam): those work on 16 floats at a time (`SIMD16<Float>`, arithmetic
/// only: its generic masks and min/max compile to per-lane code) with a scalar tail. Every output
/// element is computed by the same operations in the same order as a plain loop would, so results
/// are bit-identical to it.

typealias Vector = SIMD16<Float>
let vectorWidth = 16

@inline(__always)
func load(_ p: UnsafePointer<Float>) -> Vector {
    UnsafeRawPointer(p).loadUnaligned(as: Vector.self)
}

@inline(__always)
func store(_ v: Vector, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vector.self)
}

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

/// `dBias[c] += sum_r dy[r, c]` (summed over `r` in order for each `c`).
@inline(__always)
public func accumulateBiasGradient(_ dBias: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, rows: Int, channels: Int) {
    var c = 0
    while c + vectorWidth <= channels {
        var sum = load(dBias + c)
        for r in 0..<rows { sum += load(dy + r * channels + c) }
        store(sum, dBias + c)
        c += vectorWidth
    }
    while c < channels {
        var sum = dBias[c]
        for r in 0..<rows { sum += dy[r * channels + c] }
        dBias[c] = sum
        c += 1
    }
}

/// `y = max(x, 0)`; `y` may alias `x`.
@inline(__always)
public func relu(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { y[i] = max(x[i], 0) }
}

/// ReLU's backward from its output: `dx = dy * (y > 0)`; `dx` may alias `dy`. Both values are
/// loaded before the select so that the loop has no conditional load and vectorises.
@inline(__always)
public func reluBackward(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, output y: UnsafePointer<Float>, count: Int) {
    for i in 0..<count {
        let gradient = dy[i], value = y[i]
        dx[i] = value > 0 ? gradient : 0
    }
}

/// `y += x`.
@inline(__always)
public func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { y[i] += x[i] }
}

/// `out = scale * (a - b)`.
@inline(__always)
func scaledDifference(_ out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                      scale: Float, count: Int) {
    var i = 0
    while i + vectorWidth <= count {
        store(scale * (load(a + i) - load(b + i)), out + i)
        i += vectorWidth
    }
    while i < count { out[i] = scale * (a[i] - b[i]); i += 1 }
}

/// Whether every one of `count` floats at `values` is finite: `x * 0` is 0 exactly for every
/// finite `x` and NaN otherwise, summed in 16 lanes (any NaN stays NaN).
public func allFinite(_ values: UnsafePointer<Float>, count: Int) -> Bool {
    var lanes = Vector(repeating: 0)
    var i = 0
    while i + vectorWidth <= count {
        lanes += load(values + i) * 0
        i += vectorWidth
    }
    var sum = lanes.sum()
    for i in i..<count { sum += values[i] * 0 }
    return sum == 0
}
