#!/usr/bin/env python3
"""Projects the step time of data-parallel training of the default VQ-VAE to many ranks.

    python3 scripts/scaling_model.py [--compute F,B,U] [--measured bench/allreduce.txt] [--markdown]

The inputs are the measured compute of one step on one rank (forward with the quantizer F,
backward B, EMA update and Adam U, in ms, from `vqvae bench`), the byte counts of the step's
collectives and a latency-bandwidth model of each collective as OpenMPI 4.1 runs it. With
--measured it also fits T = a + b n to the all-reduce measurements of scripts/allreduce_bench.sh.
docs/scaling.md explains the model and shows its output.

The step is simulated as a timeline. Collectives advance round by round; a round occupies the
rank's link for alpha + bytes * beta (plus gamma per byte reduced), one round at a time. A
non-blocking collective only advances inside MPI calls: during the backward pass those are the
trainer's calls after each layer (`GradientBuckets.ready`), so a round after the first is posted
only at the first such call after the previous round finished; once the backward pass is over,
the trainer waits in MPI_Waitall and rounds follow each other at once. Blocking collectives
run after the backward pass, one after the other.
"""
import argparse
import math
import re
import statistics

# ---- the default model (32x32x3, hidden 128, residual hidden 32, 2 blocks, 2 downsamplings,
# ---- codes 512x64): layers in forward order, parameters and direct-convolution MFLOP per image
# ---- (forward). The backward pass of a layer costs about twice its forward pass (the first layer
# ---- computes no input gradient).
LAYERS = [  # name, parameters, forward MFLOP per image
    ("encoder/down0", 3_136, 1.57),
    ("encoder/down1", 131_200, 16.78),
    ("encoder/conv", 147_584, 18.87),
    ("encoder/res0", 41_120, 5.24),
    ("encoder/res1", 41_120, 5.24),
    ("pre_quant", 8_256, 1.05),
    ("decoder/conv", 73_856, 9.44),
    ("decoder/res0", 41_120, 5.24),
    ("decoder/res1", 41_120, 5.24),
    ("decoder/up0", 131_136, 16.78),
    ("decoder/up1", 3_075, 1.57),
]
PARAMETERS = sum(p for _, p, _ in LAYERS)  # 662,723 floats
CODES, CODE_DIM = 512, 64
STATISTICS_BYTES = 4 * (CODES + CODES * CODE_DIM)  # n_k and s_k, floats: 133,120 B
SCALARS_BEFORE = 8 * 6  # losses, stop flag, non-finite flag (doubles)
SCALARS_AFTER = 8 * 5  # the non-finite flag is read from the reduced sums instead
SYNC_CHECK_BYTES = 8 * 4  # the fingerprint's MAX all-reduce, every --sync-check-every steps
SYNC_CHECK_EVERY = 100
LATENT_BYTES_PER_RANK = 4 * 32 * 8 * 8 * CODE_DIM  # dead-code restart gather: 524,288 B per rank
EMA_STATE_BYTES = 4 * (CODES + CODES + CODES * CODE_DIM)  # broadcast after a restart: 135,168 B


def backward_schedule(backward_ms):
    """(time in the backward pass when the layer's gradient is final, its first offset), in
    backward order; each is also an MPI progress call."""
    offsets, offset = [], 0
    for name, parameters, _ in LAYERS:
        offsets.append(offset)
        offset += parameters
    cost = [(1 if i == 0 else 2) * flop for i, (_, _, flop) in enumerate(LAYERS)]
    total = sum(cost)
    t, events = 0.0, []
    for i in reversed(range(len(LAYERS))):
        t += backward_ms * cost[i] / total
        events.append((t, offsets[i]))
    return events


