#!/usr/bin/env bash
# Trains across "hosts" made of network namespaces on this machine and checks that the result is
# the result of the same ranks on one host.
#
#   sudo bash scripts/cluster_test.sh [RANKS]      (RANKS = 2 or 3, default 3)
#
# Builds a private test network (scripts/netns_cluster.sh: one namespace per host, each with its own
# address on 10.77.0.0/24, joined by veth pairs to a bridge), lets OpenMPI start one rank per host
# over TCP through an rsh agent (`ip netns exec`), trains a small model for a few steps, then trains
# the same configuration with the same number of ranks on one host (plain `mpirun`, shared-memory
# transport) and compares every tensor of every checkpoint with h5py. Prints the largest difference
# and whether the checkpoints are bit-identical; fails if any tensor differs by more than 1e-6
# (relative). Then 2 ranks on every host with --allreduce hierarchical (within each host, among the
# hosts, back), against the same ranks on one host told --ranks-per-node 2: must be bit-identical;
# and the same ranks dealt out to the hosts in turn (--map-by node), where the default --allreduce
# auto must choose the hierarchical form (consecutive ranks on a host keep the flat one, which is
# already node-aware there: docs/scaling.md). Deletes the namespaces on exit.
#
# Environment: VQVAE (the binary; default .build/release/vqvae), DATA (an HDF5 dataset; default a
# synthetic one made here), STEPS (default 6), KEEP_WORK=1 (keep the work folder).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ranks=${1:-3}
[[ $ranks =~ ^[23]$ ]] || { echo "usage: $0 [2|3]" >&2; exit 2; }
vqvae=$(realpath "${VQVAE:-.build/release/vqvae}" 2>/dev/null) || true
[ -x "$vqvae" ] || { echo "error: ${VQVAE:-.build/release/vqvae} is not built (swift build -c release, or set VQVAE)" >&2; exit 2; }
steps=${STEPS:-6}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

source scripts/netns_cluster.sh
work=$(mktemp -d /tmp/vqvae-cluster-test.XXXXXX)
finish() {
    cluster_down
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work folder: $work"; else rm -rf "$work"; fi
}
trap finish EXIT
trap 'exit 130' INT TERM

cluster_up "$ranks"
data=${DATA:-}
if [ -z "$data" ]; then
    data=$work/synthetic.h5
    python3 scripts/synthetic_data.py "$data"
fi
echo "cluster: $ranks hosts ($CLUSTER_HOSTS), mpirun $(cluster_mca)"

# Where each rank runs: its host name and address must differ.
placement=$(cluster_mpirun sh -c 'echo "rank $OMPI_COMM_WORLD_RANK on $(hostname) $(ip -4 -o addr show eth0 | awk "{print \$4}")"' | sort)
echo "$placement" | sed 's/^/  /'
[ "$(awk '{print $4}' <<<"$placement" | sort -u | wc -l)" -eq "$ranks" ] ||
    { echo "error: the ranks did not run on $ranks different hosts" >&2; exit 1; }

train=(train --data "$data" --steps "$steps" --global-batch-size 12 --seed 7 --hidden 16 --res-hidden 8 --code-dim 8
       --codes 32 --kmeans-init --corrupt noise:0.1 --checkpoint-every 3 --log-every 1 --sync-check-every 1 --bucket-mb 0.01)
# The other hosts start with a clean environment, as under ssh: OpenBLAS settings exported here
# (a kernel named by OPENBLAS_CORETYPE, say) go to every rank, as they reach the one-host run, or
# the ranks would compute with different kernels and round differently.
forward=()
for name in $(env | grep -o '^OPENBLAS_[A-Z0-9_]*' || true); do forward+=(-x "$name"); done
start=$EPOCHREALTIME
cluster_mpirun ${forward[@]+"${forward[@]}"} "$vqvae" "${train[@]}" --out "$work/across" >"$work/across.out" 2>"$work/across.err" ||
    { cat "$work/across.err" >&2; echo "error: training across $ranks hosts failed" >&2; exit 1; }
across_seconds=$(awk "BEGIN { print $EPOCHREALTIME - $start }")
start=$EPOCHREALTIME
mpirun -np "$ranks" --oversubscribe --bind-to none "$vqvae" "${train[@]}" --out "$work/one-host" \
    >"$work/one-host.out" 2>"$work/one-host.err" ||
    { cat "$work/one-host.err" >&2; echo "error: training on one host failed" >&2; exit 1; }
one_seconds=$(awk "BEGIN { print $EPOCHREALTIME - $start }")
grep -h "^step $steps/\|identical on all" "$work/across.out" | sed 's/^/  across hosts: /'
grep -h "^step $steps/\|identical on all" "$work/one-host.out" | sed 's/^/  one host:     /'
printf '  wall time: %.1f s across hosts, %.1f s on one host\n' "$across_seconds" "$one_seconds"

