import Dist
import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// Runs `body` on every rank of the MPI world and turns any error into one clear line and a
/// non-zero exit for the whole job: with several ranks, the failing rank aborts the world so no rank
/// is left waiting in a collective.
func runDistributed(_ body: (Communicator, Console) throws -> Void) throws {
    let communicator: Communicator
    do {
        communicator = try Communicator()
    } catch {
        Console().error("cannot start MPI: \(error)")
        throw ExitCode(1)
    }
    let console = Console(rank: communicator.rank, worldSize: communicator.size)
    do {
        try body(communicator, console)
    } catch let error as CollectiveError {
        if communicator.isRoot { console.error(error.description) }
        communicator.finalize()
        throw ExitCode(1)
    } catch {
        console.error("\(error)")
        if communicator.size > 1 { communicator.abort(code: 1) }
        communicator.finalize()
        throw ExitCode(1)
    }
    communicator.finalize()
}
