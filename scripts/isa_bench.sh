#!/usr/bin/env bash
# What the Swift code's instruction set is worth on this machine: builds the same source for the
# machine's own CPU (`native`), for haswell (AVX2 and FMA: the choice for a cluster whose nodes all
# have them, which every AMD Zen does too) and for the x86-64 baseline (`generic`, SSE2), then runs
# `vqvae bench` (default model, one rank) with each, alternating with PyTorch on one thread, ROUNDS
# times; on an AVX-512 machine, the haswell build against PyTorch both held to AVX2; the one-step
# check against PyTorch with each build; and, where `perf` works, one native run's time split
# between OpenBLAS and our own code.
# Writes bench/instruction-set-CPU.md (CPU: zen3, zen4, zen5, ... from scripts/cpu_name.py).
# Environment: ROUNDS (default 5), STEPS (30), WARMUP (5), TORCH_PYTHON (/opt/torchenv/bin/python).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROUNDS=${ROUNDS:-5}
STEPS=${STEPS:-30}
WARMUP=${WARMUP:-5}
TORCH_PYTHON=${TORCH_PYTHON:-/opt/torchenv/bin/python}
[ "$(uname -m)" = x86_64 ] || { echo "isa_bench: compares x86-64 builds; this machine is $(uname -m)" >&2; exit 1; }
bash scripts/install_dependencies.sh
declare -A scratch=([native]=.build [haswell]=.build-haswell [generic]=.build-generic)
builds=(native haswell generic)
for b in "${builds[@]}"; do
    echo "isa_bench: building $b" >&2
    VQVAE_TARGET_CPU=$b swift build -c release --scratch-path "${scratch[$b]}" >&2
done
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
torch=0
"$TORCH_PYTHON" -c "import torch" 2>/dev/null && torch=1
for round in $(seq 1 "$ROUNDS"); do
    for b in "${builds[@]}"; do
        echo "isa_bench: round $round, $b" >&2
        "${scratch[$b]}/release/vqvae" bench --json --steps "$STEPS" --warmup "$WARMUP" > "$results/$b~$round.json"
    done
    if [ "$torch" = 1 ]; then
        echo "isa_bench: round $round, PyTorch" >&2
        "$TORCH_PYTHON" scripts/bench_pytorch.py --threads 1 --batch 32 --steps "$STEPS" --warmup "$WARMUP" \
            2>/dev/null | tail -1 > "$results/pytorch~$round.torch"
    fi
done
# On an AVX-512 machine, the same comparison as an AVX2 machine would see it: our haswell build
# with OpenBLAS's Haswell kernels against PyTorch held to AVX2 (ATen's kernels, oneDNN, MKL).
if grep -qw avx512f /proc/cpuinfo && [ "$torch" = 1 ]; then
    for round in $(seq 1 "$ROUNDS"); do
        echo "isa_bench: round $round, AVX2 only" >&2
        OPENBLAS_CORETYPE=Haswell VQVAE_NO_REEXEC=1 OPENBLAS_NUM_THREADS=1 .build-haswell/release/vqvae bench --json \
            --steps "$STEPS" --warmup "$WARMUP" > "$results/avx2-haswell~$round.json"
        ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 "$TORCH_PYTHON" scripts/bench_pytorch.py \
            --threads 1 --batch 32 --steps "$STEPS" --warmup "$WARMUP" 2>/dev/null | tail -1 > "$results/avx2-pytorch~$round.torch"
    done
fi
# The one-step check against PyTorch (scripts/check_against_pytorch.py) with each build: the same
# assertions pass whatever the instruction set.
if [ "$torch" = 1 ]; then
    [ -f data/photos32-train.h5 ] || python3 scripts/prepare_data.py photos --out data >&2
    for b in "${builds[@]}"; do
        echo "isa_bench: PyTorch check, $b" >&2
        for steps in 0 1; do
            "${scratch[$b]}/release/vqvae" train --data data/photos32-train.h5 --out "$results/check-$b-$steps" \
                --no-shuffle --codebook-init sonnet --steps "$steps" > /dev/null
        done
        if "$TORCH_PYTHON" scripts/check_against_pytorch.py --data data/photos32-train.h5 \
            --initial "$results/check-$b-0/checkpoints/step-00000000.h5" \
            --after "$results/check-$b-1/checkpoints/step-00000001.h5" > "$results/check-$b.txt" 2>&1; then
            echo passed >> "$results/check-$b.txt"
        else
            echo failed >> "$results/check-$b.txt"
        fi
    done
