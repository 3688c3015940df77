#!/usr/bin/env bash
# Runs the standard benchmark configurations with `vqvae bench` and writes this CPU's report,
# bench/results-CPU.md (CPU: zen3, zen4, zen5, ... from scripts/cpu_name.py) with its figures in
# bench/results-CPU.json, then the summary of every CPU measured so far, bench/results.md.
# The report: the default model at 32x32x3 (batch 32 per rank, 1 and 2 ranks, synthetic images),
# 64x64 photo patches and MNIST 28x28x1 (real data), with the CPU model and the date; when PyTorch
# is installed (TORCH_PYTHON, default /opt/torchenv/bin/python), the same model and batch in PyTorch
# in the same trials (one process with 1 and 2 threads, DistributedDataParallel with 2 processes),
# so that the machine's drift reaches both alike; and the time from launch to the first training
# step on 50,000 32x32x3 images.
# Environment: STEPS (timed steps, default 30), WARMUP (default 5), TRIALS (rounds of every
# configuration, default 5; rows show the median run), TORCH_PYTHON, SCRATCH (the build folder,
# default .build: `swift build -c release --scratch-path SCRATCH`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STEPS=${STEPS:-30}
WARMUP=${WARMUP:-5}
TRIALS=${TRIALS:-5}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

bash scripts/install_dependencies.sh
SCRATCH=${SCRATCH:-.build}
swift build -c release --scratch-path "$SCRATCH"
vqvae="$SCRATCH/release/vqvae"
[ -f data/photos64-train.h5 ] || python3 scripts/prepare_data.py photos64 --out data
[ -f data/mnist-train.h5 ] || python3 scripts/prepare_data.py mnist --out data

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
run() {  # name ranks trial bench-arguments...
    local name=$1 ranks=$2 trial=$3; shift 3
    echo "bench: $name ($ranks rank(s), trial $trial)" >&2
    mpirun -np "$ranks" --bind-to core "$vqvae" bench --json --steps "$STEPS" --warmup "$WARMUP" "$@" \
        > "$results/$name-$ranks~$trial.json"
}
TORCH_PYTHON=${TORCH_PYTHON:-/opt/torchenv/bin/python}
torch=0
if [ -x "$TORCH_PYTHON" ] && "$TORCH_PYTHON" -c "import torch" 2>/dev/null; then
    torch=1
else
    echo "bench: PyTorch not found at $TORCH_PYTHON; the report has no side-by-side rows" >&2
fi
run_torch() {  # processes threads trial
    [ "$torch" = 1 ] || return 0
    echo "bench: pytorch ($1 process(es) x $2 thread(s), trial $3)" >&2
    "$TORCH_PYTHON" scripts/bench_pytorch.py --ddp "$1" --threads "$2" --batch 32 --steps "$STEPS" --warmup "$WARMUP" \
        2>/dev/null | tail -1 > "$results/pytorch-$1x$2~$3.torch"
}
# Every configuration once per round, ours and PyTorch's interleaved, so that the machine's drift (a
# shared virtual machine's speed varies by +-10% over minutes) reaches all alike; rows report the
# median, and the ratios are also given round by round.
for trial in $(seq 1 "$TRIALS"); do
    run default32 1 "$trial" --batch 32
    run_torch 1 1 "$trial"
    run default32 2 "$trial" --batch 32
    run_torch 1 2 "$trial"
    run_torch 2 1 "$trial"
    run photos64 1 "$trial" --batch 32 --data data/photos64-train.h5
    run photos64 2 "$trial" --batch 32 --data data/photos64-train.h5
    run mnist28 1 "$trial" --batch 32 --data data/mnist-train.h5
    run mnist28 2 "$trial" --batch 32 --data data/mnist-train.h5
done

# Launch to first step: 50,000 uint8 32x32x3 images (gzip-chunked as h5py writes them).
[ -f data/bench50k.h5 ] || python3 -c '
import h5py, numpy as np
images = np.random.default_rng(0).integers(0, 256, (50000, 32, 32, 3), dtype=np.uint8)
with h5py.File("data/bench50k.h5", "w") as f:
    f.create_dataset("images", data=images, chunks=(64, 32, 32, 3), compression="gzip")'