python3 - "$work/across/checkpoints" "$work/one-host/checkpoints" <<'EOF'
import os, sys, h5py, numpy as np
across, one = sys.argv[1], sys.argv[2]
names = sorted(os.listdir(one))
assert names == sorted(os.listdir(across)) and len(names) >= 2, (names, os.listdir(across))
identical, worst, tensors = True, 0.0, 0
for name in names:
    a, b = h5py.File(os.path.join(across, name), 'r'), h5py.File(os.path.join(one, name), 'r')
    paths = []
    b.visit(lambda n: paths.append(n) if isinstance(b[n], h5py.Dataset) else None)
    assert len(paths) > 20 and a.attrs['step'] == b.attrs['step'], name
    for n in paths:
        x, y = a[n][()], b[n][()]
        assert x.shape == y.shape and np.isfinite(x).all(), n
        tensors += 1
        if not np.array_equal(x, y):
            identical = False
            worst = max(worst, float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-12)))
print(f"  compared {tensors} tensors in {len(names)} checkpoints ({', '.join(names)}): "
      + ("bit-identical" if identical else f"largest relative difference {worst:.3g}"))
if worst > 1e-6:
    sys.exit("error: training across hosts differs from training on one host")
EOF

# Two ranks on every host, consecutive ranks per host: OpenMPI reports the ranks of a host as
# sharing memory, so --allreduce hierarchical sums the gradients within each host, among the hosts
# and back. The same ranks on one host with the hosts named by --ranks-per-node 2 must train the
# same model, bit for bit.
hosts2=$(tr ',' '\n' <<<"$CLUSTER_HOSTS" | sed 's/$/:2/' | paste -sd,)
on_hosts() {  # on_hosts OUT MPIRUN-OPTIONS... -- TRAIN-OPTIONS...
    local out=$1; shift
    local mpi=(); while [ "$1" != -- ]; do mpi+=("$1"); shift; done; shift
    ip netns exec "$CLUSTER_ID-h0" unshare --uts /bin/sh -c 'hostname host0 && exec "$@"' sh \
        mpirun --host "$hosts2" -np $((2 * ranks)) --bind-to none --mca plm_rsh_agent "$CLUSTER_DIR/agent" $(cluster_mca) \
        "${mpi[@]}" ${forward[@]+"${forward[@]}"} "$vqvae" "${train[@]}" "$@" --out "$work/$out" >"$work/$out.out" 2>"$work/$out.err" ||
        { cat "$work/$out.err" >&2; echo "error: training with 2 ranks on each of $ranks hosts ($out) failed" >&2; exit 1; }
}
hierarchical() {
    grep -q "($ranks nodes of up to 2 ranks, hierarchical all-reduce)" "$work/$1.out" ||
        { cat "$work/$1.out" >&2; echo "error: 2 ranks on each of $ranks hosts ($1) did not reduce hierarchically" >&2; exit 1; }
}
on_hosts nodes --map-by slot -- --allreduce hierarchical; hierarchical nodes
on_hosts cyclic --map-by node --; hierarchical cyclic
# Consecutive ranks per host: auto keeps the flat all-reduce.
on_hosts block --map-by slot --
! grep -q "hierarchical all-reduce" "$work/block.out" ||
    { cat "$work/block.out" >&2; echo "error: --allreduce auto chose the hierarchical form for consecutive ranks per host" >&2; exit 1; }
mpirun -np $((2 * ranks)) --oversubscribe --bind-to none "$vqvae" "${train[@]}" --allreduce hierarchical --ranks-per-node 2 \
    --out "$work/nodes-one-host" >"$work/nodes-one-host.out" 2>"$work/nodes-one-host.err" ||
    { cat "$work/nodes-one-host.err" >&2; echo "error: training on one host with --ranks-per-node 2 failed" >&2; exit 1; }
grep -h "^vqvae train\|identical on all" "$work/nodes.out" | sed 's/^.*; \([0-9]* rank(s)\)/\1/; s/^/  2 per host:   /'
python3 - "$work/nodes-one-host/checkpoints" "$work/nodes/checkpoints" "$work/cyclic/checkpoints" <<'EOF2'
import os, sys, h5py, numpy as np
one = sys.argv[1]
names = sorted(os.listdir(one))
def compare(other):
    assert names == sorted(os.listdir(other)) and len(names) >= 2, (names, os.listdir(other))
    worst = 0.0
    for name in names:
        a, b = h5py.File(os.path.join(other, name), 'r'), h5py.File(os.path.join(one, name), 'r')
        paths = []
        b.visit(lambda n: paths.append(n) if isinstance(b[n], h5py.Dataset) else None)
        for n in paths:
            x, y = a[n][()], b[n][()]
            worst = max(worst, float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-12)))
    return worst
block, cyclic = compare(sys.argv[2]), compare(sys.argv[3])
print("  2 per host:   " + ("bit-identical" if block == 0 else f"largest relative difference {block:.3g}")
      + " to the same ranks on one host with --ranks-per-node 2")
print("  in blocks:    --allreduce auto kept the flat all-reduce")
print(f"  in turn:      --allreduce auto chose hierarchical; largest relative difference {cyclic:.3g}"
      + " (other nodes, so other sums)")
if block > 1e-6:
    sys.exit("error: the hierarchical all-reduce across hosts differs from the one on one host")
if cyclic > 1e-4:
    sys.exit("error: ranks dealt out to the hosts in turn train another model")
EOF2
echo "cluster test: ok ($ranks ranks on $ranks hosts over TCP = $ranks ranks on one host; $((2 * ranks)) ranks, 2 per host, hierarchical)"
