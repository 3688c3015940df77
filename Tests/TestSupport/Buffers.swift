import Model

/// Deterministic test data from the package's own SplitMix64 (so runs are reproducible).
public func randomFloats(_ count: Int, seed: UInt64, low: Float = -1, high: Float = 1) -> [Float] {
    var random = SplitMix64(seed: seed, stream: 0x7E57)
    return (0..<count).map { _ in random.uniform(low, high) }
}

public func randomDoubles(_ count: Int, seed: UInt64, low: Double = -1, high: Double = 1) -> [Double] {
    var random = SplitMix64(seed: seed, stream: 0x7E58)
    return (0..<count).map { _ in low + (high - low) * random.nextUnit() }
}

/// A `FloatBuffer` holding `values` (at least one float long, so its pointer is always usable).
public func makeBuffer(_ values: [Float]) -> FloatBuffer {
    let buffer = FloatBuffer(count: values.count)
    for (i, v) in values.enumerated() { buffer[i] = v }
    return buffer
}

public func makeBuffer(count: Int, filledWith value: Float) -> FloatBuffer {
    let buffer = FloatBuffer(count: count)
    buffer.pointer.update(repeating: value, count: count)
    return buffer
}

public func doubles(_ pointer: UnsafePointer<Float>, count: Int) -> [Double] {
    (0..<count).map { Double(pointer[$0]) }
}

public func doubles(_ buffer: FloatBuffer) -> [Double] { buffer.array.map(Double.init) }

/// The tensor of `slot` in PyTorch's layout, read from a buffer in this project's layout
/// (`values` or `gradients` of a `ParameterStore`).
public func torchTensor(_ slot: ParameterSlot, in buffer: FloatBuffer) -> [Double] {
    let out = FloatBuffer(count: slot.count)
    slot.exportToTorch(buffer.pointer + slot.offset, into: out.pointer)
    return doubles(out)
}

/// `sum_i y[i] * r[i]` in double: the scalar loss whose gradient with respect to `y` is `r`.
public func dot(_ y: UnsafePointer<Float>, _ r: [Double]) -> Double {
    var sum = 0.0
    for i in r.indices { sum += Double(y[i]) * r[i] }
    return sum
}

public func dot(_ a: [Double], _ b: [Double]) -> Double {
    precondition(a.count == b.count)
    var sum = 0.0
    for i in a.indices { sum += a[i] * b[i] }
    return sum
}

/// Up to `samples` distinct indices in `0..<count`, always including the first and last.
public func sampleIndices(count: Int, samples: Int, seed: UInt64) -> [Int] {
    precondition(count > 0)
    if samples >= count { return Array(0..<count) }
    var chosen: [Int] = [0]
    if count > 1 { chosen.append(count - 1) }
    var random = SplitMix64(seed: seed, stream: 0x5A4D)
    while chosen.count < samples {
        let i = random.below(count)
        if !chosen.contains(i) { chosen.append(i) }
    }
    return chosen.sorted()
}

/// `sum_i y[i] * r[i]` over a buffer, keeping the buffer alive while it is read.
public func dot(_ y: FloatBuffer, _ r: [Double]) -> Double {
    precondition(y.count >= r.count)
    return withExtendedLifetime(y) { dot(UnsafePointer(y.pointer), r) }
}
