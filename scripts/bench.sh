#!/usr/bin/env bash
# Runs the standard benchmark configurations with `vqvae bench` and writes bench/results.md:
# the default model at 32x32x3 (batch 32 per rank, 1 and 2 ranks, synthetic images), 64x64 photo
# patches and MNIST 28x28x1 (real data), with the machine's CPU model and the date.
# Environment: STEPS (timed steps, default 30), WARMUP (default 5).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STEPS=${STEPS:-30}
WARMUP=${WARMUP:-5}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

bash scripts/install_dependencies.sh
swift build -c release
[ -f data/photos64-train.h5 ] || python3 scripts/prepare_data.py photos64 --out data
[ -f data/mnist-train.h5 ] || python3 scripts/prepare_data.py mnist --out data

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
run() {  # name ranks bench-arguments...
    local name=$1 ranks=$2; shift 2
    echo "bench: $name ($ranks rank(s))" >&2
    mpirun -np "$ranks" --bind-to core .build/release/vqvae bench --json --steps "$STEPS" --warmup "$WARMUP" "$@" \
        > "$results/$name-$ranks.json"
}
run default32 1 --batch 32
run default32 2 --batch 32
run photos64 1 --batch 32 --data data/photos64-train.h5
run photos64 2 --batch 32 --data data/photos64-train.h5
run mnist28 1 --batch 32 --data data/mnist-train.h5
run mnist28 2 --batch 32 --data data/mnist-train.h5

mkdir -p bench
python3 - "$results" > bench/results.md <<'PY'
import glob, json, os, platform, subprocess, sys, datetime
rows = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    name = os.path.basename(path)[:-5]
    rows[name] = json.load(open(path))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
print("# vqvae bench results\n")
print(f"- date: {datetime.date.today().isoformat()}")
print(f"- CPU: {cpu}, {os.cpu_count()} logical CPUs")
print(f"- BLAS kernel: {next(iter(rows.values()))['blas']}; one BLAS thread per rank; `mpirun --bind-to core`")
print(f"- command: `scripts/bench.sh` (each row: `vqvae bench --json`, timed steps after warm-up)\n")
print("| configuration | ranks | batch/rank | images/s | ms/step | forward | quantizer | backward | optimizer | comm wait | model GFLOP/s | sgemm GFLOP/s per core | efficiency per core | peak RSS MB per rank |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, r in rows.items():
    config, ranks = name.rsplit("-", 1)
    per = r["per_rank"]
    mean = lambda k: sum(p[k] for p in per) / len(per)
    print(f"| {config} ({r['model']}, {r['model_gflop_per_image']*1000:.1f} MFLOP/image) | {ranks} | {r['batch_per_rank']} | "
          f"{r['images_per_second']:.1f} | {mean('ms_per_step'):.1f} | {mean('forward_ms'):.1f} | {mean('quantizer_ms'):.1f} | "
          f"{mean('backward_ms'):.1f} | {mean('optimizer_ms'):.1f} | {mean('communication_wait_ms'):.1f} | {r['model_gflops']:.1f} | "
          f"{r['sgemm_gflops_per_core']:.1f} | {100*r['efficiency_per_core']:.0f}% | {max(p['peak_rss_mb'] for p in per):.0f} |")
for config in ("default32", "photos64", "mnist28"):
    if f"{config}-1" in rows and f"{config}-2" in rows:
        print(f"\n{config}: 2 ranks / 1 rank = {rows[config+'-2']['images_per_second'] / rows[config+'-1']['images_per_second']:.2f}x", end="")
print()
PY
cat bench/results.md
