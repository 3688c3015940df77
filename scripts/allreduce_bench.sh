#!/usr/bin/env bash
# All-reduce time against message size and rank count on this machine, the inputs of
# docs/scaling.md. Runs `mpi-checks --bench` (Tests/MPIChecks) with 2, 4 and 8 ranks on one host
# (shared-memory transport; more ranks than cores are oversubscribed, so those figures are only
# indicative) and, as root, with 2 and 4 ranks on network-namespace "hosts" joined by a veth
# bridge (TCP, scripts/netns_cluster.sh). Prints the CPU, the load and one line per operation and
# size: op bytes ranks median_us min_us max_us.
#
#   bash scripts/allreduce_bench.sh [RANKS...]          (default 2 4 8)
#
# Environment: MPI_CHECKS (default .build/release/mpi-checks), HOSTS (host counts for the
# network-namespace runs; default "2 4"; empty to skip), ROUNDS (default 5), MAX_BYTES (4194304).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
checks=$(realpath "${MPI_CHECKS:-.build/release/mpi-checks}" 2>/dev/null) || true
[ -x "$checks" ] || { echo "error: ${MPI_CHECKS:-.build/release/mpi-checks} is not built (swift build -c release)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ranks=("$@"); [ ${#ranks[@]} -gt 0 ] || ranks=(2 4 8)
bench=(--bench --rounds "${ROUNDS:-5}" --max-bytes "${MAX_BYTES:-4194304}")

echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs) model $(grep -m1 '^model' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs; $(mpirun --version | head -1)"
for w in "${ranks[@]}"; do
    echo "# one host, $w ranks (shared memory), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    mpirun -np "$w" --oversubscribe --bind-to none "$checks" --ranks "$w" "${bench[@]}" | grep -v '^#'
done

hosts=${HOSTS-2 4}
[ -n "$hosts" ] || exit 0
[ "$(id -u)" -eq 0 ] || { echo "# network-namespace runs skipped: they need root"; exit 0; }
source scripts/netns_cluster.sh
trap cluster_down EXIT
trap 'exit 130' INT TERM
for n in $hosts; do
    cluster_up "$n"
    echo "# $n hosts (network namespaces, TCP over veth), $n ranks, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    cluster_mpirun "$checks" --ranks "$n" "${bench[@]}" | grep -v '^#'
    cluster_down
done
