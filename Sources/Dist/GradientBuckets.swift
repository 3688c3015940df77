import CMPI

/// Averages a flat gradient buffer over all ranks in buckets that start while the backward pass is
/// still running, so communication hides behind compute.
///
/// The buffer is cut into buckets of `bucketElements` floats from its END, because a backward pass
/// finishes the last layers first. The model reports progress with `ready(from:)` (every gradient
/// at an offset `>= from` is final); each bucket lying wholly in that range starts its
/// `MPI_Iallreduce` at once. `finish()` starts the rest, waits for all and divides by the world size.
///
/// The sums go into a second buffer of the same size (`sums`), not in place: OpenMPI runs an
/// in-place MPI_Iallreduce as a binomial reduce and broadcast, which moves `2 log2(W)` times the
/// bucket over the slowest link, while from a separate buffer it may use reduce-scatter +
/// all-gather (`2 (W-1)/W` times). `finish()` writes the means back into `buffer`, in the same
/// pass that divides by `W`.
public final class GradientBuckets {
    public let communicator: Communicator
    public let buffer: UnsafeMutablePointer<Float>
    public let count: Int
    public let bucketElements: Int
    /// Where the sums arrive (allocated with more than one rank only).
    private let sums: UnsafeMutablePointer<Float>?
    /// Bucket `i` covers `[starts[i], ends[i])`; bucket 0 is the buffer's tail.
    public let starts: [Int]
    public let ends: [Int]
    private var started = 0
    private var requests: [MPI_Request?] = []

    public init(communicator: Communicator, buffer: UnsafeMutablePointer<Float>, count: Int, bucketElements: Int) {
        precondition(bucketElements > 0)
        self.communicator = communicator
        self.buffer = buffer
        self.count = count
        self.bucketElements = bucketElements
        var starts: [Int] = [], ends: [Int] = []
        var end = count
        while end > 0 {
            let start = max(0, end - bucketElements)
            starts.append(start)
            ends.append(end)
            end = start
        }
        self.starts = starts
        self.ends = ends
        requests.reserveCapacity(starts.count)
        sums = communicator.size > 1 ? UnsafeMutablePointer<Float>.allocate(capacity: count) : nil
        sums?.initialize(repeating: 0, count: count)
    }

    deinit { sums?.deallocate() }

    /// Call before each backward pass.
    public func begin() {
        started = 0
        requests.removeAll(keepingCapacity: true)
    }

    /// Gradients at offsets `>= offset` are final: start every bucket inside that range.
    public func ready(from offset: Int) throws {
        guard communicator.size > 1 else { return }
        while started < starts.count && starts[started] >= offset {
            requests.append(try communicator.startAllReduceSum(buffer + starts[started], into: sums! + starts[started],
                                                               count: ends[started] - starts[started]))
            started += 1
        }
        try communicator.test(&requests)
    }

    /// Starts what is left, waits for every bucket and scales the sums to means: over the ranks,
    /// and over `microBatches` when each rank's buffer holds the sum of that many micro-batches'
    /// gradients (gradient accumulation).
    public func finish(microBatches: Int = 1) throws {
        let scale = 1 / Float(communicator.size * microBatches)
        guard communicator.size > 1 else {
            if microBatches > 1 { for i in 0..<count { buffer[i] *= scale } }
            return
        }
        try ready(from: 0)
        try communicator.wait(&requests)
        let sums = sums!
        for i in 0..<count { buffer[i] = sums[i] * scale }
    }

    /// Buckets started before `finish()` in the last step (the rest started there).
    public var startedEarly: Int { started }
}
