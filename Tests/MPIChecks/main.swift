// Checks `Communicator` and `GradientBuckets` under a real `mpirun`. Usage:
//
//     mpirun -np W mpi-checks --ranks W            # every collective; exit 0 and "ok" on rank 0
//     mpirun -np W mpi-checks --ranks W --abort 1  # rank 1 aborts while the others wait
//     mpirun -np W mpi-checks --ranks W --bench    # all-reduce time against message size
//     mpirun -np W mpi-checks --ranks W --gradient-bench  # the whole gradient, flat and hierarchical
//
// `--bench` times the all-reduces the trainer uses (MPI_Allreduce of floats and doubles in place;
// MPI_Iallreduce of floats started and waited for at once, in place and into a separate buffer;
// and MPI_Iallreduce of floats into a separate buffer started before 12 ms of computation that
// calls MPI_Test every 0.25 ms or every 3 ms, as the backward pass does once per layer) for
// messages of 64 B to `--max-bytes` (4 MiB), `--rounds` (5) rounds of back-to-back calls after a
// barrier. Each round's figure is the slowest rank's mean time per call; rank 0 prints one line
// per operation and size: the median, minimum and maximum over the rounds, in microseconds (for
// the overlapped Iallreduce: the wait left after the computation). scripts/allreduce_bench.sh
// runs it on 2-8 ranks and across network-namespace hosts.
//
// It FAILS (exit 2) when the world does not have the expected number of ranks, so a test can never
// pass vacuously as a world of one.
import Dist
#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String, rank: Int) -> Never {
    fputs("[rank \(rank)] mpi-checks: FAILED: \(message)\n", stderr)
    exit(1)
}

let arguments = CommandLine.arguments
func value(_ flag: String) -> Int? {
    guard let i = arguments.firstIndex(of: flag), i + 1 < arguments.count else { return nil }
    return Int(arguments[i + 1])
}
guard let expected = value("--ranks") else {
    fputs("usage: mpi-checks --ranks W [--abort RANK]\n", stderr)
    exit(2)
}

let world: Communicator
do { world = try Communicator() } catch { fputs("mpi-checks: \(error)\n", stderr); exit(2) }
let rank = world.rank, size = world.size
if size != expected {
    fputs("[rank \(rank)] mpi-checks: FAILED: started with \(size) rank(s), expected \(expected)\n", stderr)
    exit(2)
}

func seconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// Busy work for `duration` seconds that calls `poll` every `interval` seconds.
func compute(for duration: Double, interval: Double, poll: () throws -> Void) rethrows {
    let start = seconds()
    var next = start + interval
    var x = 1.0
    while true {
        for _ in 0..<200 { x = x * 1.000001 + 1e-9 }
        let now = seconds()
        if now - start >= duration { break }
        if now >= next { try poll(); next = now + interval }
    }
    if x == 0 { print(x) }
}

func tenths(_ x: Double) -> Double { (x * 10).rounded() / 10 }

func runBench() throws {
    let maxBytes = value("--max-bytes") ?? 4 << 20
    let rounds = max(1, value("--rounds") ?? 5)
    var sizes: [Int] = []
    var bytes = 64
    while bytes <= maxBytes { sizes.append(bytes); bytes *= 4 }
    let floats = UnsafeMutablePointer<Float>.allocate(capacity: maxBytes / 4)
    let sums = UnsafeMutablePointer<Float>.allocate(capacity: maxBytes / 4)
    defer { sums.deallocate() }
    let doubles = UnsafeMutablePointer<Double>.allocate(capacity: maxBytes / 8)
    defer { floats.deallocate(); doubles.deallocate() }
    for i in 0..<(maxBytes / 4) { floats[i] = Float(i % 7) }
    for i in 0..<(maxBytes / 8) { doubles[i] = Double(i % 7) }
    if rank == 0 { print("# op bytes ranks median_us min_us max_us (\(rounds) rounds; the slowest rank's mean per call)") }
    let operations = ["allreduce-float", "allreduce-double", "iallreduce-float", "iallreduce-float-separate",
                      "iallreduce-overlap-0.25ms", "iallreduce-overlap-3ms"]
    for operation in operations {
        for bytes in sizes {
            let overlapping = operation.hasPrefix("iallreduce-overlap")
            let interval = operation.hasSuffix("3ms") ? 0.003 : 0.00025
            let calls = overlapping ? 10 : bytes <= 16 << 10 ? 200 : bytes <= 256 << 10 ? 40 : 10
            var overlapWait = 0.0
            func one() throws {
                switch operation {
                case "allreduce-float": try world.allReduceSum(floats, count: bytes / 4)
                case "allreduce-double": try world.allReduceSum(doubles, count: bytes / 8)
                case "iallreduce-float":
                    var requests = [try world.startAllReduceSum(floats, count: bytes / 4)]
                    try world.wait(&requests)
                case "iallreduce-float-separate":
                    var requests = [try world.startAllReduceSum(floats, into: sums, count: bytes / 4)]
                    try world.wait(&requests)
                default:
                    var requests = [try world.startAllReduceSum(floats, into: sums, count: bytes / 4)]
                    try compute(for: 0.012, interval: interval) { try world.test(&requests) }
                    let waitStart = seconds()
                    try world.wait(&requests)
                    overlapWait += seconds() - waitStart
                }
            }
            for _ in 0..<3 { try one() }  // warm-up: connections, buffers
            var results: [Double] = []
            for _ in 0..<rounds {
                try world.barrier()
                overlapWait = 0
                let start = seconds()
                for _ in 0..<calls { try one() }
                var mean = (overlapping ? overlapWait : seconds() - start) / Double(calls)
                try world.allReduceMax(&mean, count: 1)
                results.append(mean * 1e6)
            }
            results.sort()
            if rank == 0 {
                let median: Double = results[results.count / 2], low: Double = results[0], high: Double = results[results.count - 1]
                print("\(operation) \(bytes) \(size) \(tenths(median)) \(tenths(low)) \(tenths(high))")
                fflush(stdout)
            }
        }
    }
}

