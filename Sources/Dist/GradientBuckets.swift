import CMPI
#if canImport(Glibc)
import Glibc
#endif

/// Averages a flat gradient buffer over all ranks in buckets that start while the backward pass is
/// still running, so communication hides behind compute.
///
/// The buffer is cut into buckets of `bucketElements` floats from its END, because a backward pass
/// finishes the last layers first. The model reports progress with `ready(from:)` (every gradient
/// at an offset `>= from` is final); each bucket lying wholly in that range starts its reduction at
/// once. `finish()` starts the rest, waits for all and divides by the world size.
///
/// The sums go into a second buffer of the same size (`sums`), not in place: OpenMPI runs an
/// in-place MPI_Iallreduce as a binomial reduce and broadcast, which moves `2 log2(W)` times the
/// bucket over the slowest link, while from a separate buffer it may use reduce-scatter +
/// all-gather (`2 (W-1)/W` times). `finish()` writes the means back into `buffer`, in the same
/// pass that divides by `W`.
///
/// With a `NodeLayout` (hierarchical reduction) each bucket takes three non-blocking steps instead
/// of one all-reduce: a sum within the node to its leader (MPI_Ireduce over shared memory), an
/// all-reduce among the nodes' leaders (one rank per node on the network), and a broadcast within
/// the node. A node's link then carries each bucket once per node, not once per rank. The steps
/// of different buckets overlap; every rank still ends with the same sums.
public final class GradientBuckets {
    public let communicator: Communicator
    public let buffer: UnsafeMutablePointer<Float>
    public let count: Int
    public let bucketElements: Int
    /// Hierarchical reduction over these groups (nil: one all-reduce over the world per bucket).
    public let layout: NodeLayout?
    /// Where the sums arrive (allocated with more than one rank only).
    private let sums: UnsafeMutablePointer<Float>?
    /// Hierarchical: the node's sums, on a node's leader (when its node has several ranks).
    private let nodeSums: UnsafeMutablePointer<Float>?
    /// Bucket `i` covers `[starts[i], ends[i])`; bucket 0 is the buffer's tail.
    public let starts: [Int]
    public let ends: [Int]
    private var started = 0
    private var requests: [MPI_Request?] = []
    /// Hierarchical: per bucket, its reduce within the node, its all-reduce among the leaders and
    /// its broadcast within the node; and how many buckets have started their second and third
    /// step (each communicator's collectives start in bucket order on every rank).
    private var reduces: [MPI_Request?] = []
    private var leaderReduces: [MPI_Request?] = []
    private var broadcasts: [MPI_Request?] = []
    private var leaderStarted = 0
    private var broadcastStarted = 0

    public init(communicator: Communicator, buffer: UnsafeMutablePointer<Float>, count: Int, bucketElements: Int,
                layout: NodeLayout? = nil) {
        precondition(bucketElements > 0)
        self.communicator = communicator
        self.buffer = buffer
        self.count = count
        self.bucketElements = bucketElements
        self.layout = communicator.size > 1 ? layout : nil
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
        if let layout = self.layout, layout.isLeader, layout.node.size > 1 {
            nodeSums = UnsafeMutablePointer<Float>.allocate(capacity: count)
            nodeSums!.initialize(repeating: 0, count: count)
        } else {
            nodeSums = nil
        }
    }

    deinit {
        sums?.deallocate()
        nodeSums?.deallocate()
    }

    /// Call before each backward pass.
    public func begin() {
        started = 0
        leaderStarted = 0
        broadcastStarted = 0
        requests.removeAll(keepingCapacity: true)
        reduces.removeAll(keepingCapacity: true)
        leaderReduces.removeAll(keepingCapacity: true)
        broadcasts.removeAll(keepingCapacity: true)
    }

    /// Gradients at offsets `>= offset` are final: start every bucket inside that range.
    public func ready(from offset: Int) throws {
        guard communicator.size > 1 else { return }
        while started < starts.count && starts[started] >= offset {
            let (start, length) = (starts[started], ends[started] - starts[started])
            if let layout {
                reduces.append(try layout.node.startReduceSum(buffer + start, into: (nodeSums ?? sums!) + start, count: length))
                if !layout.isLeader {
                    broadcasts.append(try layout.nodeBroadcasts.startBroadcast(sums! + start, count: length))
                    broadcastStarted += 1
                }
            } else {
                requests.append(try communicator.startAllReduceSum(buffer + start, into: sums! + start, count: length))
            }
            started += 1
        }
        if layout != nil { _ = try advance() } else { try communicator.test(&requests) }
    }

    /// Hierarchical: tests the pending steps and starts each bucket's next one where its previous
    /// one has completed. Returns whether every bucket started so far is complete.
    private func advance() throws -> Bool {
        guard let layout else { return true }
        var complete = true
        for i in 0..<reduces.count where !(try layout.node.test(&reduces[i])) { complete = false }
        if let leaders = layout.leaders {
            // The leaders' all-reduces start in bucket order once the node's sum is in.
            while leaderStarted < started && reduces[leaderStarted] == CMPI_REQUEST_NULL() {
                let (start, length) = (starts[leaderStarted], ends[leaderStarted] - starts[leaderStarted])
                leaderReduces.append(try leaders.startAllReduceSum((nodeSums ?? buffer) + start, into: sums! + start, count: length))
                leaderStarted += 1
            }
            for i in 0..<leaderReduces.count where !(try leaders.test(&leaderReduces[i])) { complete = false }
            // Then the broadcasts within the node, in bucket order.
            while broadcastStarted < leaderStarted && leaderReduces[broadcastStarted] == CMPI_REQUEST_NULL() {
                let (start, length) = (starts[broadcastStarted], ends[broadcastStarted] - starts[broadcastStarted])
                broadcasts.append(try layout.nodeBroadcasts.startBroadcast(sums! + start, count: length))
                broadcastStarted += 1
            }
        }
        for i in 0..<broadcasts.count where !(try layout.nodeBroadcasts.test(&broadcasts[i])) { complete = false }
        return complete && broadcastStarted == started
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
        if layout != nil {
            // Each completion may let a bucket start its next step, so test until all are done,
            // giving the CPU away between tests (ranks may share cores with their node's leader).
            while !(try advance()) { sched_yield() }
        } else {
            try communicator.wait(&requests)
        }
        let sums = sums!
        for i in 0..<count { buffer[i] = sums[i] * scale }
    }

    /// Buckets started before `finish()` in the last step (the rest started there).
    public var startedEarly: Int { started }
}
