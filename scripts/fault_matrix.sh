#!/usr/bin/env bash
# Runs `vqvae train` into faults, each case TRIALS times (default 5), and checks what must hold.
#
#   sudo bash scripts/fault_matrix.sh [TRIALS] [CASE...]
#
# Cases (all by default):
#   kill-mid-step            SIGKILL of rank 1 while it is inside a step (VQVAE_FAULT=sleep-in-step)
#   kill-mid-allreduce       SIGKILL of rank 1 while it waits inside the gradient all-reduce
#                            (rank 0 is held back with VQVAE_FAULT=sleep-in-allreduce)
#   kill-mid-checkpoint      SIGKILL of rank 0 when half of a checkpoint is in its temporary file
#                            (VQVAE_FAULT=sleep-in-checkpoint-write)
#   frozen-rank              SIGSTOP of rank 1: nothing fails, the other rank just waits; --watchdog 5
#   link-cut                 3 ranks on 3 hosts (network namespaces, scripts/netns_cluster.sh);
#                            host 2's link is taken down at the switch mid-training; --watchdog 10
#   link-cut-outside         the README's hostfile launch (--tune examples/openmpi/cluster.tune)
#                            from outside the hosts, 3 hosts; host 2 takes its own interface down;
#                            --watchdog 30; mpirun must end within 45 s and every process within 60 s
#   disk-full                the output folder is a 2 MB tmpfs that holds one checkpoint, not two
#   sigterm-mid-checkpoint   SIGTERM to rank 0 when half of a checkpoint is in its temporary file
#   sigterm-mpirun-mid-checkpoint  the same SIGTERM sent to mpirun instead
#   nan-data                 NaN in one rank's input images at step 8, with and without --skip-nonfinite
#   nan-gradient             NaN in one rank's gradient at step 8, with and without --skip-nonfinite
#
# Must hold: a killed, frozen or cut-off rank ends the job with a non-zero exit within 30 s (the
# link cut: and no process of the job is left on any host within 60 s); every checkpoint left is
# complete (`vqvae inspect` verifies its checksums) and finite (h5py), no temporary file is left
# under a final name, and `--resume auto` continues from the newest one. A full disk gives one
# line on standard error, a non-zero exit, and the earlier checkpoint intact. SIGTERM to a rank
# during a write lets it finish, checkpoints the next step and exits 0; SIGTERM to mpirun ends the
# job within 30 s with the write either finished or gone, never half under a final name, and the run
# resumes. A NaN stops the run naming its step (or is skipped with --skip-nonfinite) and never
# reaches a checkpoint.
#
# Prints one line per trial and a Markdown table, one row per case (REPORT=FILE also writes it);
# exits non-zero if anything did not hold. Environment: VQVAE (default .build/release/vqvae).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
trials=${1:-5}
[[ $trials =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [TRIALS] [CASE...]" >&2; exit 2; }
shift $(($# > 0 ? 1 : 0))
all_cases=(kill-mid-step kill-mid-allreduce kill-mid-checkpoint frozen-rank link-cut link-cut-outside disk-full sigterm-mid-checkpoint
           sigterm-mpirun-mid-checkpoint nan-data nan-gradient)
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=("${all_cases[@]}")
for c in "${cases[@]}"; do
    [[ " ${all_cases[*]} " == *" $c "* ]] || { echo "error: unknown case '$c' (cases: ${all_cases[*]})" >&2; exit 2; }
done
vqvae=$(realpath "${VQVAE:-.build/release/vqvae}" 2>/dev/null) || true
[ -x "$vqvae" ] || { echo "error: ${VQVAE:-.build/release/vqvae} is not built (swift build -c release, or set VQVAE)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
unset VQVAE_FAULT

source scripts/netns_cluster.sh
work=$(mktemp -d /tmp/vqvae-fault-matrix.XXXXXX)
job=
mounts=()
finish() {
    [ -n "$job" ] && kill -9 "$job" 2>/dev/null
    cluster_down
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null; done
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work folder: $work"; else rm -rf "$work"; fi
}
trap finish EXIT
trap 'exit 130' INT TERM

# Namespaces (link-cut) and tmpfs mounts (disk-full) need root: say so before anything runs.
cluster_check
data=$work/synthetic.h5
python3 scripts/synthetic_data.py "$data" || exit 2
model=(--hidden 16 --res-hidden 8 --code-dim 8 --codes 32 --seed 3)
local_mpirun=(mpirun -np 2 --oversubscribe --bind-to none)

# ---- helpers -------------------------------------------------------------------------------------

now() { echo "$EPOCHREALTIME"; }
since() { awk "BEGIN { printf \"%.2f\", $EPOCHREALTIME - $1 }"; }

# wait_until SECONDS COMMAND...: polls COMMAND every 50 ms; fails after SECONDS.
wait_until() {
    local deadline=$(awk "BEGIN { printf \"%.3f\", $EPOCHREALTIME + $1 }")
    shift
    until "$@"; do
        awk "BEGIN { exit !($EPOCHREALTIME > $deadline) }" && return 1
        sleep 0.05
    done
}

# The PID of rank RANK of the job writing to OUT (from the rank's environment).
rank_pid() {
    local out=$1 rank=$2 pid
    for pid in $(pgrep -f "vqvae train .*--out $out( |$)"); do
        tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$rank" && { echo "$pid"; return 0; }
    done
    return 1
}
ranks_gone() { ! pgrep -f "vqvae train .*--out $1( |$)" >/dev/null; }
job_ended() { ! kill -0 "$job" 2>/dev/null; }
cluster_empty() { [ -z "$(cluster_pids)" ]; }
alive() { [ -e "/proc/$1" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }
metrics_reached() { [ -f "$1/metrics.jsonl" ] && [ "$(wc -l <"$1/metrics.jsonl")" -ge "$2" ]; }
checkpoint_count() { ls "$1/checkpoints" 2>/dev/null | grep -c '^step-.*\.h5$'; }
has_checkpoints() { [ "$(checkpoint_count "$1")" -ge "$2" ]; }
has_temporary() { compgen -G "$1/checkpoints/.step-$(printf %08d "$2").h5.tmp-*" >/dev/null; }

# start_job OUT FAULT COMMAND...: runs COMMAND in the background with VQVAE_FAULT=FAULT (empty:
# none), output in OUT.out/OUT.err; sets job and job_start.
start_job() {
    local out=$1 fault=$2
    shift 2
    mkdir -p "$out"
    if [ -n "$fault" ]; then VQVAE_FAULT=$fault "$@" >"$out.out" 2>"$out.err" & else "$@" >"$out.out" 2>"$out.err" & fi
    job=$!
    job_start=$(now)
}

# wait_job SECONDS: waits for the background job; sets job_code and job_seconds (from job_start,
# or from fault_time when set). A job still running after SECONDS is killed and counts as a hang.
wait_job() {
    local limit=$1 from=${fault_time:-$job_start}
    if wait_until "$limit" job_ended; then
        wait "$job"
        job_code=$?
    else
        # The job may be a subshell running a function (cluster_mpirun_outside): its mpirun too.
        pkill -9 -P "$job" 2>/dev/null
        kill -9 "$job" 2>/dev/null
        wait "$job" 2>/dev/null
        job_code=hang
    fi
    job_seconds=$(since "$from")
    job=
    fault_time=
}

# check_checkpoints OUT [TEMPORARIES-ALLOWED]: every step-*.h5 verifies (vqvae inspect) and holds
# only finite numbers; no other file in the folder (with a second argument: except the temporary
# files `.step-*.h5.tmp-PID` of a writer that was killed). Prints the newest step; fails with a
# reason otherwise.
check_checkpoints() {
    local folder=$1/checkpoints name newest=-1
    for name in $(ls -A "$folder"); do
        [ $# -gt 1 ] && [[ $name =~ ^\.step-[0-9]{8}\.h5\.tmp-[0-9]+$ ]] && continue
        [[ $name =~ ^step-([0-9]{8})\.h5$ ]] || { echo "stray file $name"; return 1; }
        "$vqvae" inspect "$folder/$name" >/dev/null 2>&1 || { echo "$name does not verify"; return 1; }
        newest=$((10#${BASH_REMATCH[1]}))
    done
    [ "$newest" -ge 0 ] || { echo "no checkpoint"; return 1; }
    python3 - "$folder" <<'EOF' || { echo "a checkpoint holds NaN or infinity"; return 1; }
import os, sys, h5py, numpy as np
for name in os.listdir(sys.argv[1]):
    if not name.startswith('step-'):
        continue
    with h5py.File(os.path.join(sys.argv[1], name), 'r') as f:
        bad = []
        f.visititems(lambda n, o: bad.append(n) if isinstance(o, h5py.Dataset) and not np.isfinite(o[()]).all() else None)
        assert not bad, (name, bad)
EOF
    echo "$newest"
}

# resume OUT STEPS [MPIRUN...]: `--resume auto` to STEPS must continue from the newest checkpoint.
resume() {
    local out=$1 steps=$2 newest
    shift 2
    newest=$(ls "$out/checkpoints" | grep '^step-' | sort | tail -n 1)
    "$@" "$vqvae" train --data "$data" --out "$out" --steps "$steps" --resume auto "${model[@]}" \
        >"$out.resume.out" 2>"$out.resume.err" || { echo "resume failed: $(tail -n 3 "$out.resume.err")"; return 1; }
    grep -q "resuming from $out/checkpoints/$newest" "$out.resume.out" || { echo "resume did not start from $newest"; return 1; }
    [ -f "$out/checkpoints/step-$(printf %08d "$steps").h5" ] || { echo "resume wrote no step-$steps checkpoint"; return 1; }
    check_checkpoints "$out" >/dev/null || { echo "after resume: $(check_checkpoints "$out")"; return 1; }
}

declare -A case_trials case_passed case_seconds case_codes case_lost
record() {  # record CASE TRIAL OK SECONDS CODE LOST NOTE
    local status=ok
    [ "$3" = 1 ] || status=FAILED
    printf '%-30s trial %d: %-6s exit %-5s after %6s s  lost: %s%s\n' "$1" "$2" "$status" "$5" "$4" "$6" "${7:+  ($7)}"
    case_trials[$1]=$((${case_trials[$1]:-0} + 1))
    [ "$3" = 1 ] && case_passed[$1]=$((${case_passed[$1]:-0} + 1))
    case_seconds[$1]="${case_seconds[$1]:-} $4"
    case_codes[$1]="${case_codes[$1]:-} $5"
    [ "$6" = none ] || case_lost[$1]="${case_lost[$1]:-}$6; "
}

# ---- cases ---------------------------------------------------------------------------------------

# Kills rank VICTIM once READY-TEST holds; checks the exit, that the newest complete checkpoint is
# step NEWEST and verifies, and that --resume auto continues from it.
kill_case() {  # kill_case NAME TRIAL FAULT VICTIM NEWEST READY-TEST...
    local name=$1 trial=$2 fault=$3 victim=$4 newest=$5 out=$work/$1-$2 ok=1 note="" pid checked lost=none r
    shift 5
    start_job "$out" "$fault" "${local_mpirun[@]}" -x VQVAE_FAULT "$vqvae" train --data "$data" --out "$out" --steps 100000 \
        --global-batch-size 8 --checkpoint-every 5 --log-every 1 "${model[@]}"
    if ! wait_until 60 "$@"; then
        wait_job 1
        record "$name" "$trial" 0 - - "?" "the fault was not reached: $(tail -n 2 "$out.err" | tr '\n' ' ')"
        return
    fi
    sleep 0.3
    pid=$(rank_pid "$out" "$victim") || { ok=0; note="rank $victim not found"; }
    fault_time=$(now)
    [ -n "$pid" ] && kill -9 "$pid"
    wait_job 30
    [ "$job_code" != hang ] && [ "$job_code" != 0 ] || { ok=0; note="exit $job_code"; }
    wait_until 10 ranks_gone "$out" || { ok=0; note="a rank survived"; }
    if [ "$name" = kill-mid-checkpoint ]; then
        has_temporary "$out" 10 || { ok=0; note="no half-written temporary file (the kill missed the write)"; }
        [ ! -e "$out/checkpoints/step-00000010.h5" ] || { ok=0; note="step 10 appeared under its final name"; }
    fi
    checked=$(check_checkpoints "$out" temporaries-allowed) || { ok=0; note="$checked"; lost=checkpoints; checked=-1; }
    [ "$checked" -ge "$newest" ] || { ok=0; lost="checkpoints after step $checked"; }
    if [ "$ok" = 1 ]; then  # the resume also removes a killed writer's temporary file
        r=$(resume "$out" $((checked + 3)) "${local_mpirun[@]}") || { ok=0; note="$r"; }
    fi
    if [ "$ok" = 1 ]; then
        note="newest complete checkpoint step $checked verified; resumed from it"
        grep -q "never finished" "$out.resume.err" && note+=" (removed the half-written temporary file)"
    fi
    record "$name" "$trial" "$ok" "$job_seconds" "$job_code" "$lost" "$note"
}

case_kill-mid-step() {
    kill_case kill-mid-step "$1" "sleep-in-step:12:60@1" 1 10 metrics_reached "$work/kill-mid-step-$1" 11
}
case_kill-mid-allreduce() {
    kill_case kill-mid-allreduce "$1" "sleep-in-allreduce:12:60@0" 1 10 metrics_reached "$work/kill-mid-allreduce-$1" 11
}
case_kill-mid-checkpoint() {
    kill_case kill-mid-checkpoint "$1" "sleep-in-checkpoint-write:10:60@0" 0 5 has_temporary "$work/kill-mid-checkpoint-$1" 10
}

case_frozen-rank() {
    local trial=$1 out=$work/frozen-rank-$1 ok=1 note="" pid checked lost=none
    start_job "$out" "" "${local_mpirun[@]}" "$vqvae" train --data "$data" --out "$out" --steps 1000000 \
        --global-batch-size 8 --checkpoint-every 200 --log-every 100 --watchdog 5 "${model[@]}"
    wait_until 60 has_checkpoints "$out" 2 || { ok=0; note="no checkpoints"; }
    pid=$(rank_pid "$out" 1) || { ok=0; note="rank 1 not found"; }
    fault_time=$(now)
    [ -n "$pid" ] && kill -STOP "$pid"
    wait_job 30
    [ -n "$pid" ] && alive "$pid" && { kill -9 "$pid"; ok=0; note="the frozen rank was left behind"; }
    [ "$job_code" != hang ] && [ "$job_code" != 0 ] || { ok=0; note="exit $job_code"; }
    grep -q "\[rank 0\] error: watchdog: no progress for" "$out.err" || { ok=0; note="no watchdog message"; }
    checked=$(check_checkpoints "$out") || { ok=0; note="$checked"; lost=checkpoints; }
    if [ "$ok" = 1 ]; then
        local r
        r=$(resume "$out" $((checked + 3)) "${local_mpirun[@]}") || { ok=0; note="$r"; }
    fi
    [ "$ok" = 1 ] && note="$(grep -o 'watchdog: no progress for [0-9]* s in [a-z0-9 -]*' "$out.err" | head -n 1); resumed from step $checked"
    record frozen-rank "$trial" "$ok" "$job_seconds" "$job_code" "$lost" "$note"
}

# check_cut_job SECONDS, in a link-cut case after the cut at $cut_at: mpirun must end within
# SECONDS with a non-zero exit, every process of the job on every host (the cut-off one included)
# within 60 s more, with a clear message, leaving only complete checkpoints. Sets the calling
# case's ok, note, lost, checked and gone_seconds.
check_cut_job() {
    wait_job "$1"
    [ "$job_code" != hang ] && [ "$job_code" != 0 ] || { ok=0; note="mpirun exit $job_code"; }
    wait_until 60 cluster_empty ||
        { ok=0; note="processes left: $(cluster_pids | xargs -r ps -o comm= -p | tr '\n' ' ')"; }
    gone_seconds=$(since "$cut_at")
    grep -Eq "watchdog: no progress|lost communication with a remote daemon" "$out.err" || { ok=0; note="no clear message"; }
    checked=$(check_checkpoints "$out") || { ok=0; note="$checked"; lost=checkpoints; }
}

case_link-cut() {
    local trial=$1 out=$work/link-cut-$1 ok=1 note="" checked lost=none gone_seconds
    cluster_up 3
    start_job "$out" "" cluster_mpirun "$vqvae" train --data "$data" --out "$out" --steps 1000000 --checkpoint-every 100 \
        --global-batch-size 12 --log-every 50 --watchdog 10 "${model[@]}"
    wait_until 60 has_checkpoints "$out" 2 || { ok=0; note="no checkpoints: $(tail -n 2 "$out.err" | tr '\n' ' ')"; }
    fault_time=$(now)
    local cut_at=$fault_time
    cluster_cut 2
    check_cut_job 60
    cluster_restore 2
    if [ "$ok" = 1 ]; then
        local r
        r=$(resume "$out" $((checked + 5)) cluster_mpirun) || { ok=0; note="$r"; }
    fi
    if [ "$ok" = 1 ]; then
        local how=()
        grep -q "watchdog: no progress" "$out.err" && how+=("watchdog on rank(s) $(grep -o '^\[rank [0-9]*\] error: watchdog' "$out.err" | grep -o '[0-9]*' | sort -u | tr '\n' ' ' | sed 's/ $//')")
        grep -q "lost communication with a remote daemon" "$out.err" && how+=("mpirun: lost the daemon of host 2")
        note="$(printf '%s; ' "${how[@]}")all processes gone after $gone_seconds s; resumed across 3 hosts from step $checked"
    fi
    cluster_down
    record link-cut "$trial" "$ok" "$job_seconds" "$job_code" "$lost" "$note"
}

# The multi-host launch as the README shows it (hostfile, --map-by core --bind-to core and the
# keepalive settings of examples/openmpi/cluster.tune), with mpirun on a machine outside the hosts
# as on a login node, and the cut seen from the lost host's side. Without the tune file mpirun
# waits minutes for the lost host's daemon (docs/reliability.md). The watchdog (30 s here, 300 s by
# default) must outlast the keepalive's 11 s: once a rank's watchdog ends it, mpirun sends the
# lost host's daemon the order to stop, and a connection with unacknowledged data is not probed
# by keepalive but retransmitted for up to tcp_retries2 (about 15 minutes by default).
case_link-cut-outside() {
    local trial=$1 out=$work/link-cut-outside-$1 ok=1 note="" checked lost=none gone_seconds
    local launch=(cluster_mpirun_outside --map-by core --bind-to core --tune examples/openmpi/cluster.tune)
    cluster_up 3
    cluster_outside
    start_job "$out" "" "${launch[@]}" "$vqvae" train --data "$data" --out "$out" --steps 1000000 --checkpoint-every 100 \
        --global-batch-size 12 --log-every 50 --watchdog 30 "${model[@]}"
    wait_until 60 has_checkpoints "$out" 1 || { ok=0; note="no checkpoints: $(tail -n 2 "$out.err" | tr '\n' ' ')"; }
    fault_time=$(now)
    local cut_at=$fault_time
    cluster_cut_at_host 2
    check_cut_job 45
    cluster_restore_at_host 2
    if [ "$ok" = 1 ]; then
        local r
        r=$(resume "$out" $((checked + 5)) "${launch[@]}") || { ok=0; note="$r"; }
    fi
    [ "$ok" = 1 ] && note="mpirun ended $job_seconds s after the cut, every process $gone_seconds s; resumed across 3 hosts from step $checked"
    cluster_down
    record link-cut-outside "$trial" "$ok" "$job_seconds" "$job_code" "$lost" "$note"
}

case_disk-full() {
    local trial=$1 out=$work/disk-full-$1 ok=1 note="" checked lost=none folder
    folder=$out/checkpoints
    mkdir -p "$out"
    mount -t tmpfs -o size=2m tmpfs "$out" || { record disk-full "$trial" 0 - - "?" "cannot mount a tmpfs"; return; }
    mounts+=("$out")
    # 57,185 parameters: a checkpoint is 1.09 MB, so the second does not fit beside the first.
    start_job "$out" "" "$vqvae" train --data "$data" --out "$out" --steps 20 --checkpoint-every 5 --hidden 32 --res-hidden 16 \
        --code-dim 32 --codes 128 --global-batch-size 8 --log-every 5
    wait_job 60
    [ "$job_code" = 1 ] || { ok=0; note="exit $job_code"; }
    [ "$(wc -l <"$out.err")" -eq 1 ] || { ok=0; note="$(wc -l <"$out.err") lines on standard error"; }
    grep -q "the disk is full" "$out.err" || { ok=0; note="unclear message: $(head -c 300 "$out.err")"; }
    [ "$(ls -A "$folder" | tr '\n' ' ')" = "step-00000005.h5 " ] || { ok=0; note="left in the folder: $(ls -A "$folder" | tr '\n' ' ')"; lost="?"; }
    checked=$(check_checkpoints "$out") || { ok=0; note="$checked"; lost=checkpoints; }
    if [ "$ok" = 1 ]; then  # with space again, the run continues
        cp -r "$out" "$out-moved"
        "$vqvae" train --data "$data" --out "$out-moved" --steps 12 --resume auto >"$out.resume.out" 2>&1 &&
            grep -q "at step 5" "$out.resume.out" && check_checkpoints "$out-moved" >/dev/null ||
            { ok=0; note="resume elsewhere failed: $(tail -n 2 "$out.resume.out")"; }
    fi
    [ "$ok" = 1 ] && note="$(cut -c 1-140 "$out.err")..."
    umount "$out" && mounts=("${mounts[@]/$out}")
    record disk-full "$trial" "$ok" "$job_seconds" "$job_code" "$lost" "$note"
}

case_sigterm-mid-checkpoint() {
    local trial=$1 out=$work/sigterm-mid-checkpoint-$1 ok=1 note="" pid checked lost=none r
    start_job "$out" "sleep-in-checkpoint-write:10:3@0" "${local_mpirun[@]}" -x VQVAE_FAULT "$vqvae" train --data "$data" \
        --out "$out" --steps 100000 --global-batch-size 8 --checkpoint-every 5 --log-every 1 "${model[@]}"
    wait_until 60 has_temporary "$out" 10 || { ok=0; note="the write was not reached"; }
    pid=$(rank_pid "$out" 0) || { ok=0; note="rank 0 not found"; }
    fault_time=$(now)
    [ -n "$pid" ] && kill -TERM "$pid"
    wait_job 30
    [ "$job_code" = 0 ] || { ok=0; note="exit $job_code: $(tail -n 2 "$out.err" | tr '\n' ' ')"; }
    checked=$(check_checkpoints "$out") || { ok=0; note="$checked"; lost=checkpoints; }
    [ "$(ls "$out/checkpoints" | tr '\n' ' ')" = "step-00000005.h5 step-00000010.h5 step-00000011.h5 " ] ||
        { ok=0; note="checkpoints: $(ls -A "$out/checkpoints" | tr '\n' ' ')"; }
    grep -q "stopped by a signal after step 11" "$out.out" || { ok=0; note="no stop message"; }
    if [ "$ok" = 1 ]; then
        r=$(resume "$out" 14 "${local_mpirun[@]}") || { ok=0; note="$r"; }
    fi
    [ "$ok" = 1 ] && note="the write of step 10 finished, step 11 checkpointed, exit 0; resumed from step 11"
    record sigterm-mid-checkpoint "$trial" "$ok" "$job_seconds" "$job_code" "$lost" "$note"
}

# SIGTERM to mpirun itself (a user's kill, a scheduler that signals only the launcher): OpenMPI
# passes SIGTERM on to the ranks and SIGKILLs them odls_base_sigkill_timeout (1 s) later, so a
# write that takes longer is cut off: it must vanish cleanly and the run must resume.
case_sigterm-mpirun-mid-checkpoint() {
    local trial=$1 out=$work/sigterm-mpirun-mid-checkpoint-$1 ok=1 note="" checked lost=none r outcome
    start_job "$out" "sleep-in-checkpoint-write:10:3@0" "${local_mpirun[@]}" -x VQVAE_FAULT "$vqvae" train --data "$data" \
        --out "$out" --steps 100000 --global-batch-size 8 --checkpoint-every 5 --log-every 5 "${model[@]}"
    wait_until 60 has_temporary "$out" 10 || { ok=0; note="the write was not reached"; }
    fault_time=$(now)
    kill -TERM "$job"
    wait_job 30
    [ "$job_code" != hang ] || { ok=0; note="mpirun did not end"; }
    wait_until 10 ranks_gone "$out" || { ok=0; note="a rank survived"; }
    checked=$(check_checkpoints "$out" temporaries-allowed) || { ok=0; note="$checked"; lost=checkpoints; checked=-1; }
    [ "$checked" -ge 5 ] || lost="checkpoints"
    if [ -e "$out/checkpoints/step-00000010.h5" ]; then outcome="the write of step 10 finished"
    elif has_temporary "$out" 10; then outcome="the write of step 10 was cut off and left only its temporary file"
    else outcome="the write of step 10 was cut off"; fi
    if [ "$ok" = 1 ]; then
        r=$(resume "$out" $((checked + 3)) "${local_mpirun[@]}") || { ok=0; note="$r"; }
    fi
    [ "$ok" = 1 ] && note="$outcome; resumed from step $checked"
    record sigterm-mpirun-mid-checkpoint "$trial" "$ok" "$job_seconds" "$job_code" "$lost" "$note"
}

nan_case() {  # nan_case NAME TRIAL FAULT-KIND MESSAGE
    local name=$1 trial=$2 kind=$3 message=$4 ok=1 note="" checked lost=none out
    out=$work/$name-$trial
    start_job "$out" "$kind:8@1" "${local_mpirun[@]}" -x VQVAE_FAULT "$vqvae" train --data "$data" --out "$out" \
        --steps 12 --global-batch-size 8 --checkpoint-every 5 --log-every 1 "${model[@]}"
    wait_job 60
    [ "$job_code" != 0 ] && [ "$job_code" != hang ] || { ok=0; note="exit $job_code"; }
    grep -q "\[rank 0\] error: $message.* at step 8; nothing was updated or written" "$out.err" ||
        { ok=0; note="no message naming step 8: $(grep error "$out.err" | head -n 1)"; }
    checked=$(check_checkpoints "$out") || { ok=0; note="$checked"; lost=checkpoints; }
    [ "$(ls "$out/checkpoints" | tr '\n' ' ')" = "step-00000005.h5 " ] || { ok=0; note="checkpoints: $(ls "$out/checkpoints" | tr '\n' ' ')"; }
    local stopped_code=$job_code stopped_seconds=$job_seconds
    # With --skip-nonfinite the step is skipped and the run goes on; nothing non-finite is saved.
    start_job "$out-skip" "$kind:8@1" "${local_mpirun[@]}" -x VQVAE_FAULT "$vqvae" train --data "$data" --out "$out-skip" \
        --steps 12 --global-batch-size 8 --checkpoint-every 5 --log-every 1 --skip-nonfinite "${model[@]}"
    wait_job 60
    [ "$job_code" = 0 ] || { ok=0; note="--skip-nonfinite: exit $job_code"; }
    grep -q "$message.* at step 8; skipping its update" "$out-skip.err" || { ok=0; note="--skip-nonfinite: no warning naming step 8"; }
    checked=$(check_checkpoints "$out-skip") || { ok=0; note="--skip-nonfinite: $checked"; lost=checkpoints; }
    [ "$ok" = 1 ] && note="stopped naming step 8, checkpoints finite; --skip-nonfinite: skipped step 8, exit 0, all finite"
    record "$name" "$trial" "$ok" "$stopped_seconds" "$stopped_code/$job_code" "$lost" "$note"
}
case_nan-data() { nan_case nan-data "$1" nan-data "loss is nan"; }
case_nan-gradient() { nan_case nan-gradient "$1" nan-gradient "gradients are not finite"; }

# ---- run -----------------------------------------------------------------------------------------

echo "fault matrix: $trials trial(s) of ${cases[*]}; binary $vqvae"
for c in "${cases[@]}"; do
    for ((t = 1; t <= trials; t++)); do "case_$c" "$t"; done
done

stats() {  # min / median / max of the numbers given
    tr ' ' '\n' <<<"$*" | grep -E '^[0-9.]+$' | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "-"; exit }
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.2f / %.2f / %.2f", v[1], m, v[NR] }'
}
table=$(
    echo "| case | trials | passed | time to exit, s (min / median / max) | exit codes | checkpoints lost |"
    echo "| --- | --- | --- | --- | --- | --- |"
    for c in "${cases[@]}"; do
        echo "| $c | ${case_trials[$c]:-0} | ${case_passed[$c]:-0} | $(stats ${case_seconds[$c]:-}) | $(tr ' ' '\n' <<<"${case_codes[$c]:-}" | grep . | sort | uniq -c | awk '{ printf "%s%s x%d", (NR > 1 ? ", " : ""), $2, $1 }') | ${case_lost[$c]:-none} |"
    done
)
echo
echo "$table"
[ -n "${REPORT:-}" ] && echo "$table" >"$REPORT"
failures=0
for c in "${cases[@]}"; do [ "${case_passed[$c]:-0}" -eq "${case_trials[$c]:-0}" ] || failures=$((failures + 1)); done
if [ "$failures" -gt 0 ]; then
    echo "fault matrix: $failures case(s) FAILED"
    exit 1
fi
echo "fault matrix: ok (every case held in every trial)"