/// `--gradient-bench`: the default model's whole gradient (662,723 floats) in 1 MiB buckets,
/// started at once and waited for, as one all-reduce over the world (`flat`) and in the
/// hierarchical form over the launcher's nodes; the slowest rank's mean per call.
func runGradientBench() throws {
    let rounds = max(1, value("--rounds") ?? 5), calls = max(1, value("--calls") ?? 10)
    let count = 662_723
    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
    defer { buffer.deallocate() }
    let layout = try world.nodeLayout()
    if rank == 0 {
        print("# op bytes ranks median_us min_us max_us (\(rounds) rounds of \(calls) calls; the slowest rank's mean per call; \(layout.nodes) nodes of up to \(layout.largestNode) ranks)")
    }
    for (name, groups) in [("buckets-flat", nil), ("buckets-hierarchical", layout)] as [(String, NodeLayout?)] {
        let buckets = GradientBuckets(communicator: world, buffer: buffer, count: count, bucketElements: 262_144, layout: groups)
        func one() throws {
            for i in 0..<count { buffer[i] = 1 }
            buckets.begin()
            try buckets.finish()
        }
        for _ in 0..<3 { try one() }
        var results: [Double] = []
        for _ in 0..<rounds {
            try world.barrier()
            let start = seconds()
            for _ in 0..<calls { try one() }
            var mean = (seconds() - start) / Double(calls)
            try world.allReduceMax(&mean, count: 1)
            results.append(mean * 1e6)
        }
        results.sort()
        if rank == 0 {
            print("\(name) \(count * 4) \(size) \(tenths(results[results.count / 2])) \(tenths(results[0])) \(tenths(results[results.count - 1]))")
            fflush(stdout)
        }
    }
}