python3 - "$results" "$vqvae" <<'PY'
import json, os, subprocess, sys, time
rows = {}
for ranks in (1, 2):
    seconds = []
    for trial in range(3):
        out = os.path.join(sys.argv[1], f"first-step-{ranks}-{trial}")
        prefix = ["mpirun", "-np", str(ranks), "--bind-to", "core"] if ranks > 1 else []
        start = time.monotonic()
        process = subprocess.Popen(prefix + [sys.argv[2], "train", "--data", "data/bench50k.h5", "--out", out,
                                             "--steps", "2", "--log-every", "1"], stdout=subprocess.PIPE, text=True)
        for line in process.stdout:
            if line.startswith("step 1/"):
                seconds.append(time.monotonic() - start)
                break
        process.wait()
    rows[ranks] = seconds
json.dump(rows, open(os.path.join(sys.argv[1], "first-step.json"), "w"))
PY

mkdir -p bench
IFS=$'\t' read -r cpu_short cpu_text < <(python3 scripts/cpu_name.py)
python3 - "$results" "$cpu_short" "$cpu_text" <<'PY'
import glob, json, os, statistics, sys, datetime
folder, short, cpu = sys.argv[1:4]
runs, torch_runs = {}, {}
for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
    name = os.path.basename(path)[:-5].split("~")[0]
    runs.setdefault(name, []).append(json.load(open(path)))
for path in sorted(glob.glob(os.path.join(folder, "pytorch-*.torch"))):
    text = open(path).read().strip()
    if text:
        torch_runs.setdefault(os.path.basename(path)[8:-6].split("~")[0], []).append(json.loads(text))
