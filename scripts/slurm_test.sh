#!/usr/bin/env bash
# Runs vqvae under a real Slurm cluster on this machine and checks launches, preemption by signal,
# time limits and requeueing, on one node (this machine) and across two nodes (network
# namespaces).
#
#   sudo bash scripts/slurm_test.sh [--short | --multi-node]
#
# Installs Debian's Slurm and MUNGE when missing, writes a slurm.conf into a temporary folder,
# starts munged, slurmctld and the slurmds there as root (own socket, key, ports, state, spool,
# logs), waits until the nodes are idle, and then:
#
#   1. lists the MPI plugins (srun --mpi=list), tries pmix and pmi2 with a 2-rank training run and
#      requires pmix to work (Debian's OpenMPI 4.1 is built with PMIx);
#   2. trains 2 ranks with srun --mpi=pmix (the reference run) and the same with mpirun -np 2:
#      the final checkpoints must be bit-identical;
#   3. scancel --signal=TERM: submits examples/slurm/train.sbatch (2 ranks), sends SIGTERM to its
#      ranks mid-run; the job must end COMPLETED with exit 0 and a checkpoint of the step it stopped
#      at that verifies; `scontrol requeue` then continues it with --resume auto to a final
#      checkpoint bit-identical to the reference;
#   4. (full mode) the same with a resubmission (sbatch again) instead of the requeue; the time
#      limit (--time=1 --signal=TERM@10: Slurm signals the ranks before the limit, they checkpoint,
#      the job script requeues the job); preemption (a job in a higher partition takes the CPUs:
#      PreemptMode=REQUEUE, GraceTime=30; the ranks checkpoint, the job script requeues the job).
#      Each continued run must end bit-identical to the reference;
#   5. (full mode) the README's Slurm lines (sbatch of the job script, srun), exactly as printed;
#   6. two nodes, each a network namespace made by scripts/netns_cluster.sh (own host name
#      node0/node1, own address on 10.78.0.0/24 unless CLUSTER_SUBNET says otherwise, a veth link
#      to a bridge) running its own slurmd (1 CPU and half the memory each); slurmctld and the
#      commands run in this machine's namespace, which gets a link to the bridge (.254).
#      srun --nodes=2 --ntasks=2 --ntasks-per-node=1 trains one rank per node over TCP: each rank
#      must report its own SLURM_NODEID, host name and address, and the final checkpoint must be
#      bit-identical to mpirun -np 2's on this machine; then (not in --short) the scancel
#      --signal=TERM and `scontrol requeue` of case 3 with a 2-node job (both nodes' slurmds must
#      log the SIGTERM to their rank), bit-identical again.
#
# For each signal it prints the time from the signal (slurmd's log of the signal sent to the ranks,
# in ms) to the checkpoint on disk (its rename into place) and to the end of the job. --short runs
# 1-3 and the srun run of 6 with a small model (a few minutes including the install);
# --multi-node runs 1 (across the two nodes), the mpirun run of 2 and all of 6 with that small
# model (about a minute); the full form runs everything with MNIST and the default model. Stops
# every process it started, by PID, and deletes the namespaces, also on failure; prints
# "slurm test: ok" at the end and exits non-zero, naming what failed, otherwise.
#
# Environment: VQVAE (the binary; default .build/release/vqvae), KEEP_WORK=1 (keep the work
# folder, its logs and runs), CLUSTER_SUBNET (the nodes' /24, default 10.78.0).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
repo=$PWD
mode=full
case "${1:-}" in
    --short) mode=short ;;
    --multi-node) mode=multi-node ;;
    "") ;;
    *) echo "usage: $0 [--short | --multi-node]" >&2; exit 2 ;;
