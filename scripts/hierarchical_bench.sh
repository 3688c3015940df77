#!/usr/bin/env bash
# The gradient all-reduce across hosts, flat against hierarchical, on links of a known rate: the
# measurement behind docs/scaling.md's "many ranks per node". Builds 2 network-namespace hosts
# (scripts/netns_cluster.sh), limits each host's outgoing link to RATE with a token bucket (tc tbf),
# and runs `mpi-checks --gradient-bench` (the default model's 2.65 MB gradient in 1 MiB buckets,
# summed as one all-reduce over every rank, and within each host, between the hosts and back)
# with 1, 2 and 4 ranks per host. Prints the CPU and one line per layout: op bytes ranks
# median_us min_us max_us.
#
#   sudo bash scripts/hierarchical_bench.sh [RATE...]      (default: 1gbit unlimited)
#
# Environment: MPI_CHECKS (default .build/release/mpi-checks), PER_HOST (default "1 2 4"),
# ROUNDS (default 5), MAP_BY (mpirun's --map-by: unset places consecutive ranks on a host, `node`
# deals them out in turn).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
checks=$(realpath "${MPI_CHECKS:-.build/release/mpi-checks}" 2>/dev/null) || true
[ -x "$checks" ] || { echo "error: ${MPI_CHECKS:-.build/release/mpi-checks} is not built (swift build -c release)" >&2; exit 2; }
command -v tc >/dev/null || { echo "error: tc (iproute2) is not installed" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
rates=("$@"); [ ${#rates[@]} -gt 0 ] || rates=(1gbit unlimited)

source scripts/netns_cluster.sh
trap cluster_down EXIT
trap 'exit 130' INT TERM
cluster_up 2
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs) model $(grep -m1 '^model' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs; $(mpirun --version | head -1)"
for rate in "${rates[@]}"; do
    for i in 0 1; do
        ip netns exec "$CLUSTER_ID-h$i" tc qdisc del dev eth0 root 2>/dev/null || true
        if [ "$rate" != unlimited ]; then
            ip netns exec "$CLUSTER_ID-h$i" tc qdisc add dev eth0 root tbf rate "$rate" burst 256kb latency 100ms ||
                { echo "error: cannot limit host $i's link to $rate" >&2; exit 2; }
        fi
    done
    for per in ${PER_HOST:-1 2 4}; do
        hosts=$(tr ',' '\n' <<<"$CLUSTER_HOSTS" | sed "s/\$/:$per/" | paste -sd,)
        echo "# 2 hosts, $per rank(s) per host${MAP_BY:+ (--map-by $MAP_BY)}, links $rate, load average $(cut -d' ' -f1-3 /proc/loadavg)"
        ip netns exec "$CLUSTER_ID-h0" unshare --uts /bin/sh -c 'hostname host0 && exec "$@"' sh \
            mpirun --host "$hosts" -np $((2 * per)) ${MAP_BY:+--map-by "$MAP_BY"} --bind-to none --mca plm_rsh_agent "$CLUSTER_DIR/agent" $(cluster_mca) \
            "$checks" --ranks $((2 * per)) --gradient-bench --rounds "${ROUNDS:-5}" | grep -v '^#'
    done
done
