/// How a tensor is laid out in the flat buffers versus PyTorch's layout in checkpoints.
public enum TensorLayout: Equatable, Sendable {
    /// Same order in both: biases `[out]`, the codebook `[K, D]`.
    case plain
    /// Convolution weight stored `[out, kh, kw, in]`; PyTorch's is `[out, in, kh, kw]`.
    case convolution(output: Int, input: Int, kernelHeight: Int, kernelWidth: Int)
    /// Transposed-convolution weight stored `[in, kh, kw, out]`; PyTorch's is `[in, out, kh, kw]`.
    case transposedConvolution(input: Int, output: Int, kernelHeight: Int, kernelWidth: Int)
}

/// A named view into the flat parameter buffer (and, at the same offset, the gradient and
/// Adam buffers).
public struct ParameterSlot: Equatable, Sendable {
    /// The checkpoint path below `/model`, e.g. `encoder/down0/weight`.
    public let name: String
    public let offset: Int
    public let count: Int
    /// The shape in PyTorch's layout, as written to checkpoints.
    public let shape: [Int]
    public let layout: TensorLayout
    /// `U(-bound, bound)` initialisation, or `nil` for a standard normal (the codebook).
    public let uniformBound: Float?

    /// Copies `count` values from this project's layout at `source` into PyTorch's layout at `destination`.
    public func exportToTorch(_ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>) {
        switch layout {
        case .plain:
            destination.update(from: source, count: count)
        case let .convolution(output, input, kh, kw):
            // [out, kh, kw, in] -> [out, in, kh, kw]
            for o in 0..<output { for i in 0..<input { for y in 0..<kh { for x in 0..<kw {
                destination[((o * input + i) * kh + y) * kw + x] = source[((o * kh + y) * kw + x) * input + i]
            } } } }
        case let .transposedConvolution(input, output, kh, kw):
            // [in, kh, kw, out] -> [in, out, kh, kw]
            for i in 0..<input { for o in 0..<output { for y in 0..<kh { for x in 0..<kw {
                destination[((i * output + o) * kh + y) * kw + x] = source[((i * kh + y) * kw + x) * output + o]
            } } } }
        }
    }

    /// The inverse of `exportToTorch`.
    public func importFromTorch(_ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>) {
        switch layout {
        case .plain:
            destination.update(from: source, count: count)
        case let .convolution(output, input, kh, kw):
            for o in 0..<output { for i in 0..<input { for y in 0..<kh { for x in 0..<kw {
                destination[((o * kh + y) * kw + x) * input + i] = source[((o * input + i) * kh + y) * kw + x]
            } } } }
        case let .transposedConvolution(input, output, kh, kw):
            for i in 0..<input { for o in 0..<output { for y in 0..<kh { for x in 0..<kw {
                destination[((i * kh + y) * kw + x) * output + o] = source[((i * output + o) * kh + y) * kw + x]
            } } } }
        }
    }
}

/// Every trained parameter of a model in ONE allocation, with gradients in a second allocation of
/// the same size and layout, so the optimiser is one loop and a gradient all-reduce is one call.
/// Layers keep `ParameterSlot`s and address both buffers by offset.
public final class ParameterStore {
    public private(set) var slots: [ParameterSlot] = []
    public private(set) var count = 0
    private var frozen = false
    public private(set) var values = FloatBuffer(count: 0)
    public private(set) var gradients = FloatBuffer(count: 0)

    public init() {}

    /// Reserves a tensor; call before `allocate()`.
    func add(name: String, shape: [Int], layout: TensorLayout = .plain, uniformBound: Float?) -> ParameterSlot {
        precondition(!frozen, "parameters are already allocated")
        precondition(!slots.contains { $0.name == name }, "duplicate parameter \(name)")
        let size = shape.reduce(1, *)
        let slot = ParameterSlot(name: name, offset: count, count: size, shape: shape, layout: layout, uniformBound: uniformBound)
        slots.append(slot)
        count += size
        return slot
    }

    /// Allocates the value and gradient buffers once every tensor is known.
    func allocate() {
        precondition(!frozen)
        frozen = true
        values = FloatBuffer(count: count)
        gradients = FloatBuffer(count: count)
    }

    public func slot(named name: String) -> ParameterSlot? { slots.first { $0.name == name } }

    /// PyTorch's default initialisation, `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` for weights and
    /// biases; a standard normal for tensors without a bound. Each tensor draws from its own stream
    /// keyed by `(seed, tensor index)`, so the same seed always gives the same weights.
    public func initialize(seed: UInt64) {
        for (index, slot) in slots.enumerated() {
            var random = SplitMix64(seed: seed, stream: UInt64(index) &+ 1)
            // Draw in PyTorch's layout order, then store in ours.
            let torchOrder = FloatBuffer(count: slot.count)
            defer { withExtendedLifetime(torchOrder) {} }  // raw pointers below outlive the last reference
            for i in 0..<slot.count {
                if let bound = slot.uniformBound {
                    torchOrder[i] = random.uniform(-bound, bound)
                } else {
                    torchOrder[i] = random.normal()
                }
            }
            slot.importFromTorch(torchOrder.pointer, into: values.pointer + slot.offset)
        }
    }

    public func zeroGradients() { gradients.zero() }
}
