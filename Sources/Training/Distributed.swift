import Dist
#if canImport(Glibc)
import Glibc
#endif

/// Runs `body` on every rank of the MPI world (a plain process is a world of one) and turns any
/// error into one clear line; returns the process's exit status (0 on success, 1 on failure). With
/// several ranks, a rank that fails on its own aborts the world so that no rank is left waiting in
/// a collective; a `CollectiveError`, which every rank reaches together, is reported once by rank 0.
public func runOnEveryRank(_ body: (Communicator, Console) throws -> Void) -> Int32 {
    let communicator: Communicator
    do {
        communicator = try Communicator()
    } catch {
        Console().error("cannot start MPI: \(error)")
        return 1
    }
    let console = Console(rank: communicator.rank, worldSize: communicator.size)
    do {
        try body(communicator, console)
    } catch let error as CollectiveError {
        if communicator.isRoot { console.error(error.description) }
        communicator.finalize()
        return 1
    } catch {
        console.error("\(error)")
        if communicator.size > 1 { communicator.abort(code: 1) }
        communicator.finalize()
        return 1
    }
    communicator.finalize()
    return 0
}

/// Runs a single-process command: any error becomes one line on standard error; returns the exit
/// status.
public func runAlone(_ body: (Console) throws -> Void) -> Int32 {
    let console = Console()
    do {
        try body(console)
        return 0
    } catch {
        console.error("\(error)")
        return 1
    }
}

/// Prints `lines` on standard error from the launcher's rank 0 only: for an error found before MPI
/// starts (a bad command line), which every rank of a job finds alike.
public func reportOnce(_ lines: [String]) {
    guard Communicator.launcherRank == 0 else { return }
    for line in lines { fputs(line + "\n", stderr) }
    fflush(stderr)
}

/// Runs a command that works as one process (`restore`, `encode`, `decode`): started as several
/// MPI ranks, each would do the whole job and write the same files, so every rank refuses (rank 0
/// says why, once) and exits non-zero. Otherwise runs `body` like `runAlone` and returns its
/// status (0, or a documented partial-success code); any error becomes one line and status 1.
public func runAsOneProcess(_ command: String, _ body: (Console) throws -> Int32) -> Int32 {
    var status: Int32 = 0
    let failure = runOnEveryRank { communicator, console in
        guard communicator.size == 1 else {
            throw CollectiveError("vqvae \(command) runs as one process, but it was started as \(communicator.size) MPI ranks (each would do the whole job and write the same files); run it without mpirun and use --threads N to use N cores")
        }
        status = try body(console)
    }
    return failure != 0 ? failure : status
}