fi
# The profile: one native run under perf's software clock (hardware counters are often missing in
# virtual machines), --prefetch 0 so that the data loader's thread does not mix in.
if command -v perf > /dev/null && perf record -e cpu-clock -o "$results/probe.data" true 2>/dev/null; then
    perf record -e cpu-clock -F 2000 -o "$results/perf.data" .build/release/vqvae bench --steps 40 --warmup 5 --prefetch 0 \
        > /dev/null 2>&1
    perf report -i "$results/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null > "$results/perf.txt" || true
fi
IFS=$'\t' read -r cpu_short cpu_text < <(python3 scripts/cpu_name.py)
python3 - "$results" "$cpu_short" "$cpu_text" "$ROUNDS" > "bench/instruction-set-$cpu_short.md" <<'PY'
import glob, json, os, re, statistics, sys, datetime
folder, short, cpu, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
builds = ["native", "haswell", "generic"]
runs = {b: [json.load(open(os.path.join(folder, f"{b}~{r}.json"))) for r in range(1, rounds + 1)] for b in builds}
torch = [json.loads(open(p).read()) for p in sorted(glob.glob(os.path.join(folder, "pytorch~*.torch"))) if open(p).read().strip()]
print(f"# Instruction set of the Swift code: {cpu}\n")
print(f"- date: {datetime.date.today().isoformat()}; BLAS kernel: {runs['native'][0]['blas']}, one thread")
for b in builds:
    print(f"- `VQVAE_TARGET_CPU={b}`: built for {runs[b][0].get('instruction_set', 'baseline')}")
print(f"- command: `scripts/isa_bench.sh`: `vqvae bench --steps 30 --warmup 5` (default model, 32x32x3, batch 32, one rank)"
      f" with each build, then PyTorch on one thread (`scripts/bench_pytorch.py --threads 1`), {rounds} rounds\n")
header = "| round | " + " | ".join(f"{b} images/s" for b in builds) + (" | PyTorch 1 thread images/s |" if torch else " |")
print(header)
print("|" + "---|" * (len(header.split("|")) - 2))
for r in range(rounds):
    cells = [f"{runs[b][r]['images_per_second']:.1f}" for b in builds] + ([f"{torch[r]['images_per_second']:.1f}"] if torch else [])
    print(f"| {r + 1} | " + " | ".join(cells) + " |")
medians = {b: statistics.median(x["images_per_second"] for x in runs[b]) for b in builds}
cells = [f"{medians[b]:.1f}" for b in builds]
if torch:
    medians["torch"] = statistics.median(x["images_per_second"] for x in torch)
    cells.append(f"{medians['torch']:.1f}")
print("| median | " + " | ".join(cells) + " |\n")
for b in builds[1:]:
    pairs = [a["images_per_second"] / c["images_per_second"] for a, c in zip(runs["native"], runs[b])]
    print(f"native / {b}: {medians['native'] / medians[b]:.2f}x (medians; round by round {', '.join(f'{x:.2f}' for x in pairs)})  ")
if torch:
    for b in builds:
        pairs = [a["images_per_second"] / t["images_per_second"] for a, t in zip(runs[b], torch)]
        print(f"{b} / PyTorch 1 thread: {medians[b] / medians['torch']:.2f}x (round by round median {statistics.median(pairs):.2f})  ")
