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
        try Communicator.check(MPI_Comm_set_errhandler(world, CMPI_ERRORS_RETURN()), "MPI_Comm_set_errhandler")
        var rank: Int32 = 0, size: Int32 = 0
        try Communicator.check(MPI_Comm_rank(world, &rank), "MPI_Comm_rank")
        try Communicator.check(MPI_Comm_size(world, &size), "MPI_Comm_size")
        self.rank = Int(rank)
        self.size = Int(size)
    }

    public var isRoot: Bool { rank == 0 }

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
