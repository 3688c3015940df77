/// Frequency tables from a model's logits, computed so that an encoder and a decoder on different
/// machines build the same table from the same logits: only IEEE 754 additions, multiplications
/// and divisions (each exactly rounded) in a fixed order, and an `exp` of our own made of them.
extension FrequencyTable {
    /// The table of the softmax of `logits[0 ..< count]`, quantised to `2^scaleBits` with every
    /// symbol given at least 1 (so a code the model thought impossible still codes, at 16 bits).
    public init(logits: UnsafePointer<Float>, count: Int, scaleBits: Int = RANS.largestScaleBits) throws {
        guard count >= 1, UInt64(count) < UInt64(1) << scaleBits else {
            throw CodecError("frequency table: \(count) symbols do not fit 2^\(scaleBits) frequencies")
        }
        var largest = logits[0], top = 0
        for s in 1..<count where logits[s] > largest {
            largest = logits[s]
            top = s
        }
        guard largest.isFinite else { throw CodecError("frequency table: the model's logits are not finite") }
        var weights = [Float](repeating: 0, count: count)
        var sum: Double = 0
        for s in 0..<count {
            let w = FixedExp.exp(logits[s] - largest)
            weights[s] = w
            sum += Double(w)
        }
        let total = UInt32(1) << UInt32(scaleBits)
        let spare = Double(total - UInt32(count))
        var frequencies = [UInt32](repeating: 1, count: count)
        var given: Int64 = 0
        for s in 0..<count {
            let share = UInt32((Double(weights[s]) * spare / sum).rounded(.down))
            frequencies[s] += share
            given += Int64(share)
        }
        // What rounding left (or, in a corner case, over-gave) goes to the most likely symbol.
        let left = Int64(spare) - given
        frequencies[top] = UInt32(Int64(frequencies[top]) + left)
        try self.init(frequencies: frequencies, scaleBits: scaleBits)
    }
}

/// `exp` for `x <= 0` from exactly rounded operations in a fixed order (range reduction by ln 2 in
/// two parts, a degree-7 Taylor polynomial, the power of two set in the exponent bits): the same
/// bits on every IEEE 754 machine, unlike a C library's `expf`. Relative error below 1e-6; 0 below
/// -87 (where `expf` underflows to subnormals).
public enum FixedExp {
    public static func exp(_ x: Float) -> Float {
        if x < -87 { return 0 }
        if x >= 0 { return 1 }
        let n = (x * 1.442_695_04).rounded(.toNearestOrEven)
        let r = (x - n * 0.693_359_375) - n * -2.121_944_4e-4
        var p: Float = 1.0 / 5040
        p = p * r + 1.0 / 720
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        return Float(sign: .plus, exponent: Int(n), significand: p)
    }
}
