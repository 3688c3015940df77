import Foundation
import Model

/// One prepared batch of this rank's share: the clean images (the targets) and, with corruptions,
/// the damaged copies (the inputs), both `[B, H, W, C]` normalised; for mask-aware models also the
/// masks of the missing pixels, `[B, H, W]`.
public final class PreparedBatch {
    public let clean: FloatBuffer
    public let damaged: FloatBuffer?
    let missing: FloatBuffer?
    public fileprivate(set) var step = -1

    init(elements: Int, corrupted: Bool, maskPixels: Int?) {
        clean = FloatBuffer(count: elements)
        damaged = corrupted ? FloatBuffer(count: elements) : nil
        missing = maskPixels.map { FloatBuffer(count: $0) }
    }

    /// The masks of the missing pixels (1 = missing), when the prefetcher was asked for them.
    public var masks: UnsafePointer<Float>? { missing.map { UnsafePointer($0.pointer) } }

    /// What the model reads.
    public var input: UnsafePointer<Float> { UnsafePointer((damaged ?? clean).pointer) }
    /// What the reconstruction is compared with.
    public var target: UnsafePointer<Float> { UnsafePointer(clean.pointer) }
}

/// Prepares the batches of steps `firstStep..<endStep` (read, convert, corrupt) on a background
/// thread, up to `depth` steps ahead of the step being trained, in buffers allocated once.
///
/// Batches must be requested in step order. An error on the thread (a damaged file, say) is
/// rethrown by the `batch(step:)` call that needed that batch. With `depth == 0` batches are
/// prepared on the calling thread. Only this object touches the sampler's epoch cache.
public final class BatchPrefetcher {
    public let depth: Int
    let dataset: any ImageSource
    let sampler: ShardedSampler
    let corruptions: CorruptionPipeline
    let seed: UInt64
    let firstStep: Int
    let endStep: Int
    private let slots: [PreparedBatch]
    private let scratch: FloatBuffer

    private let condition = NSCondition()
    private var produced: Int          // next step the producer will prepare
    private var held: Int              // step the trainer is using (its slot is not reused)
    private var failure: Error?
    private var stopping = false
    private var running = false
    /// Seconds the trainer waited for data (with `depth == 0`, all the time spent preparing it).
    public private(set) var waitSeconds: Double = 0

    /// With `masks`, each batch also holds the mask of the pixels the corruptions marked missing.
    public init(dataset: any ImageSource, sampler: ShardedSampler, corruptions: CorruptionPipeline, seed: UInt64,
                firstStep: Int, endStep: Int, depth: Int, masks: Bool = false) {
        self.dataset = dataset
        self.sampler = sampler
        self.corruptions = corruptions
        self.seed = seed
        self.firstStep = firstStep
        self.endStep = endStep
        self.depth = max(0, depth)
        let elements = sampler.localBatchSize * dataset.imageElements
        let maskPixels = masks ? sampler.localBatchSize * dataset.height * dataset.width : nil
        slots = (0...self.depth).map { _ in PreparedBatch(elements: elements, corrupted: !corruptions.isEmpty, maskPixels: maskPixels) }
        scratch = FloatBuffer(count: CorruptionPipeline.scratchCount(height: dataset.height, width: dataset.width,
                                                                      channels: dataset.channels))
        produced = firstStep
        held = firstStep - 1
        if self.depth > 0 && firstStep < endStep {
            running = true
            let thread = Thread { [unowned self] in self.produce() }
            thread.name = "vqvae-prefetch"
            thread.start()
        }
    }

    deinit { stop() }

    /// The prepared batch of `step`; releases the previous step's buffers for reuse.
    public func batch(step: Int) throws -> PreparedBatch {
        precondition(step >= firstStep && step < endStep, "step \(step) outside \(firstStep)..<\(endStep)")
        let start = DispatchTime.now().uptimeNanoseconds
        if depth == 0 {
            let slot = slots[0]
            try prepare(step: step, into: slot)
            waitSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
            return slot
        }
        condition.lock()
        defer { condition.unlock() }
        held = step
        condition.broadcast()
        while produced <= step && failure == nil { condition.wait() }
        waitSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        let slot = slots[step % slots.count]
        if slot.step != step, let failure { throw failure }
        precondition(slot.step == step, "prefetcher out of order")
        return slot
    }

    /// Stops the thread and waits for it to finish its current batch.
    public func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while running { condition.wait() }
        condition.unlock()
    }

    private func produce() {
        defer {
            condition.lock()
            running = false
            condition.broadcast()
            condition.unlock()
        }
        var step = firstStep
        while step < endStep {
            condition.lock()
            // Slots in use: the held step and everything prepared after it.
            while !stopping && step > held + slots.count - 1 { condition.wait() }
            let stop = stopping
            condition.unlock()
            if stop { return }
            do {
                try prepare(step: step, into: slots[step % slots.count])
            } catch {
                condition.lock()
                failure = error
                condition.broadcast()
                condition.unlock()
                return
            }
            condition.lock()
            produced = step + 1
            condition.broadcast()
            condition.unlock()
            step += 1
        }
    }

    /// Reads this rank's share of `step` and applies the corruptions, keyed by
    /// `(seed, epoch, dataset index)` of each sample.
    func prepare(step: Int, into slot: PreparedBatch) throws {
        let samples = sampler.localSamples(step: step)
        try dataset.read(samples: samples, into: slot.clean.pointer)
        if let damaged = slot.damaged {
            damaged.copy(from: slot.clean)
            let elements = dataset.imageElements, pixels = dataset.height * dataset.width
            for (j, sample) in samples.enumerated() {
                corruptions.apply(to: damaged.pointer + j * elements, height: dataset.height, width: dataset.width,
                                  channels: dataset.channels, seed: seed, epoch: sample.epoch, sampleIndex: sample.index,
                                  scratch: scratch.pointer, missing: slot.missing.map { $0.pointer + j * pixels })
            }
        } else if let missing = slot.missing {
            missing.pointer.update(repeating: 0, count: missing.count)
        }
        slot.step = step
    }
}