first = runs.pop("first-step", [None])[0]
median_run = lambda r: sorted(r, key=lambda x: x["images_per_second"])[(len(r) - 1) // 2]
rows = {name: median_run(r) for name, r in runs.items()}
trials = {name: sorted(x["images_per_second"] for x in r) for name, r in runs.items()}
torch_rows = {name: median_run(r) for name, r in torch_runs.items()}
some = next(iter(rows.values()))
out = []
say = out.append
say(f"# vqvae bench results: {cpu}\n")
say(f"- date: {datetime.date.today().isoformat()}")
say(f"- CPU: {cpu}")
say(f"- BLAS kernel: {some['blas']}; one BLAS thread per rank; `mpirun --bind-to core`")
say(f"- Swift code built for: {some.get('instruction_set', 'baseline')} (VQVAE_TARGET_CPU={os.environ.get('VQVAE_TARGET_CPU', 'native')})")
say(f"- command: `scripts/bench.sh` (each row: `vqvae bench --json`, timed steps after warm-up; the median of "
    f"{max(len(t) for t in trials.values())} rounds, every configuration and PyTorch's once per round; the last column lists every run)")
say("- model GFLOP/s: the operations of a direct convolution (MFLOP/image below); the 3x3 and 4x4 stride-2 "
    "layers run as Winograd convolutions with fewer multiply-adds, so efficiency per core can pass 100%\n")
say("| configuration | ranks | batch/rank | images/s | ms/step | forward | quantizer | backward | optimizer | comm wait | model GFLOP/s | sgemm GFLOP/s per core | efficiency per core | peak RSS MB per rank | images/s of each run |")
say("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, r in rows.items():
    config, ranks = name.rsplit("-", 1)
    per = r["per_rank"]
    mean = lambda k: sum(p[k] for p in per) / len(per)
    say(f"| {config} ({r['model']}, {r['model_gflop_per_image']*1000:.1f} MFLOP/image) | {ranks} | {r['batch_per_rank']} | "
        f"{r['images_per_second']:.1f} | {mean('ms_per_step'):.1f} | {mean('forward_ms'):.1f} | {mean('quantizer_ms'):.1f} | "
        f"{mean('backward_ms'):.1f} | {mean('optimizer_ms'):.1f} | {mean('communication_wait_ms'):.1f} | {r['model_gflops']:.1f} | "
        f"{r['sgemm_gflops_per_core']:.1f} | {100*r['efficiency_per_core']:.0f}% | {max(p['peak_rss_mb'] for p in per):.0f} | "
        f"{', '.join(f'{x:.1f}' for x in trials[name])} |")
say("")
for config in ("default32", "photos64", "mnist28"):
    if f"{config}-1" in rows and f"{config}-2" in rows:
        pairs = ", ".join(f"{b['images_per_second'] / a['images_per_second']:.2f}"
                          for a, b in zip(runs[config + "-1"], runs[config + "-2"]))
        say(f"{config}: 2 ranks / 1 rank = {rows[config+'-2']['images_per_second'] / rows[config+'-1']['images_per_second']:.2f}x "
            f"(medians; round by round: {pairs})  ")
summary = {"cpu": cpu, "short": short, "date": datetime.date.today().isoformat(), "blas": some["blas"],
           "instruction_set": some.get("instruction_set", "baseline"),
           "images_per_second": {name: r["images_per_second"] for name, r in rows.items()},
           "efficiency_per_core": {name: r["efficiency_per_core"] for name, r in rows.items()}}
if torch_rows:
    framework = next(iter(torch_rows.values()))["framework"]
    say("\n## PyTorch in the same rounds\n")
    say("`scripts/bench_pytorch.py`: the same model, loss, EMA quantizer and Adam, synthetic 32x32x3 images, "
        f"batch 32 per process, {framework}.\n")
    say("| PyTorch configuration | images/s (median) | ms/step | peak RSS MB per process | images/s of each run |")
    say("|---|---|---|---|---|")
    for name, r in torch_rows.items():
        processes, threads = (int(x) for x in name.split("x"))
        label = f"DistributedDataParallel, {processes} processes x {threads} thread" if processes > 1 else f"1 process, {threads} thread(s)"
        each = ", ".join(f"{x['images_per_second']:.1f}" for x in torch_runs[name])
        say(f"| {label} | {r['images_per_second']:.1f} | {r['ms_per_step']:.1f} | {r['peak_rss_mb']:.0f} | {each} |")
    # vqvae against PyTorch's best configuration on the same cores, round by round and by medians.
    say("\n| cores | vqvae images/s (median) | PyTorch's best on those cores (median) | ratio of medians | ratio round by round |")
    say("|---|---|---|---|---|")
    summary["pytorch"] = framework
    for cores, names in ((1, ["1x1"]), (2, ["1x2", "2x1"])):
        ours = runs.get(f"default32-{cores}")
        theirs = [torch_runs[n] for n in names if n in torch_runs]
        if not ours or not theirs:
            continue
        best = [max(round_[i]["images_per_second"] for round_ in theirs) for i in range(min(len(t) for t in theirs))]
        ratios = [a["images_per_second"] / b for a, b in zip(ours, best)]
        best_median = max(torch_rows[n]["images_per_second"] for n in names if n in torch_rows)
        mine = rows[f"default32-{cores}"]["images_per_second"]
        say(f"| {cores} | {mine:.1f} | {best_median:.1f} | {mine / best_median:.2f}x | {', '.join(f'{x:.2f}' for x in ratios)} "
            f"(median {statistics.median(ratios):.2f}) |")
        summary[f"pytorch_best_{cores}_core"] = best_median
        summary[f"ratio_{cores}_core"] = mine / best_median
        summary[f"ratio_{cores}_core_rounds"] = ratios
if first:
    say("\n## Time from launch to the first training step\n")
    say("50,000 uint8 32x32x3 images (`data/bench50k.h5`, gzip chunks of 64), default model, batch 32: "
        "from starting the command to rank 0 printing step 1, three trials.\n")
    say("| ranks | seconds |")
    say("|---|---|")
    for ranks, seconds in first.items():
        say(f"| {ranks} | {', '.join(f'{s:.2f}' for s in seconds)} |")
open(f"bench/results-{short}.md", "w").write("\n".join(out) + "\n")
json.dump(summary, open(f"bench/results-{short}.json", "w"), indent=1)
PY
python3 scripts/bench_summary.py > bench/results.md
cat "bench/results-$cpu_short.md" bench/results.md