esac
[ $# -le 1 ] || { echo "usage: $0 [--short | --multi-node]" >&2; exit 2; }
# What runs: the one-node cases (1-5) and the two-node ones (6; --short: the srun run only).
one_node=1 multi_node=1
[ "$mode" = multi-node ] && one_node=0

fail() {
    echo "slurm test: FAILED: $*" >&2
    exit 1
}
[ "$(id -u)" -eq 0 ] || fail "must run as root (it starts munged, slurmctld and slurmd)"
vqvae=$(realpath "${VQVAE:-.build/release/vqvae}" 2>/dev/null) || true
[ -x "$vqvae" ] || fail "${VQVAE:-.build/release/vqvae} is not built (swift build -c release, or set VQVAE)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Nothing of an enclosing Slurm job or MPI launch may leak into the runs started here.
for v in $(compgen -e | grep -E '^(SLURM_|SBATCH_|SRUN_|SALLOC_|PMIX_|PMI_|OMPI_COMM_WORLD_|VQVAE_FAULT$|VQVAE_MPI$)'); do unset "$v"; done

# ---- installation ------------------------------------------------------------------------------

missing=()
for tool in slurmctld:slurmctld slurmd:slurmd srun:slurm-client munged:munge; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if ((${#missing[@]})); then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        fail "apt-get install ${missing[*]} failed"
fi
[ -e /usr/lib/x86_64-linux-gnu/slurm-wlm/mpi_pmix.so ] || compgen -G "/usr/lib/*/slurm-wlm/mpi_pmix*.so" >/dev/null ||
    fail "Slurm's pmix plugin (mpi_pmix.so, package slurm-wlm-basic-plugins) is not installed"
echo "using $(slurmctld -V), $(munged --version 2>&1 | head -n 1), $(mpirun --version | head -n 1)"

# ---- the cluster -------------------------------------------------------------------------------

work=$(mktemp -d /tmp/vqvae-slurm-test.XXXXXX)
chmod 755 "$work"
mkdir -p "$work"/{munge,state,spool,log,run,runs,tmp}
if [ "$multi_node" = 1 ]; then
    # The two nodes: network namespaces with their own host names, joined by a bridge, and a link
    # from this machine's namespace (slurmctld, munged, the commands) to the bridge.
    CLUSTER_SUBNET=${CLUSTER_SUBNET:-10.78.0}
    source scripts/netns_cluster.sh
fi
# Every daemon, job step and rank started here carries this variable: the clean-up finds them by it.
export VQVAE_SLURM_TEST=$work
daemons=()  # "name:pid"

# The processes carrying that variable, except this script and what it runs itself (the daemons
# are stopped on their own, last): job steps, job scripts and ranks run under slurmd or apart.
processes_of_this_test() {
    python3 - "$work" $$ <<'EOF'
import os, sys
marker, me = ("VQVAE_SLURM_TEST=" + sys.argv[1]).encode(), int(sys.argv[2])
def parent(pid):
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0
for entry in os.listdir("/proc"):
    try:
        if not entry.isdigit() or marker not in open(f"/proc/{entry}/environ", "rb").read().split(b"\0"):
            continue
    except OSError:
        continue
    pid = int(entry)
    while pid > 1 and pid != me:
        pid = parent(pid)
    if pid != me:
        print(entry)
EOF
}
stop_pids() {  # stop_pids PID...: SIGTERM, up to 10 s, then SIGKILL
    local p
    [ $# -gt 0 ] || return 0
    kill "$@" 2>/dev/null
    for _ in $(seq 100); do
        for p in "$@"; do kill -0 "$p" 2>/dev/null && break; p=; done
        [ -z "$p" ] && return 0
        sleep 0.1
    done
    kill -9 "$@" 2>/dev/null
}
finish() {
    local status=$? entry pids=() d
    trap - EXIT INT TERM
    if [ "$status" -ne 0 ] && [ -d "$work/log" ]; then
        for d in "$work"/log/slurmctld.log "$work"/log/slurmd-*.log; do
            [ -f "$d" ] && { echo "--- last lines of ${d##*/}:"; tail -n 15 "$d"; } >&2
        done
    fi
    if [ -n "${SLURM_CONF:-}" ] && kill -0 "${ctld_pid:-0}" 2>/dev/null; then
        scancel --quiet --full --signal=KILL --user=root 2>/dev/null
        scancel --quiet --user=root 2>/dev/null
        for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
    fi
    # Job steps and ranks first, then the daemons, then whatever they left.
    mapfile -t pids < <(processes_of_this_test)
    stop_pids "${pids[@]}"
    for ((d = ${#daemons[@]} - 1; d >= 0; d--)); do stop_pids "${daemons[d]#*:}"; done
    mapfile -t pids < <(processes_of_this_test)
    stop_pids "${pids[@]}"
    # The nodes' namespaces: whatever still runs in them, then the namespaces and the link.
    [ "$multi_node" = 1 ] && cluster_down
    mapfile -t pids < <(processes_of_this_test)
    if ((${#pids[@]})); then
        echo "slurm test: still running after the clean-up: $(ps -o pid=,args= -p "${pids[*]}" | tr '\n' ';')" >&2
        [ "$status" -ne 0 ] || status=1
    fi
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work folder: $work"; else rm -rf "$work"; fi
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT TERM

node=$(uname -n)
node=${node%%.*}
cpus=$(nproc)
memory=$(free -m | awk '/^Mem:/ { print $2 }')
read -r ctld_port slurmd_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge/munge.key"

# The nodes: this machine (the one-node cases) and node0, node1 (namespaces, the two-node cases).
# Each namespace node claims 1 CPU and half the memory: together, what this machine has.
nodes=() node_lines="" partitions="" ctld_address=127.0.0.1
multi_nodes=(node0 node1)
if [ "$one_node" = 1 ]; then
    nodes+=("$node")
    node_lines+="NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN"$'\n'
    partitions+="# Jobs of \"urgent\" preempt jobs of \"main\": SIGTERM at once, requeue after GraceTime.
PartitionName=main Nodes=$node Default=YES MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=30
PartitionName=urgent Nodes=$node MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF"$'\n'
fi
if [ "$multi_node" = 1 ]; then
    [[ " ${multi_nodes[*]} " != *" $node "* ]] || fail "this machine is called $node, the name of a namespace node"
    cluster_up "${#multi_nodes[@]}"
    cluster_outside
    # slurmctld listens on every address; the nodes reach it on the bridge's subnet.
    ctld_address=$CLUSTER_SUBNET.254
    for i in "${!multi_nodes[@]}"; do
        nodes+=("${multi_nodes[i]}")
        node_lines+="NodeName=${multi_nodes[i]} NodeAddr=$CLUSTER_SUBNET.$((i + 1)) CPUs=1 RealMemory=$((memory / ${#multi_nodes[@]})) State=UNKNOWN"$'\n'
    done
    partitions+="# The namespace nodes.
PartitionName=nodes Nodes=$(IFS=,; echo "${multi_nodes[*]}") $([ "$one_node" = 1 ] || echo "Default=YES ")MaxTime=INFINITE State=UP PriorityTier=1"$'\n'
fi
export SLURM_CONF=$work/slurm.conf
cat >"$SLURM_CONF" <<EOF
# Nodes ${nodes[*]}; everything under $work.
ClusterName=vqvaetest
SlurmctldHost=$node($ctld_address)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (120 s by default).
AuthInfo=socket=$work/munge/munge.socket,cred_expire=10
StateSaveLocation=$work/state
SlurmctldPidFile=$work/run/slurmctld.pid
SlurmctldLogFile=$work/log/slurmctld.log
# Per node (%n: the node's name), as on separate machines.
SlurmdSpoolDir=$work/spool/%n
SlurmdPidFile=$work/run/slurmd-%n.pid
SlurmdLogFile=$work/log/slurmd-%n.log
# Job-private folders (PMIx's among them, named after the job and step, the same on every node)
# go here, one folder per node, not into /tmp.
TmpFS=$work/tmp/%n
SlurmctldDebug=info
SlurmdDebug=debug
LogTimeFormat=iso8601_ms
# No cgroups: processes are tracked through their parents, tasks are not bound.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=30
MinJobAge=3600
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
$node_lines$partitions
EOF
for n in "${nodes[@]}"; do mkdir -p "$work/spool/$n" "$work/tmp/$n"; done

munged --foreground --force --socket="$work/munge/munge.socket" --key-file="$work/munge/munge.key" \
    --log-file="$work/log/munged.log" --pid-file="$work/munge/munged.pid" --seed-file="$work/munge/munged.seed" \
    >"$work/log/munged.out" 2>&1 &
daemons+=("munged:$!")
for _ in $(seq 100); do [ -S "$work/munge/munge.socket" ] && break; sleep 0.1; done
[ -S "$work/munge/munge.socket" ] || fail "munged did not start: $(tail -n 3 "$work/log/munged.log" 2>/dev/null)"
chmod 755 "$work/munge"
slurmctld -D -f "$SLURM_CONF" >"$work/log/slurmctld.out" 2>&1 &
ctld_pid=$!
daemons+=("slurmctld:$ctld_pid")
if [ "$one_node" = 1 ]; then
    slurmd -D -f "$SLURM_CONF" -N "$node" >"$work/log/slurmd-$node.out" 2>&1 &
    daemons+=("slurmd-$node:$!")
fi
if [ "$multi_node" = 1 ]; then
    # Each node's slurmd in its network namespace under its own host name (a UTS namespace); the
    # job steps, job scripts and ranks it starts live there too. nsenter, not ip netns exec, which
    # remounts /sys and so hides /sys/fs/cgroup, without which slurmd does not start. nsenter,
    # unshare and sh exec one another, so $! is slurmd's PID. munged is reached through its
    # socket (one file system).
    for i in "${!multi_nodes[@]}"; do
        nsenter --net="/run/netns/$CLUSTER_ID-h$i" unshare --uts /bin/sh -c 'hostname "$0" && exec slurmd -D -f "$1" -N "$0"' \
            "${multi_nodes[i]}" "$SLURM_CONF" >"$work/log/slurmd-${multi_nodes[i]}.out" 2>&1 &
        daemons+=("slurmd-${multi_nodes[i]}:$!")
    done
fi

wait_until() {  # wait_until SECONDS COMMAND...: polls COMMAND every 0.2 s
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
daemons_alive() {
    local entry
    for entry in "${daemons[@]}"; do
        kill -0 "${entry#*:}" 2>/dev/null || { echo "${entry%%:*} exited: $(tail -n 5 "$work/log/${entry%%:*}.out" "$work/log/${entry%%:*}.log" 2>/dev/null)"; return 1; }
    done
}
nodes_idle() { [ "$(sinfo -h -N -o '%N %T' 2>/dev/null | awk '$2 == "idle" { print $1 }' | sort -u | wc -l)" = "${#nodes[@]}" ]; }
start=$SECONDS
wait_until 60 nodes_idle ||
    { daemons_alive; fail "the nodes did not all become idle within 60 s (sinfo: $(sinfo -h -N -o '%N %T %E' 2>&1 | sort -u | tr '\n' ';'))"; }
[ "$one_node" = 1 ] && echo "cluster: node $node (this machine: $cpus CPUs, $memory MB)"
[ "$multi_node" = 1 ] && echo "cluster: nodes ${multi_nodes[*]} (network namespaces at $CLUSTER_SUBNET.1-${#multi_nodes[@]}, 1 CPU and $((memory / ${#multi_nodes[@]})) MB each; slurmctld at $ctld_address)"
echo "cluster: ${#nodes[@]} node(s) idle after $((SECONDS - start)) s; slurmctld port $ctld_port, slurmd port $slurmd_port, $work"
# The ranks hold both CPUs (MPI waits by polling): a turn of this script's 0.2 s polls took 3.8 to
# 13 s at the same priority, long enough for a short run to end before it could be signalled. The
# daemons, and the jobs they start, keep their priority; this script and its commands go first.
renice -n -10 -p $$ >/dev/null || echo "warning: cannot raise this script's priority; its polls may lag behind the jobs" >&2

# ---- helpers -----------------------------------------------------------------------------------

job_field() { scontrol -o show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"; }
job_state() { job_field "$1" JobState; }
job_finished() { case "$(job_state "$1")" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | PREEMPTED) return 0 ;; *) return 1 ;; esac; }
job_restarted_and_finished() { [ "$(job_field "$1" Restarts)" -ge "$2" ] 2>/dev/null && job_finished "$1"; }
job_running() { [ "$(job_state "$1")" = RUNNING ]; }
lines_at_least() { [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; }
newest_checkpoint() {
    local files=("$1"/checkpoints/step-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9].h5)
    [ -e "${files[0]}" ] && echo "${files[-1]##*/}"
}
step_of() { local n=${1#step-}; echo $((10#${n%.h5})); }

# identical REFERENCE OTHER WHAT: every dataset and the step of two checkpoints are equal bit for bit.
identical() {
    local result
    result=$(python3 Tests/Scripts/compare_hdf5_datasets.py "$1" "$2" --min-datasets 20 --same-position 2>&1) ||
        fail "$3: $2 differs from $1: $result"
    [ "$result" = identical ] || fail "$3: unexpected comparison result: $result"
}

# signal_times JOB OUT NEWEST: from the slurmds' log of the first SIGTERM sent to step JOB.0 to the
# rename of OUT/checkpoints/NEWEST and to the job's end (or its requeue) in slurmctld's log; prints
# "S C E" (epoch seconds of the signal, seconds to the checkpoint, seconds to the end of the job).
signal_times() {
    python3 - "$work/log/slurmctld.log" "$1" "$2/checkpoints/$3" "$work"/log/slurmd-*.log <<'EOF'
import os, re, sys
from datetime import datetime
ctld, job, checkpoint, *slurmds = sys.argv[1:]
def stamp(line):
    return datetime.strptime(line[1:24], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
sent = [stamp(l) for log in slurmds for l in open(log) if f"[{job}.0] Sent signal 15 to StepId={job}.0" in l]
if not sent:
    sys.exit(f"no SIGTERM to step {job}.0 in the slurmds' logs")
signal = min(sent)
ended = re.compile(rf"_job_complete: JobId={job} done|Requeuing JobId={job}$")
done = [stamp(l) for l in open(ctld) if ended.search(l.rstrip()) and stamp(l) > signal]
print(f"{signal:.3f} {os.stat(checkpoint).st_ctime - signal:.3f} {(done[0] - signal) if done else float('nan'):.3f}")
EOF
}

# ---- data and settings -------------------------------------------------------------------------

if [ "$mode" != full ]; then
    data=$work/synthetic.h5
    python3 scripts/synthetic_data.py "$data" || fail "scripts/synthetic_data.py failed"
    base="--global-batch-size 16 --seed 5 --hidden 16 --res-hidden 8 --code-dim 8 --codes 32 --kmeans-init --corrupt noise:0.1"
    target_seconds=16
else
    python3 scripts/prepare_data.py mnist --out "$work/data" >/dev/null || fail "scripts/prepare_data.py mnist failed"
    data=$work/data/mnist-train.h5
    base="--global-batch-size 32 --seed 5 --kmeans-init --corrupt noise:0.1"
    target_seconds=100
fi
read -ra base_words <<<"$base"

# ---- 1. MPI plugins ----------------------------------------------------------------------------

# Each plugin is tried with 2 ranks training for a few seconds (--time-budget); pmix's run also
# tells how many steps this machine trains per second now.
plugins=$(srun --mpi=list 2>&1) || fail "srun --mpi=list failed: $plugins"
echo "srun --mpi=list: $(grep -E '^\s+[a-z_0-9]+$|versions available' <<<"$plugins" | xargs)"
# Where the 2 ranks run: this machine, or (--multi-node) one on each namespace node.
if [ "$one_node" = 1 ]; then
    where=(--ntasks=2 --cpus-per-task=1)
else
    where=(--nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task=1)
fi
rate=
for plugin in pmix pmi2; do
    if ! grep -qE "^\s+$plugin$" <<<"$plugins"; then
        echo "  $plugin: not offered by this Slurm"
        [ "$plugin" = pmix ] && fail "Slurm offers no pmix plugin"
        continue
    fi
    out=$work/runs/probe-$plugin
    timeout 120 srun "${where[@]}" --mpi="$plugin" --kill-on-bad-exit=1 "$vqvae" train --data "$data" --out "$out" \
        "${base_words[@]}" --steps 1000000 --time-budget 6 --checkpoint-every 0 --log-every 1000 --sync-check-every 1 \
        >"$out.out" 2>"$out.err"
    code=$?
    done_line=$(grep -m 1 '^done: ' "$out.out")
    if [ "$code" = 0 ] && grep -q "identical on all 2 ranks" "$out.out" && [ -n "$done_line" ]; then
        echo "  $plugin: works (2 ranks$([ "$one_node" = 1 ] || echo " on 2 nodes") in one world, the same parameters on both: $done_line)"
        [ "$plugin" = pmix ] && rate=$(awk '{ print $2 / $5 }' <<<"$done_line")
    else
        reason=$(grep -h -m 1 -E "OMPI was not built|ERROR|error" "$out.err" "$out.out" | cut -c1-160)
        echo "  $plugin: does not work (srun exit $code): ${reason:-$(tail -n 1 "$out.err")}"
        [ "$plugin" = pmix ] && { cat "$out.err" >&2; fail "2 ranks under srun --mpi=pmix did not train as one world"; }
    fi
done

# The runs below take about target_seconds uninterrupted at that rate: long enough to be signalled
# mid-run (the time limit's signal comes 20 to 50 s into a 1-minute job), short enough for a test.
steps=$(awk -v r="$rate" -v t="$target_seconds" 'BEGIN { s = int(r * t / 30 + 1) * 30; print (s < 60 ? 60 : s) }')
flags="$base --checkpoint-every $((steps / 3)) --log-every $((steps / 30))"
echo "runs: $steps steps ($rate steps/s measured, about $target_seconds s), $flags"

# ---- 2. srun launch: the reference run, and mpirun on the same ranks ---------------------------

read -ra flag_words <<<"$flags"
train=(train --data "$data" --steps "$steps" --threads 1 --resume auto "${flag_words[@]}")
final=$(printf 'step-%08d.h5' "$steps")
# The same run under mpirun -np 2 on this machine (no Slurm), what the srun runs are compared with.
other=$work/runs/mpirun
mpirun_run() {
    [ -f "$other/checkpoints/$final" ] && return 0
    mpirun -np 2 --oversubscribe --bind-to none "$vqvae" "${train[@]}" --out "$other" >"$other.out" 2>"$other.err" ||
        { cat "$other.err" >&2; fail "the 2-rank mpirun run failed"; }
}
if [ "$one_node" = 1 ]; then
    reference=$work/runs/reference
    start=$EPOCHREALTIME
    srun --ntasks=2 --cpus-per-task=1 --mpi=pmix --kill-on-bad-exit=1 "$vqvae" "${train[@]}" --out "$reference" \
        --sync-check-every 100 >"$reference.out" 2>"$reference.err" || { cat "$reference.err" >&2; fail "the 2-rank srun run failed"; }
    reference_seconds=$(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $start }")
    [ -f "$reference/checkpoints/$final" ] || fail "the srun run wrote no $final"
    grep -q "identical on all 2 ranks" "$reference.out" || fail "the srun run did not report 2 identical ranks"
    echo "srun --ntasks=2 --mpi=pmix: $steps steps in $reference_seconds s; $(grep -m 1 '^done:' "$reference.out")"
    mpirun_run
    identical "$reference/checkpoints/$final" "$other/checkpoints/$final" "srun vs mpirun"
    echo "mpirun -np 2: final checkpoint bit-identical to srun's"
fi

# ---- 3.-4. signals, time limit, preemption, requeue --------------------------------------------------------

# submit NAME [sbatch options...]: submits examples/slurm/train.sbatch for the run in runs/NAME;
# prints the job id.
submit() {
    local name=$1
    shift
    VQVAE=$vqvae DATA=$data OUT=$work/runs/$name STEPS=$steps FLAGS="$flags" \
        sbatch --parsable --job-name="$name" --output="$work/runs/$name.job.out" --chdir="$work" "$@" \
        "$repo/examples/slurm/train.sbatch"
}

# stopped_checkpoint NAME JOB: after a SIGTERM the job must be COMPLETED, exit 0, the trainer must
# say where it stopped, and that step's checkpoint must verify. Prints the step.
stopped_checkpoint() {
    local name=$1 job=$2 out=$work/runs/$1 log=$work/runs/$1.job.out stopped newest
    stopped=$(grep -m 1 -oE "stopped by a signal after step [0-9]+" "$log" | grep -oE "[0-9]+$") ||
        fail "$name: the trainer did not report a stop by signal: $(tail -n 5 "$log")"
    newest=$(newest_checkpoint "$out")
    [ "$(step_of "$newest")" = "$stopped" ] || fail "$name: stopped after step $stopped but the newest checkpoint is $newest"
    "$vqvae" inspect "$out/checkpoints/$newest" >/dev/null 2>&1 || fail "$name: $newest does not verify"
    ! compgen -G "$out/checkpoints/.step-*" >/dev/null || fail "$name: a temporary checkpoint file was left: $(ls -A "$out/checkpoints")"
    echo "$stopped"
}

# report_signal NAME JOB STEP [COMMAND-TIME]: prints the signal-to-checkpoint and signal-to-end
# times (and from the scancel command to the signal).
report_signal() {
    local times signal to_checkpoint to_end
    times=$(signal_times "$2" "$work/runs/$1" "$(printf 'step-%08d.h5' "$3")") || fail "$1: $times"
    read -r signal to_checkpoint to_end <<<"$times"
    echo "  $1: SIGTERM to the ranks -> checkpoint of step $3 on disk in $to_checkpoint s, job ended after $to_end s" \
         "${4:+(from the command to the signal: $(awk "BEGIN { printf \"%.3f\", $signal - $4 }") s)}"
    signal_figures+=("$1 $to_checkpoint $to_end")
}
signal_figures=()

# scancel_case NAME CONTINUE [sbatch options...]: scancel --signal=TERM mid-run, then CONTINUE
# (requeue or resubmit). The options say where the 2 ranks run (default: --ntasks=2
# --cpus-per-task=1); the job's id is left in scancel_job.
scancel_case() {
    local name=$1 how=$2 job out=$work/runs/$1 stopped state code second
    shift 2
    local options=("$@")
    ((${#options[@]})) || options=(--ntasks=2 --cpus-per-task=1)
    job=$(submit "$name" "${options[@]}") || fail "$name: sbatch failed"
    scancel_job=$job
    wait_until 60 job_running "$job" || fail "$name: job $job did not start: $(job_state "$job") $(job_field "$job" Reason)"
    # Mid-run: after a few progress lines, well before the end.
    wait_until 120 lines_at_least "$out/metrics.jsonl" 4 || fail "$name: the job made no progress: $(tail -n 5 "$out.job.out")"
    [ -f "$out/checkpoints/$final" ] && fail "$name: the run finished before it could be signalled; raise its steps"
    sent_at=$EPOCHREALTIME
    scancel --signal=TERM "$job" || fail "$name: scancel --signal=TERM $job failed"
    wait_until 120 job_finished "$job" || fail "$name: job $job did not end within 120 s of SIGTERM (state $(job_state "$job"))"
    state=$(job_state "$job")
    code=$(job_field "$job" ExitCode)
    [ "$state" = COMPLETED ] && [ "$code" = 0:0 ] || fail "$name: job $job ended $state with exit code $code: $(tail -n 5 "$out.job.out")"
    stopped=$(stopped_checkpoint "$name" "$job") || exit 1
    [ "$stopped" -lt "$steps" ] || fail "$name: stopped at the final step; nothing left to continue"
    grep -q "vqvae job: stopped at step $stopped of $steps" "$out.job.out" || fail "$name: the job script did not report the stop"
    grep -q "requeueing" "$out.job.out" && fail "$name: the job script requeued a job stopped by scancel"
    echo "scancel --signal=TERM of job $job (2 ranks on $(job_field "$job" NodeList)): COMPLETED, exit $code, checkpoint of step $stopped verifies"
    report_signal "$name" "$job" "$stopped" "$sent_at"
    if [ "$how" = requeue ]; then
        scontrol requeue "$job" || fail "$name: scontrol requeue $job failed"
        wait_until 300 job_restarted_and_finished "$job" 1 ||
            fail "$name: the requeued job $job did not finish within 300 s (state $(job_state "$job"))"
        second=$job
    else
        second=$(submit "$name" "${options[@]}") || fail "$name: the second sbatch failed"
        wait_until 300 job_finished "$second" || fail "$name: job $second did not finish within 300 s"
    fi
    [ "$(job_state "$second")" = COMPLETED ] && [ "$(job_field "$second" ExitCode)" = 0:0 ] ||
        fail "$name: the continued job $second ended $(job_state "$second") $(job_field "$second" ExitCode): $(tail -n 5 "$out.job.out")"
    grep -q "resuming from $out/checkpoints/$(printf 'step-%08d.h5' "$stopped")" "$out.job.out" ||
        fail "$name: the continued job did not resume from step $stopped"
    identical "$reference/checkpoints/$final" "$out/checkpoints/$final" "$name"
    echo "  $([ "$how" = requeue ] && echo "scontrol requeue $job" || echo "sbatch again (job $second)"): resumed from step $stopped," \
         "final checkpoint of step $steps bit-identical to the uninterrupted run"
}

# self_requeue_case NAME CAUSE [sbatch options...]: SIGTERM from CAUSE (time-limit: the job's
# --time and --signal; preemption: a job submitted to the "urgent" partition mid-run) stops the
# ranks; the job script requeues the job, which resumes and ends bit-identical to the reference.
self_requeue_case() {
    local name=$1 cause=$2 job out=$work/runs/$1 stopped urgent='' expected='' sent_at=
    shift 2
    job=$(submit "$name" --ntasks=2 --cpus-per-task=1 "$@") || fail "$name: sbatch failed"
    wait_until 60 job_running "$job" || fail "$name: job $job did not start: $(job_state "$job") $(job_field "$job" Reason)"
    if [ "$cause" = preemption ]; then
        wait_until 120 lines_at_least "$out/metrics.jsonl" 4 || fail "$name: the job made no progress: $(tail -n 5 "$out.job.out")"
        sent_at=$EPOCHREALTIME
        urgent=$(sbatch --parsable --partition=urgent --ntasks=1 --job-name=urgent --output="$work/runs/$name.urgent.out" \
            --wrap "sleep 3") || fail "$name: sbatch of the urgent job failed"
        expected="preempted at [^;]+"
    else
        expected="[0-9]+ s before the time limit"
    fi
    wait_until 150 grep -q "requeueing" "$out.job.out" ||
        fail "$name: job $job did not stop and requeue itself within 150 s: $(tail -n 5 "$out.job.out")"
    stopped=$(stopped_checkpoint "$name" "$job") || exit 1
    grep -qE "vqvae job: stopped at step $stopped of $steps, $expected; requeueing" "$out.job.out" ||
        fail "$name: the job script did not report its requeue: $(grep 'vqvae job:' "$out.job.out" | tail -n 2)"
    echo "$cause ($*${urgent:+a 1-task job in partition urgent}) of job $job: the ranks checkpointed step $stopped and the job requeued itself"
    report_signal "$name" "$job" "$stopped" "$sent_at"
    if [ -n "$urgent" ]; then
        wait_until 120 job_finished "$urgent" || fail "$name: the urgent job $urgent did not run"
        [ "$(job_state "$urgent")" = COMPLETED ] || fail "$name: the urgent job ended $(job_state "$urgent")"
    fi
    wait_until 400 job_restarted_and_finished "$job" 1 || fail "$name: the requeued job $job did not finish within 400 s"
    [ "$(job_state "$job")" = COMPLETED ] && [ "$(job_field "$job" ExitCode)" = 0:0 ] ||
        fail "$name: job $job ended $(job_state "$job") $(job_field "$job" ExitCode): $(tail -n 5 "$out.job.out")"
    grep -q "resuming from $out/checkpoints/$(printf 'step-%08d.h5' "$stopped")" "$out.job.out" ||
        fail "$name: the requeued job did not resume from step $stopped"
    identical "$reference/checkpoints/$final" "$out/checkpoints/$final" "$name"
    echo "  requeued job $job (restarts $(job_field "$job" Restarts)): resumed from step $stopped, final checkpoint of step" \
         "$steps bit-identical to the uninterrupted run"
}

[ "$one_node" = 1 ] && scancel_case scancel-requeue requeue
if [ "$mode" = full ]; then
    scancel_case scancel-resubmit resubmit
    # The signal comes 10 to 40 s before the end of a 1-minute job: mid-run, after the start-up.
    self_requeue_case time-limit time-limit --time=1 --signal=TERM@10
    self_requeue_case preempted preemption
fi

# ---- 5. the README's Slurm lines, as written -----------------------------------------------------

# In a folder laid out like the repository (.build/release/vqvae, data/, examples/slurm/), every
# command of the README's "# Slurm" lines (docs/usage.md shows the same) runs as printed there;
# each must train to its end.
# slurm_lines FILE HEADING: the commands under "# Slurm" in the first sh block after HEADING, one a
# line (continuations joined).
slurm_lines() {
    python3 - "$repo/$1" "$2" <<'EOF'
import sys
text = open(sys.argv[1]).read()
block = text.split(sys.argv[2] + "\n", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
lines = block.replace("\\\n", " ").splitlines()
start = next(i for i, line in enumerate(lines) if line.startswith("# Slurm"))
for line in lines[start:]:
    if line.strip() and not line.startswith("#"):
        print(" ".join(line.split()))
EOF
}
readme_case() {
    local folder=$work/readme cmd output job steps_done
    mkdir -p "$folder/.build/release" "$folder/examples/slurm"
    ln -s "$vqvae" "$folder/.build/release/vqvae"
    ln -s "$work/data" "$folder/data"
    cp "$repo/examples/slurm/train.sbatch" "$folder/examples/slurm/"
    mapfile -t commands < <(slurm_lines README.md "## Running on clusters")
    [ "$(slurm_lines docs/usage.md "### Under Slurm")" = "$(printf '%s\n' "${commands[@]}")" ] ||
        fail "docs/usage.md's Slurm lines (### Under Slurm) differ from the README's"
    [ "${#commands[@]}" -ge 2 ] || fail "README: expected an sbatch and an srun line under '# Slurm', found ${#commands[@]}"
    for cmd in "${commands[@]}"; do
        echo "README: $cmd"
        output=$(cd "$folder" && bash -c "$cmd" 2>&1) || fail "README line failed: $cmd: $(tail -n 5 <<<"$output")"
        if [[ $output =~ ^Submitted\ batch\ job\ ([0-9]+) ]]; then
            job=${BASH_REMATCH[1]}
            wait_until 900 job_finished "$job" || fail "README: job $job did not finish within 900 s"
            [ "$(job_state "$job")" = COMPLETED ] || fail "README: job $job ended $(job_state "$job"): $(tail -n 5 "$folder/vqvae-$job.out")"
            output=$(cat "$folder/vqvae-$job.out")
            grep -q "vqvae job: done" <<<"$output" || fail "README: job $job did not finish its run: $(tail -n 5 <<<"$output")"
        fi
        steps_done=$(grep -m 1 '^done: ' <<<"$output") || fail "README: no training summary from: $cmd"
        grep -qE "identical on all 2 ranks" <<<"$output" || fail "README: not 2 identical ranks: $cmd"
        echo "  $steps_done"
    done
}
[ "$mode" = full ] && readme_case

# ---- 6. two nodes ---------------------------------------------------------------------------------

# One rank on each namespace node, over TCP through the bridge; srun runs in this machine's
# namespace, its ranks' slurmstepds reach it back over the link. Each rank first prints where it
# runs (where.sh), then becomes the trainer.
two_node_case() {
    local out=$work/runs/two-nodes start seconds placement line rank id name host address n
    local options=(--partition=nodes --nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task=1)
    cat >"$work/where.sh" <<'EOF'
#!/bin/sh
echo "rank $SLURM_PROCID: SLURM_NODEID=$SLURM_NODEID SLURMD_NODENAME=$SLURMD_NODENAME hostname=$(hostname) eth0=$(ip -4 -o addr show dev eth0 2>/dev/null | awk '{ print $4 }')"
exec "$@"
EOF
    chmod 755 "$work/where.sh"
    start=$EPOCHREALTIME
    srun "${options[@]}" --mpi=pmix --kill-on-bad-exit=1 "$work/where.sh" "$vqvae" "${train[@]}" --out "$out" \
        --sync-check-every 100 >"$out.out" 2>"$out.err" || { cat "$out.err" >&2; fail "the 2-node srun run failed"; }
    seconds=$(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $start }")
    [ -f "$out/checkpoints/$final" ] || fail "the 2-node srun run wrote no $final"
    grep -q "identical on all 2 ranks" "$out.out" || fail "the 2-node srun run did not report 2 identical ranks"
    echo "srun ${options[*]} --mpi=pmix: $steps steps in $seconds s; $(grep -m 1 '^done:' "$out.out")"
    # Each rank on its own node: SLURM_NODEID 0 and 1, the host name of that node, its address.
    placement=$(grep -E '^rank [0-9]+: ' "$out.out" | sort)
    sed 's/^/  /' <<<"$placement"
    [ "$(grep -c . <<<"$placement")" = 2 ] || fail "2-node run: expected 2 ranks to report where they run, got: $placement"
    for rank in 0 1; do
        line=$(grep "^rank $rank: " <<<"$placement") || fail "2-node run: rank $rank did not report where it runs"
        read -r id name host address < <(sed -E 's/.*SLURM_NODEID=([^ ]*) SLURMD_NODENAME=([^ ]*) hostname=([^ ]*) eth0=([^ ]*).*/\1 \2 \3 \4/' <<<"$line")
        n=${multi_nodes[rank]}
        [ "$id" = "$rank" ] && [ "$name" = "$n" ] && [ "$host" = "$n" ] && [ "$address" = "$CLUSTER_SUBNET.$((rank + 1))/24" ] ||
            fail "2-node run: rank $rank ran on node $name (id $id, host name $host, address $address), not on $n"
    done
    mpirun_run
    identical "$other/checkpoints/$final" "$out/checkpoints/$final" "2-node srun vs mpirun"
    echo "  final checkpoint bit-identical to mpirun -np 2's on this machine"
    # --multi-node alone: this run is the reference of the scancel case below.
    [ -n "${reference:-}" ] || reference=$out
}

# scancel --signal=TERM of a 2-node job (examples/slurm/train.sbatch, its script on node0), then
# scontrol requeue; both nodes' slurmds must have signalled their rank.
two_node_scancel_case() {
    local job n options=(--partition=nodes --nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task=1)
    scancel_case two-nodes-scancel requeue "${options[@]}"
    job=$scancel_job
    for n in "${multi_nodes[@]}"; do
        grep -q "\[$job.0\] Sent signal 15 to StepId=$job.0" "$work/log/slurmd-$n.log" ||
            fail "two-nodes-scancel: node $n's slurmd did not signal its rank of job $job"
    done
    echo "  both nodes' slurmds sent SIGTERM to their rank of step $job.0; the requeued job ran on $(job_field "$job" NodeList) again"
}
if [ "$multi_node" = 1 ]; then
    multi_start=$SECONDS
    two_node_case
    [ "$mode" = short ] || two_node_scancel_case
    echo "two-node cases: $((SECONDS - multi_start)) s"
fi

echo "signal to checkpoint on disk, s: $(for f in "${signal_figures[@]}"; do echo -n "${f%% *} $(cut -d' ' -f2 <<<"$f"); "; done)"
echo "slurm test: ok ($mode)"
