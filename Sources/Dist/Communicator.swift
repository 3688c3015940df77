import CMPI
#if canImport(Glibc)
import Glibc
#endif

/// An MPI call that failed, with MPI's own explanation.
public struct CommunicationError: Error, CustomStringConvertible {
    public let description: String
}

/// The world of ranks this process belongs to, over OpenMPI. A process started without
/// `mpirun`/`srun` is a world of one. The only code that calls MPI; every return code is checked.
///
/// Errors on MPI_COMM_WORLD are returned (MPI_ERRORS_RETURN), not fatal, so a failure becomes a
/// clear message followed by `abort`, which ends every rank.
public final class Communicator {
    public let rank: Int
    public let size: Int
    private let world: MPI_Comm
    private var finalized = false
    /// Whether MPI was initialised: not for a plain process that no MPI launcher started, which is
    /// a world of one without starting OpenMPI's singleton runtime (an `orted` process, a few
    /// hundred milliseconds).
    public let usesMPI: Bool

    /// Environment variables that MPI launchers set in every rank they start: OpenMPI's `mpirun`,
    /// PMIx and PMI-2 launchers (`srun --mpi=pmix|pmi2`, Hydra) and Slurm.
    static let launcherVariables = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "SLURM_PROCID"]

    /// Environment variables that hold this process's rank, set by the same launchers.
    static let rankVariables = ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"]

    /// The rank the launcher gave this process, read from its environment (MPI need not have
    /// started); 0 for a process that no launcher started.
    public static var launcherRank: Int {
        for name in rankVariables {
            if let value = getenv(name), let rank = Int(String(cString: value)) { return rank }
        }
        return 0
    }

    /// Whether an MPI launcher started this process (or `VQVAE_MPI=1` asks for MPI anyway).
    public static var startedByLauncher: Bool {
        if let forced = getenv("VQVAE_MPI") { return String(cString: forced) == "1" }
        return launcherVariables.contains { getenv($0) != nil }
    }

    /// Initialises MPI (once per process) when an MPI launcher started the process; otherwise
    /// the world is this process alone and every collective is a no-op.
    public init() throws {
        guard Communicator.startedByLauncher else {
            world = CMPI_COMM_WORLD()
            rank = 0
            size = 1
            usesMPI = false
            return
        }
        usesMPI = true
        var provided: Int32 = 0
        var argc: Int32 = 0
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
        try Communicator.check(MPI_Init_thread(&argc, &argv, CMPI_THREAD_FUNNELED(), &provided), "MPI_Init_thread")
        world = CMPI_COMM_WORLD()
        (rank, size) = try Communicator.join(world)
    }

    /// A communicator over a group of this world's ranks (`MPI_Comm_split*`), with the same error
    /// handling. Freed by MPI_Finalize.
    private init(group: MPI_Comm) throws {
        world = group
        usesMPI = true
        (rank, size) = try Communicator.join(group)
    }

    /// Makes MPI calls on `communicator` return their errors, and reads this process's rank in it and its size.
    private static func join(_ communicator: MPI_Comm) throws -> (rank: Int, size: Int) {
        try check(MPI_Comm_set_errhandler(communicator, CMPI_ERRORS_RETURN()), "MPI_Comm_set_errhandler")
        var rank: Int32 = 0, size: Int32 = 0
        try check(MPI_Comm_rank(communicator, &rank), "MPI_Comm_rank")
        try check(MPI_Comm_size(communicator, &size), "MPI_Comm_size")
        return (Int(rank), Int(size))
    }

    public var isRoot: Bool { rank == 0 }

    /// The ranks grouped by node, for a hierarchical reduction: the ranks that share this process's
    /// memory (MPI_Comm_split_type with MPI_COMM_TYPE_SHARED, which OpenMPI answers from the
    /// launcher's placement), or with `ranksPerNode` consecutive groups of that many world ranks.
    /// Collective: every rank calls it with the same `ranksPerNode`.
    public func nodeLayout(ranksPerNode: Int? = nil) throws -> NodeLayout {
        guard usesMPI, size > 1 else {
            return NodeLayout(node: self, nodeBroadcasts: self, leaders: self, nodes: 1, largestNode: 1, consecutive: true)
        }
        var node: MPI_Comm? = CMPI_COMM_NULL()
        if let ranksPerNode {
            precondition(ranksPerNode > 0)
            try Communicator.check(MPI_Comm_split(world, Int32(rank / ranksPerNode), Int32(rank), &node), "MPI_Comm_split")
        } else {
            try Communicator.check(MPI_Comm_split_type(world, CMPI_COMM_TYPE_SHARED(), Int32(rank), CMPI_INFO_NULL(), &node),
                                   "MPI_Comm_split_type")
        }
        let nodeGroup = try Communicator(group: node!)
        // A second communicator over the same ranks, so the broadcasts (which a node's leader
        // starts when its leaders' all-reduce is done) keep their own order apart from the reduces.
        var copy: MPI_Comm? = CMPI_COMM_NULL()
        try Communicator.check(MPI_Comm_dup(node, &copy), "MPI_Comm_dup")
        let broadcasts = try Communicator(group: copy!)
        var leaders: MPI_Comm? = CMPI_COMM_NULL()
        try Communicator.check(MPI_Comm_split(world, nodeGroup.rank == 0 ? 0 : CMPI_UNDEFINED(), Int32(rank), &leaders), "MPI_Comm_split")
        let leaderGroup = nodeGroup.rank == 0 ? try Communicator(group: leaders!) : nil
        var counts = [nodeGroup.rank == 0 ? 1.0 : 0.0]
        try counts.withUnsafeMutableBufferPointer { try allReduceSum($0.baseAddress!, count: 1) }
        // Whether every node's ranks are consecutive world ranks: world rank - node rank is then
        // the same across the node.
        let offset = Double(rank - nodeGroup.rank)
        var spread = [offset, -offset]
        try spread.withUnsafeMutableBufferPointer { try nodeGroup.allReduceMax($0.baseAddress!, count: 2) }
        var figures = [Double(nodeGroup.size), spread[0] == -spread[1] ? 0 : 1]
        try figures.withUnsafeMutableBufferPointer { try allReduceMax($0.baseAddress!, count: 2) }
        return NodeLayout(node: nodeGroup, nodeBroadcasts: broadcasts, leaders: leaderGroup, nodes: Int(counts[0]),
                          largestNode: Int(figures[0]), consecutive: figures[1] == 0)
    }

    static func check(_ code: Int32, _ call: String) throws {
        guard code != CMPI_SUCCESS() else { return }
        var buffer = [CChar](repeating: 0, count: Int(CMPI_MAX_ERROR_STRING()) + 1)
        var length: Int32 = 0
        MPI_Error_string(code, &buffer, &length)
        throw CommunicationError(description: "\(call) failed: \(String(cString: buffer))")
    }

    /// In-place sum over all ranks.
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        guard size > 1, count > 0 else { return }
        try Communicator.check(MPI_Allreduce(CMPI_IN_PLACE(), buffer, Int32(count), CMPI_FLOAT(), CMPI_SUM(), world), "MPI_Allreduce")
    }

    /// In-place sum over all ranks.
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        guard size > 1, count > 0 else { return }
        try Communicator.check(MPI_Allreduce(CMPI_IN_PLACE(), buffer, Int32(count), CMPI_DOUBLE(), CMPI_SUM(), world), "MPI_Allreduce")
    }

    /// In-place element-wise maximum over all ranks.
    public func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        guard size > 1, count > 0 else { return }
        try Communicator.check(MPI_Allreduce(CMPI_IN_PLACE(), buffer, Int32(count), CMPI_DOUBLE(), CMPI_MAX(), world), "MPI_Allreduce")
    }

    /// Starts an in-place sum over all ranks without waiting (MPI_Iallreduce); complete it with
    /// `wait(_:)` or `test(_:)` before touching the buffer.
    public func startAllReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws -> MPI_Request? {
        var request: MPI_Request? = CMPI_REQUEST_NULL()
        guard size > 1, count > 0 else { return request }
        try Communicator.check(MPI_Iallreduce(CMPI_IN_PLACE(), buffer, Int32(count), CMPI_FLOAT(), CMPI_SUM(), world, &request),
                               "MPI_Iallreduce")
        return request
    }

    /// Starts a sum over all ranks of `source` into `destination` (separate buffers) without
    /// waiting; complete it with `wait(_:)` or `test(_:)` before touching either buffer.
    ///
    /// Unlike the in-place form, this lets OpenMPI (4.1, `coll/libnbc`) choose the
    /// reduce-scatter + all-gather algorithm for messages of 64 KiB and more on 4 ranks and more,
    /// whose bandwidth term is `2 (W-1)/W n` bytes per rank; an in-place MPI_Iallreduce always
    /// runs as a binomial reduce and broadcast, `2 log2(W) n` bytes on the critical path
    /// (docs/scaling.md).
    public func startAllReduceSum(_ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>,
                                  count: Int) throws -> MPI_Request? {
        var request: MPI_Request? = CMPI_REQUEST_NULL()
        guard count > 0 else { return request }
        guard size > 1 else { destination.update(from: source, count: count); return request }
        try Communicator.check(MPI_Iallreduce(source, destination, Int32(count), CMPI_FLOAT(), CMPI_SUM(), world, &request),
                               "MPI_Iallreduce")
        return request
    }

    /// Starts a sum over the ranks of `source` into `destination` on `root` (MPI_Ireduce;
    /// `destination` is not touched elsewhere).
    public func startReduceSum(_ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>, count: Int,
                               root: Int = 0) throws -> MPI_Request? {
        var request: MPI_Request? = CMPI_REQUEST_NULL()
        guard count > 0 else { return request }
        guard size > 1 else { destination.update(from: source, count: count); return request }
        try Communicator.check(MPI_Ireduce(source, destination, Int32(count), CMPI_FLOAT(), CMPI_SUM(), Int32(root), world, &request),
                               "MPI_Ireduce")
        return request
    }

    /// Starts sending `root`'s buffer to every rank (MPI_Ibcast).
    public func startBroadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int = 0) throws -> MPI_Request? {
        var request: MPI_Request? = CMPI_REQUEST_NULL()
        guard size > 1, count > 0 else { return request }
        try Communicator.check(MPI_Ibcast(buffer, Int32(count), CMPI_FLOAT(), Int32(root), world, &request), "MPI_Ibcast")
        return request
    }

    /// Whether `request` has completed (MPI_Test, which also progresses every pending operation);
    /// a completed request becomes MPI_REQUEST_NULL, which tests as complete.
    public func test(_ request: inout MPI_Request?) throws -> Bool {
        guard usesMPI else { return true }
        var done: Int32 = 0
        try Communicator.check(MPI_Test(&request, &done, CMPI_STATUS_IGNORE()), "MPI_Test")
        return done != 0
    }

    /// `startAllReduceSum` for doubles.
    public func startAllReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws -> MPI_Request? {
        var request: MPI_Request? = CMPI_REQUEST_NULL()
        guard size > 1, count > 0 else { return request }
        try Communicator.check(MPI_Iallreduce(CMPI_IN_PLACE(), buffer, Int32(count), CMPI_DOUBLE(), CMPI_SUM(), world, &request),
                               "MPI_Iallreduce")
        return request
    }

    /// Waits for every request to complete.
    public func wait(_ requests: inout [MPI_Request?]) throws {
        guard usesMPI, !requests.isEmpty else { return }
        let count = Int32(requests.count)
        try requests.withUnsafeMutableBufferPointer {
            try Communicator.check(MPI_Waitall(count, $0.baseAddress, CMPI_STATUSES_IGNORE()), "MPI_Waitall")
        }
    }

    /// Lets MPI progress the requests (OpenMPI advances non-blocking collectives only inside MPI
    /// calls); returns whether all have completed.
    @discardableResult
    public func test(_ requests: inout [MPI_Request?]) throws -> Bool {
        guard usesMPI, !requests.isEmpty else { return true }
        var done: Int32 = 0
        let count = Int32(requests.count)
        try requests.withUnsafeMutableBufferPointer {
            try Communicator.check(MPI_Testall(count, $0.baseAddress, &done, CMPI_STATUSES_IGNORE()), "MPI_Testall")
        }
        return done != 0
    }

    /// Whether every rank passed the same 64-bit `fingerprint`.
    public func allAgree(on fingerprint: UInt64) throws -> Bool {
        guard size > 1 else { return true }
        let high = Double(fingerprint >> 32), low = Double(fingerprint & 0xFFFF_FFFF)
        var values = [high, low, -high, -low]
        try values.withUnsafeMutableBufferPointer { try allReduceMax($0.baseAddress!, count: 4) }
        return values[0] == -values[2] && values[1] == -values[3]
    }

    /// Sends `root`'s buffer to every rank.
    public func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int = 0) throws {
        guard size > 1, count > 0 else { return }
        try Communicator.check(MPI_Bcast(buffer, Int32(count), CMPI_FLOAT(), Int32(root), world), "MPI_Bcast")
    }

    /// Sends `root`'s bytes to every rank.
    public func broadcast(bytes buffer: UnsafeMutableRawPointer, count: Int, root: Int = 0) throws {
        guard size > 1, count > 0 else { return }
        try Communicator.check(MPI_Bcast(buffer, Int32(count), CMPI_BYTE(), Int32(root), world), "MPI_Bcast")
    }

    /// Concatenates every rank's `count` floats, in rank order, into `destination` on `root`
    /// (`size * count` floats there; ignored elsewhere).
    public func gather(_ source: UnsafePointer<Float>, count: Int, into destination: UnsafeMutablePointer<Float>, root: Int = 0) throws {
        guard size > 1 else { destination.update(from: source, count: count); return }
        try Communicator.check(MPI_Gather(source, Int32(count), CMPI_FLOAT(), destination, Int32(count), CMPI_FLOAT(),
                                          Int32(root), world), "MPI_Gather")
    }

    /// Concatenates every rank's `count` floats (counts may differ) in rank order into `destination`
    /// on `root`, which holds the sum of all counts there (ignored elsewhere). Every rank passes the
    /// same `counts` (one per rank).
    public func gather(_ source: UnsafePointer<Float>, count: Int, counts: [Int], into destination: UnsafeMutablePointer<Float>,
                       root: Int = 0) throws {
        precondition(counts.count == size && counts[rank] == count, "gather: counts must list every rank's count")
        guard size > 1 else { destination.update(from: source, count: count); return }
        guard counts.reduce(0, +) <= Int(Int32.max) else {
            throw CommunicationError(description: "gather of \(counts.reduce(0, +)) floats exceeds MPI's 2^31 element limit; use fewer images per call")
        }
        var receiveCounts = counts.map { Int32($0) }
        var displacements = [Int32](repeating: 0, count: size)
        for i in 1..<size { displacements[i] = displacements[i - 1] + receiveCounts[i - 1] }
        try Communicator.check(MPI_Gatherv(source, Int32(count), CMPI_FLOAT(), destination, &receiveCounts, &displacements,
                                           CMPI_FLOAT(), Int32(root), world), "MPI_Gatherv")
    }

    /// `gather` for doubles.
    public func gather(doubles source: UnsafePointer<Double>, count: Int, into destination: UnsafeMutablePointer<Double>, root: Int = 0) throws {
        guard size > 1 else { destination.update(from: source, count: count); return }
        try Communicator.check(MPI_Gather(source, Int32(count), CMPI_DOUBLE(), destination, Int32(count), CMPI_DOUBLE(),
                                          Int32(root), world), "MPI_Gather")
    }

    public func barrier() throws {
        guard size > 1 else { return }
        try Communicator.check(MPI_Barrier(world), "MPI_Barrier")
    }

    /// Ends every rank of the job with `code` (MPI_Abort); never returns.
    public func abort(code: Int32) -> Never {
        if size > 1 { MPI_Abort(world, code) }
        exit(code)
    }

    /// Ends MPI cleanly; call once on every rank before exiting normally.
    public func finalize() {
        guard !finalized else { return }
        finalized = true
        if usesMPI { MPI_Finalize() }
    }
}

/// The ranks of a world grouped by node (`Communicator.nodeLayout`): a reduction sums within each
/// node over `node`, among the nodes over `leaders` (each node's rank 0 only; nil on the others),
/// and sends the result back within the node over `nodeBroadcasts` (the same ranks as `node`).
public struct NodeLayout {
    public let node: Communicator
    public let nodeBroadcasts: Communicator
    public let leaders: Communicator?
    /// Nodes in the world, and the most ranks on one of them.
    public let nodes: Int
    public let largestNode: Int
    /// Whether every node holds consecutive world ranks (block placement, mpirun's and Slurm's
    /// default) rather than ranks dealt out to the nodes in turn (`--map-by node`, cyclic).
    public let consecutive: Bool

    public var isLeader: Bool { node.rank == 0 }
}