avx2 = sorted(glob.glob(os.path.join(folder, "avx2-haswell~*.json")))
if avx2:
    ours = [json.load(open(os.path.join(folder, f"avx2-haswell~{r}.json"))) for r in range(1, rounds + 1)]
    theirs = [json.loads(open(os.path.join(folder, f"avx2-pytorch~{r}.torch")).read()) for r in range(1, rounds + 1)]
    print("\n## Both held to AVX2 on this machine\n")
    print("What an AVX2 machine would compare: the haswell build with OpenBLAS's Haswell kernels "
          "(`OPENBLAS_CORETYPE=Haswell`) against PyTorch with `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 "
          "MKL_ENABLE_INSTRUCTIONS=AVX2`, one core, alternating.\n")
    print("| round | haswell build images/s | PyTorch (AVX2) images/s | ratio |")
    print("|---|---|---|---|")
    ratios = []
    for r, (a, t) in enumerate(zip(ours, theirs)):
        ratios.append(a["images_per_second"] / t["images_per_second"])
        print(f"| {r + 1} | {a['images_per_second']:.1f} | {t['images_per_second']:.1f} | {ratios[-1]:.2f} |")
    ma = statistics.median(x["images_per_second"] for x in ours)
    mt = statistics.median(x["images_per_second"] for x in theirs)
    print(f"| median | {ma:.1f} | {mt:.1f} | {ma / mt:.2f} (round by round {statistics.median(ratios):.2f}) |")
    print(f"\nsgemm per core measured by the haswell build with Haswell kernels: "
          f"{statistics.median(x['sgemm_gflops_per_core'] for x in ours):.1f} GFLOP/s; its efficiency per core "
          f"{100 * statistics.median(x['efficiency_per_core'] for x in ours):.0f}%")
    # For bench/results.md (scripts/bench_summary.py): the AVX2 comparison of this machine.
    json.dump({"cpu": cpu, "short": short, "date": datetime.date.today().isoformat(),
               "vqvae_avx2": ma, "pytorch_avx2": mt, "ratio": ma / mt, "ratio_rounds": ratios,
               "efficiency_per_core": statistics.median(x["efficiency_per_core"] for x in ours)},
              open(f"bench/instruction-set-{short}.json", "w"), indent=1)
checks = {b: open(os.path.join(folder, f"check-{b}.txt")).read().split("\n") for b in builds
          if os.path.exists(os.path.join(folder, f"check-{b}.txt"))}
if checks:
    print("\n## The one-step check against PyTorch with each build\n")
    print("`scripts/check_against_pytorch.py` after one training step on `data/photos32-train.h5` (default VQ-VAE, "
          "`--codebook-init sonnet --no-shuffle`); tolerances 1e-4 (gradients, statistics) and 1e-3 (parameters after Adam).\n")
    print("| build | result | largest relative differences |")
    print("|---|---|---|")
    for b, lines in checks.items():
        verdict = next((l for l in reversed(lines) if l in ("passed", "failed")), "?")
        summary = next((l for l in lines if l.startswith("largest relative difference")), "")
        print(f"| {b} | {verdict} | {summary} |")
perf = os.path.join(folder, "perf.txt")
if os.path.exists(perf):
    shares = {}
    for line in open(perf):
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[.\]\s+(\S+)", line)
        if not m:
            continue
        share, dso, symbol = float(m.group(1)), m.group(2), m.group(3)
        if "openblas" in dso:
            group = ("OpenBLAS sgemm kernel" if "kernel" in symbol else
                     "OpenBLAS packing" if "copy" in symbol else "OpenBLAS other")
        elif dso == "vqvae":
            group = ("Winograd products" if "WinogradProducts" in symbol else
                     "Winograd transforms" if "Winograd" in symbol else
                     "Adam" if "Adam" in symbol else "our other code")
        else:
            group = "libc, kernel, other"
        shares[group] = shares.get(group, 0) + share
    order = ["OpenBLAS sgemm kernel", "OpenBLAS packing", "OpenBLAS other", "Winograd products", "Winograd transforms",
             "Adam", "our other code", "libc, kernel, other"]
    print("\n## Where the native build's time goes\n")
    print("One rank, `perf record -e cpu-clock`, 40 steps, `--prefetch 0`; shares of all samples.\n")
    print("| " + " | ".join(order) + " |")
    print("|" + "---|" * len(order))
    print("| " + " | ".join(f"{shares.get(g, 0):.1f}%" for g in order) + " |")
PY
cat "bench/instruction-set-$cpu_short.md"