def buckets(bucket_bytes):
    """(start, end) float offsets of the gradient buckets, cut from the buffer's end."""
    elements = max(1, bucket_bytes // 4)
    result, end = [], PARAMETERS
    while end > 0:
        start = max(0, end - elements)
        result.append((start, end))
        end = start
    return result


def log2(p):
    return math.ceil(math.log2(p))


def rounds(algorithm, n, p, net):
    """Per-round (seconds on the link) of an all-reduce of n bytes over p ranks."""
    a, b, g = net["alpha"], net["beta"], net["gamma"]
    if p == 1:
        return []
    if "per_node" in net and net["per_node"] > 1:
        c, shm = net["per_node"], net["shm"]
        inner = {k: v for k, v in net.items() if k not in ("per_node", "shm", "hierarchical", "placement")}
        if net.get("hierarchical"):
            # Reduce inside the node (shared memory), all-reduce among the node leaders, broadcast.
            local = [shm["alpha"] + n * (shm["beta"] + g)] * log2(c)
            across = rounds(nonblocking_algorithm(n, p // c, False) if algorithm in ("binomial", "rabenseifner")
                            else algorithm, n, p // c, inner)
            return local + across + [shm["alpha"] + n * shm["beta"]] * log2(c)
        return flat_rounds_on_nodes(algorithm, n, p, c, net["placement"], inner, shm)
    if algorithm == "binomial":  # libnbc in place, or p < 4, or n < 64 KiB: reduce + broadcast trees
        return [a + n * (b + g)] * log2(p) + [a + n * b] * log2(p)
    if algorithm == "rabenseifner":  # reduce-scatter by halving, all-gather by doubling
        k = int(math.log2(p))
        halves = [a + n / 2 ** (i + 1) * (b + g) for i in range(k)]
        return halves + list(reversed([a + n / 2 ** (i + 1) * b for i in range(k)]))
    if algorithm == "recursive-doubling":  # coll/tuned, small messages
        return [a + n * (b + g)] * log2(p)
    if algorithm == "ring":  # coll/tuned, large messages
        return [a + n / p * (b + g)] * (p - 1) + [a + n / p * b] * (p - 1)
    raise ValueError(algorithm)


def flat_rounds_on_nodes(algorithm, n, p, c, placement, net, shm):
    """Per-round seconds of a flat all-reduce of n bytes over p ranks, c to a node. The algorithms
    pair rank r with r XOR d (binomial trees, recursive halving and doubling) at distances d = 1, 2,
    4, ...; a pair is on one node when d < c under block placement (consecutive ranks on a node,
    mpirun's and Slurm's default) and when d is a multiple of the number of nodes under cyclic
    placement (--map-by node). A round on one node costs shared memory's alpha and beta; a round
    across nodes shares the node's link among the node's ranks that send in it: all c in
    recursive halving or doubling, and in a binomial round all c under cyclic placement but at
    most one under block placement. A ring's neighbours are on one node except at one rank per
    node under block placement."""
    a, b, g = net["alpha"], net["beta"], net["gamma"]
    nodes = p // c

    def across(d):
        return d >= c if placement == "block" else d % nodes != 0

    def cost(d, m, reduce, sharing):
        if across(d):
            return a + m * (b * sharing + (g if reduce else 0))
        return shm["alpha"] + m * (shm["beta"] + (g if reduce else 0))

    k = log2(p)
    if algorithm == "binomial":
        sharing = c if placement == "cyclic" else 1
        up = [cost(2 ** i, n, True, sharing) for i in range(k)]
        return up + [cost(2 ** i, n, False, sharing) for i in reversed(range(k))]
    if algorithm == "rabenseifner":
        halves = [cost(2 ** i, n / 2 ** (i + 1), True, c) for i in range(k)]
        return halves + [cost(2 ** i, n / 2 ** (i + 1), False, c) for i in reversed(range(k))]
    if algorithm == "recursive-doubling":
        return [cost(2 ** i, n, True, c) for i in range(k)]
    if algorithm == "ring":
        m = n / p
        one = a + m * (b * (1 if placement == "block" else c) + g)
        return [one] * (p - 1) + [one - m * g] * (p - 1)
    raise ValueError(algorithm)


def blocking_algorithm(n):
    # coll/tuned's fixed decision tables in OpenMPI 4.1 pick recursive doubling for small messages
    # and, at many ranks, Rabenseifner or a (segmented) ring for large ones. Rabenseifner is used
    # here: of the large-message choices its latency term is the smallest.
    return "recursive-doubling" if n < 10_000 else "rabenseifner"


def nonblocking_algorithm(n, p, in_place):
    # coll/libnbc (nbc_iallreduce.c, OpenMPI 4.1): binomial when p < 4, n < 64 KiB or in place;
    # otherwise reduce-scatter + all-gather.
    return "binomial" if p < 4 or n < 65536 or in_place else "rabenseifner"


def step_time(p, net, compute, design, bucket_bytes=1 << 20):
    """Returns (step ms, exposed communication ms, per-collective finish times) of one step."""
    forward, backward, update = compute
    polls = backward_schedule(backward)  # (time, offset ready) in ms from the start of backward
    in_place = design in ("before", "early")
    collectives = []  # (name, ready time ms, rounds in ms)

    def add(name, ready, n, algorithm):
        collectives.append((name, ready, [r * 1e3 for r in rounds(algorithm, n, p, net)]))

    if design in ("early", "after"):
        # Started right after the forward pass (time 0 of the backward pass).
        add("codebook statistics", 0.0, STATISTICS_BYTES, nonblocking_algorithm(STATISTICS_BYTES, p, False))
        add("losses and stop flag", 0.0, SCALARS_AFTER, nonblocking_algorithm(SCALARS_AFTER, p, False))
    for start, end in buckets(bucket_bytes):
        ready = next((t for t, offset in polls if offset <= start), backward)
        n = 4 * (end - start)
        add(f"bucket {start}-{end}", ready, n, nonblocking_algorithm(n, p, in_place))

    # Simulation. A collective's first round is posted when it is started; each later round is
    # posted by the first MPI call after the previous round finished (inside the backward pass, the
    # next layer's call; after it, at once). The link carries one round at a time, in posting order.
    poll_times = [t for t, _ in polls]

    def posted(t):
        if t >= backward:
            return t
        return next((q for q in poll_times if q >= t - 1e-12), backward)

    link_free = 0.0
    state = [[name, list(rs), ready] for name, ready, rs in collectives]  # name, rounds left, post time
    finish = {}
    while any(rs for _, rs, _ in state):
        entry = min((e for e in state if e[1]), key=lambda e: e[2])
        start = max(entry[2], link_free)
        link_free = start + entry[1].pop(0)
        entry[2] = posted(link_free)
        finish[entry[0]] = link_free
    end = max([backward] + list(finish.values()))
    if design in ("before", "separate"):
        # The codebook statistics and the scalars: blocking, after the buckets.
        for n in (STATISTICS_BYTES, SCALARS_BEFORE):
            end += sum(rounds(blocking_algorithm(n), n, p, net)) * 1e3
    # The fingerprint check every SYNC_CHECK_EVERY steps, amortised.
    end += sum(rounds("recursive-doubling", SYNC_CHECK_BYTES, p, net)) * 1e3 / SYNC_CHECK_EVERY
    exposed = end - backward
    return forward + end + update, exposed, finish


NETWORKS = {
    # name: alpha (s per message, MPI point to point), beta (s per byte), gamma (s per byte summed)
    "10 Gb/s Ethernet, TCP": dict(alpha=25e-6, beta=8 / 10e9 / 0.9, gamma=0.1e-9),
    "25 Gb/s Ethernet, TCP": dict(alpha=15e-6, beta=8 / 25e9 / 0.9, gamma=0.1e-9),
    "100 Gb/s InfiniBand, RDMA": dict(alpha=2e-6, beta=8 / 100e9 / 0.9, gamma=0.1e-9),
}


def fit(path):
    """Least-squares T = a + b n (microseconds, bytes) per (section, op, ranks), once on the
    medians and once on the minima (the rounds least disturbed by other work on the machine);
    a is the median (minimum) time of the messages up to 1 KiB."""
    rows, section = {}, ""
    for line in open(path):
        if line.startswith("#"):
            if "forced" in line or "coll_libnbc" in line:
                section = "forced algorithm"  # too few sizes to fit
            else:
                section = "network namespaces" if "hosts" in line else "shared memory" if "one host" in line else section
            continue
        parts = line.split()
        if len(parts) != 6 or not re.match(r"^[a-z]", parts[0]):
            continue
        op, n, p, median, low, high = parts[0], int(parts[1]), int(parts[2]), *map(float, parts[3:])
        rows.setdefault((section, op, p), []).append((n, median, low))
    fits = {}
    for key, points in sorted(rows.items()):
        if len(points) < 4 or not any(q[0] <= 1024 for q in points):
            continue
        result = []
        for column in (1, 2):
            xs, ys = [q[0] for q in points], [q[column] for q in points]
            mx, my = statistics.fmean(xs), statistics.fmean(ys)
            b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
            small = [q[column] for q in points if q[0] <= 1024]
            result += [statistics.median(small), b]
        fits[key] = tuple(result)
    return fits


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compute", default="", help="F,B,U: forward, backward and update ms of one step on one rank")
    parser.add_argument("--measured", help="output of scripts/allreduce_bench.sh to fit")
    parser.add_argument("--bucket-mb", type=float, default=1.0)
    parser.add_argument("--per-node", type=int, default=32, help="ranks per node for the shared-link table")
    parser.add_argument("--shm-alpha", type=float, default=1.0, help="shared-memory latency, us")
    parser.add_argument("--shm-beta", type=float, default=0.3, help="shared-memory ns per byte")
    arguments = parser.parse_args()
    if arguments.measured:
        print("fits T = a + b n: a = time of messages up to 1 KiB (us), b = ns per byte; GB/s = 1/b")
        print("| transport | op | ranks | medians: a | b | GB/s | minima: a | b | GB/s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for (section, op, p), (a, b, a_min, b_min) in fit(arguments.measured).items():
            if op.startswith("iallreduce-overlap"):
                continue
            print(f"| {section} | {op} | {p} | {a:.1f} | {b * 1e3:.2f} | {1 / (b * 1e3):.2f} | "
                  f"{a_min:.1f} | {b_min * 1e3:.2f} | {1 / (b_min * 1e3):.2f} |")
        print()
    if not arguments.compute:
        return
    compute = tuple(float(x) for x in arguments.compute.split(","))
    single = sum(compute)
    bucket = int(arguments.bucket_mb * (1 << 20))
    print(f"gradient {4 * PARAMETERS:,} B in buckets of {bucket:,} B: " +
          ", ".join(f"{4 * (e - s):,}" for s, e in buckets(bucket)) +
          f"; statistics {STATISTICS_BYTES:,} B; scalars {SCALARS_BEFORE} B before, {SCALARS_AFTER} B after")
    print(f"one rank: {single:.1f} ms per step (forward {compute[0]}, backward {compute[1]}, update {compute[2]})")
    print()
    designs = [("before", "as in main"), ("early", "statistics and scalars non-blocking after the forward pass"),
               ("separate", "buckets reduced into a separate buffer"), ("after", "both")]
    print("designs: " + "; ".join(f"{d}: {what}" for d, what in designs))
    print()
    print("| network | ranks | " + " | ".join(f"{d}: step ms (exposed, efficiency)" for d, _ in designs) + " |")
    print("|---|---|" + "---|" * len(designs))
    for name, net in NETWORKS.items():
        for p in (8, 64, 256, 1024):
            cells = []
            for design, _ in designs:
                t, exposed, _ = step_time(p, net, compute, design, bucket)
                cells.append(f"{t:.1f} ({exposed:.1f}, {single / t:.0%})")
            print(f"| {name} | {p} | " + " | ".join(cells) + " |")
    print()
    print("bucket size, design 'after': step ms (exposed)")
    sizes = [0.25, 1, 4, 16]
    print("| network | ranks | " + " | ".join(f"{mb} MiB" for mb in sizes) + " |")
    print("|---|---|" + "---|" * len(sizes))
    for name, net in NETWORKS.items():
        for p in (256, 1024):
            cells = []
            for mb in sizes:
                t, exposed, _ = step_time(p, net, compute, "after", int(mb * (1 << 20)))
                cells.append(f"{t:.1f} ({exposed:.1f})")
            print(f"| {name} | {p} | " + " | ".join(cells) + " |")
    print()
    print(f"{arguments.per_node} ranks per node sharing the node's link, design 'after': step ms (exposed, efficiency)")
    print("| network | ranks | flat, block placement | flat, cyclic placement | hierarchical (reduce in the node, all-reduce among nodes, broadcast) |")
    print("|---|---|---|---|---|")
    shm = dict(alpha=arguments.shm_alpha * 1e-6, beta=arguments.shm_beta * 1e-9)
    for name, net in NETWORKS.items():
        for p in (256, 1024):
            cells = []
            for placement, hierarchical in (("block", False), ("cyclic", False), ("block", True)):
                shared = dict(net, per_node=arguments.per_node, shm=shm, hierarchical=hierarchical, placement=placement)
                t, exposed, _ = step_time(p, shared, compute, "after", bucket)
                cells.append(f"{t:.1f} ({exposed:.1f}, {single / t:.0%})")
            print(f"| {name} | {p} | " + " | ".join(cells) + " |")
    print()
    print("other collectives (not every step), ms")
    print("| network | ranks | fingerprint check (32 B, every 100 steps) | dead-code restart: gather of 512 KiB per rank to rank 0 | and broadcast of the EMA state (135 KB) |")
    print("|---|---|---|---|---|")
    for name, net in NETWORKS.items():
        for p in (8, 64, 256, 1024):
            check = sum(rounds("recursive-doubling", SYNC_CHECK_BYTES, p, net)) * 1e3
            gather = (log2(p) * net["alpha"] + (p - 1) * LATENT_BYTES_PER_RANK * net["beta"]) * 1e3
            broadcast = (log2(p) * (net["alpha"] + EMA_STATE_BYTES * net["beta"])) * 1e3
            print(f"| {name} | {p} | {check:.3f} | {gather:.1f} | {broadcast:.2f} |")


if __name__ == "__main__":
    main()
