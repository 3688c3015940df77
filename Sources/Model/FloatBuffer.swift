/// A zero-initialised, 64-byte aligned heap array of `Float`, allocated once and freed on deinit.
/// Hot loops take its `pointer`; nothing is copied.
public final class FloatBuffer {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    public init(count: Int) {
        precondition(count >= 0, "negative buffer size")
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    deinit { pointer.deallocate() }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }

    public subscript(index: Int) -> Float {
        get { pointer[index] }
        set { pointer[index] = newValue }
    }

    public func zero() { pointer.update(repeating: 0, count: count) }

    public func copy(from other: FloatBuffer) {
        precondition(other.count == count, "buffer sizes differ")
        pointer.update(from: other.pointer, count: count)
    }

    public var array: [Float] { Array(buffer) }
}

/// FNV-1a's offset basis, the start of `bitFingerprint`.
public let bitFingerprintBasis: UInt64 = 0xCBF2_9CE4_8422_2325

/// FNV-1a over the bit patterns of `count` floats (one 32-bit word each), continuing from `hash`:
/// equal exactly when every float is bit-identical (with overwhelming probability otherwise).
/// Used to compare ranks' parameters and to name a codebook.
public func bitFingerprint(_ values: UnsafePointer<Float>, count: Int, continuing hash: UInt64 = bitFingerprintBasis) -> UInt64 {
    var hash = hash
    let words = UnsafeRawPointer(values).assumingMemoryBound(to: UInt32.self)
    for i in 0..<count { hash = (hash ^ UInt64(words[i])) &* 0x0000_0100_0000_01B3 }
    return hash
}
