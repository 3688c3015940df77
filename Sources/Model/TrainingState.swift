/// One flat buffer of a model's or a run's state and the named tensors it holds: the unit that is
/// broadcast, fingerprinted, copied and checkpointed.
public struct StateBuffer {
    /// The checkpoint group its tensors live under: `model`, `optimizer/adam_m` or `optimizer/adam_v`.
    public let group: String
    public let buffer: FloatBuffer
    /// The tensors inside `buffer` (offsets into it), named as below `group` in a checkpoint.
    public let tensors: [ParameterSlot]
    /// Part of the trained model (as opposed to the optimiser's state)?
    public var isModel: Bool { group == "model" }

    /// The checkpoint path of `tensor`, e.g. `/model/encoder/down0/weight`.
    public func path(of tensor: ParameterSlot) -> String { "/\(group)/\(tensor.name)" }
}

extension VQVAE {
    /// Everything that defines the trained model, named once: the parameter store, then the
    /// quantizer's EMA state (codebook, counts, sums). Adding state to the model means adding it
    /// here; checkpoints, broadcasts, fingerprints and copies follow.
    public var stateBuffers: [StateBuffer] {
        var buffers = [StateBuffer(group: "model", buffer: parameters.values, tensors: parameters.slots)]
        if let quantizer, quantizer.kind == .ema {
            buffers.append(StateBuffer(group: "model", buffer: quantizer.emaState, tensors: quantizer.emaSlots))
        }
        return buffers
    }

    /// Copies every state buffer of `other`, a model of the same configuration up to the image size.
    public func copyState(from other: VQVAE) {
        for (mine, theirs) in zip(stateBuffers, other.stateBuffers) { mine.buffer.copy(from: theirs.buffer) }
    }
}

extension Adam {
    /// The moments as state buffers laid out like the parameters of `model`.
    public func stateBuffers(for model: VQVAE) -> [StateBuffer] {
        [StateBuffer(group: "optimizer/adam_m", buffer: firstMoment, tensors: model.parameters.slots),
         StateBuffer(group: "optimizer/adam_v", buffer: secondMoment, tensors: model.parameters.slots)]
    }
}

extension WeightAverage {
    /// The averaged weights as a state buffer laid out like the parameters of `model`.
    public func stateBuffer(for model: VQVAE) -> StateBuffer {
        StateBuffer(group: Self.group, buffer: values, tensors: model.parameters.slots)
    }
}

/// The replicated state of a training run: every value that all ranks hold identically and that
/// a checkpoint must keep to continue exactly. The buffers are named once (`buffers`); the
/// broadcast of rank 0's state, the divergence fingerprint and checkpoint writes and reads iterate
/// them, so a new model kind or quantizer adds its state in one place.
public final class TrainingState {
    public let model: VQVAE
    public let optimizer: Adam
    /// `--weight-ema`: the moving average of the parameters (nil when off).
    public let weightAverage: WeightAverage?
    /// Optimiser steps completed: the run's position (the data stream's position follows from it
    /// and the sampler).
    public var step = 0

    public init(model: VQVAE, optimizer: Adam, weightAverage: WeightAverage? = nil) {
        precondition(optimizer.firstMoment.count == model.parameters.count, "optimizer and model sizes differ")
        precondition(weightAverage.map { $0.values.count == model.parameters.count } ?? true, "average and model sizes differ")
        self.model = model
        self.optimizer = optimizer
        self.weightAverage = weightAverage
    }

    /// The model's state, then the optimiser's moments, then the weight average (when on).
    public var buffers: [StateBuffer] {
        model.stateBuffers + optimizer.stateBuffers(for: model) + (weightAverage.map { [$0.stateBuffer(for: model)] } ?? [])
    }

    /// The gradients of the parameters (not replicated until all-reduced; never checkpointed).
    public var gradients: FloatBuffer { model.parameters.gradients }

    /// The counters beside the buffers: the step, Adam's `t` (which lags the step by the updates
    /// skipped for non-finite losses) and the weight average's updates (when on).
    public var counters: [Int64] {
        get { [Int64(step), optimizer.step] + (weightAverage.map { [$0.updates] } ?? []) }
        set {
            step = Int(newValue[0])
            optimizer.step = newValue[1]
            if let weightAverage { weightAverage.updates = newValue[2] }
        }
    }

    /// FNV-1a over the bit patterns of every state buffer, equal on two ranks exactly when their
    /// states are bit-identical (with overwhelming probability otherwise).
    public var fingerprint: UInt64 {
        buffers.reduce(bitFingerprintBasis) { bitFingerprint($1.buffer.pointer, count: $1.buffer.count, continuing: $0) }
    }
}