do {
    if arguments.contains("--gradient-bench") {
        try runGradientBench()
        world.finalize()
        exit(0)
    }
    if arguments.contains("--bench") {
        try runBench()
        world.finalize()
        exit(0)
    }
    if let aborting = value("--abort") {
        if rank == aborting {
            fputs("[rank \(rank)] mpi-checks: aborting on purpose\n", stderr)
            world.abort(code: 3)
        }
        try world.barrier()  // the others wait here until the abort ends them
        sleep(60)
        fail("rank \(aborting) aborted but rank \(rank) is still running", rank: rank)
    }

    // Float sum all-reduce: rank r contributes r + 1 + i.
    var floats = (0..<1000).map { Float(rank + 1 + $0) }
    try floats.withUnsafeMutableBufferPointer { try world.allReduceSum($0.baseAddress!, count: $0.count) }
    let triangle = Float(size * (size + 1) / 2)
    for i in 0..<floats.count where floats[i] != triangle + Float(size * i) {
        fail("float all-reduce element \(i) is \(floats[i]), expected \(triangle + Float(size * i))", rank: rank)
    }

    // Double sum all-reduce with values that need double precision.
    var doubles = [1e-12 * Double(rank + 1), 1e12 + Double(rank)]
    try doubles.withUnsafeMutableBufferPointer { try world.allReduceSum($0.baseAddress!, count: 2) }
    let expectedDoubles = [1e-12 * Double(size * (size + 1) / 2), 1e12 * Double(size) + Double(size * (size - 1) / 2)]
    if abs(doubles[0] - expectedDoubles[0]) > 1e-24 || doubles[1] != expectedDoubles[1] {
        fail("double all-reduce gave \(doubles), expected \(expectedDoubles)", rank: rank)
    }

    // Broadcast from every root in turn.
    for root in 0..<size {
        var data = (0..<257).map { Float(rank == root ? root * 1000 + $0 : -1) }
        try data.withUnsafeMutableBufferPointer { try world.broadcast($0.baseAddress!, count: $0.count, root: root) }
        for i in 0..<data.count where data[i] != Float(root * 1000 + i) {
            fail("broadcast from \(root): element \(i) is \(data[i])", rank: rank)
        }
    }

    // Gather in rank order.
    var gathered = [Float](repeating: 0, count: size * 3)
    let mine: [Float] = [Float(rank), Float(rank) + 0.5, Float(rank) + 0.25]
    try mine.withUnsafeBufferPointer { source in
        try gathered.withUnsafeMutableBufferPointer { try world.gather(source.baseAddress!, count: 3, into: $0.baseAddress!) }
    }
    if rank == 0 {
        for r in 0..<size where Array(gathered[(3 * r)..<(3 * r + 3)]) != [Float(r), Float(r) + 0.5, Float(r) + 0.25] {
            fail("gather: rank \(r)'s values are \(gathered[(3 * r)..<(3 * r + 3)])", rank: rank)
        }
    }

    // Bucketed non-blocking all-reduce agrees exactly with the blocking one, whatever the
    // order in which buckets become ready.
    let count = 10_007
    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
    defer { buffer.deallocate() }
    var reference = [Float](repeating: 0, count: count)
    for i in 0..<count { buffer[i] = Float((i * 7 + rank * 13) % 101) / 8; reference[i] = buffer[i] }
    try reference.withUnsafeMutableBufferPointer { try world.allReduceSum($0.baseAddress!, count: count) }
    let buckets = GradientBuckets(communicator: world, buffer: buffer, count: count, bucketElements: 1000)
    buckets.begin()
    for offset in stride(from: count - 1, through: 0, by: -997) { try buckets.ready(from: offset) }
    let early = buckets.startedEarly  // buckets whose start >= 36, the last offset reported
    try buckets.finish()
    let scale = 1 / Float(size)
    for i in 0..<count where buffer[i] != reference[i] * scale {
        fail("bucketed all-reduce element \(i) is \(buffer[i]), expected \(reference[i] * scale)", rank: rank)
    }
    if size > 1 && early != buckets.starts.count - 2 {
        fail("\(early) of \(buckets.starts.count) buckets started before finish(), expected \(buckets.starts.count - 2)", rank: rank)
    }

    // The hierarchical form (nodes of 2 consecutive ranks, the last one alone when W is odd, and
    // the launcher's own shared-memory nodes) gives the same exact sums, with several buckets in
    // flight at once.
    for perNode in [2, nil] as [Int?] {
        let layout = try world.nodeLayout(ranksPerNode: perNode)
        for i in 0..<count { buffer[i] = Float((i * 7 + rank * 13) % 101) / 8 }
        let hierarchical = GradientBuckets(communicator: world, buffer: buffer, count: count, bucketElements: 1000, layout: layout)
        for _ in 0..<2 {  // twice: the state of a step must not leak into the next
            for i in 0..<count { buffer[i] = Float((i * 7 + rank * 13) % 101) / 8 }
            hierarchical.begin()
            for offset in stride(from: count - 1, through: 0, by: -997) { try hierarchical.ready(from: offset) }
            try hierarchical.finish()
            for i in 0..<count where buffer[i] != reference[i] * scale {
                fail("hierarchical all-reduce (\(perNode.map { "\($0) ranks per node" } ?? "shared-memory nodes"), \(layout.nodes) nodes) element \(i) is \(buffer[i]), expected \(reference[i] * scale)", rank: rank)
            }
        }
        if let perNode, layout.nodes != (size + perNode - 1) / perNode {
            fail("\(layout.nodes) nodes of \(perNode) ranks in a world of \(size)", rank: rank)
        }
    }

    // Fingerprint agreement, and its detection of a difference.
    if !(try world.allAgree(on: 0xDEAD_BEEF_0123_4567)) { fail("identical fingerprints reported as different", rank: rank) }
    if size > 1, try world.allAgree(on: rank == size - 1 ? 1 : 2) { fail("different fingerprints reported as equal", rank: rank) }

    try world.barrier()
} catch {
    fail("\(error)", rank: rank)
}
if rank == 0 { print("mpi-checks: ok on \(size) ranks") }
world.finalize()
