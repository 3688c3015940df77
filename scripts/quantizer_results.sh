#!/usr/bin/env bash
# Compares the quantizers on held-out photo patches and writes bench/quantizers.md: the default
# VQ-VAE trained for the same number of steps (STEPS, default 1500, global batch 32, mpirun -np
# RANKS, default 2) with each quantizer, then `vqvae eval` on the 2,000 held-out 32x32 patches:
# PSNR, SSIM, codes used, perplexity, bits per code (log2 of the codes) and the training images/s.
# Work files in runs/quantizers/. Environment: STEPS, RANKS, QUANTIZERS (names from the table).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STEPS=${STEPS:-1500}
RANKS=${RANKS:-2}
WORK=runs/quantizers
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# name | flags (beside the default model: 512 codes of 64 dimensions, EMA codebook, k-means start)
TABLE=(
  "vq            | "
  "vq-rotation   | --rotation-trick"
  "cosine        | --quantizer cosine"
  "vq-dim8       | --codebook-dim 8"
  "rvq-2         | --codebooks 2"
  "fsq-8-8-8     | --quantizer fsq --levels 8,8,8"
  "fsq-8-5-5-5   | --quantizer fsq --levels 8,5,5,5"
)
QUANTIZERS=${QUANTIZERS:-}

[ -x .build/release/vqvae ] || swift build -c release
mkdir -p "$WORK"
BIN=$WORK/vqvae
cp .build/release/vqvae "$BIN"
[ -f data/photos32-train.h5 ] || python3 scripts/prepare_data.py photos --out data

trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; s=${s%"${s##*[![:space:]]}"}; printf '%s' "$s"; }
: > "$WORK/rows.tsv.new"
[ -f "$WORK/rows.tsv" ] && [ -n "$QUANTIZERS" ] && cp "$WORK/rows.tsv" "$WORK/rows.tsv.new"
for line in "${TABLE[@]}"; do
    IFS='|' read -r name flags <<< "$line"
    name=$(trim "$name"); flags=$(trim "$flags")
    if [ -n "$QUANTIZERS" ] && [[ ",$QUANTIZERS," != *",$name,"* ]]; then continue; fi
    out="$WORK/$name"
    rm -rf "$out"
    read -r -a f <<< "$flags"
    echo "quantizers: training $name ($STEPS steps)" >&2
    before=$(cut -d' ' -f1 /proc/loadavg)
    mpirun -np "$RANKS" --bind-to none "$BIN" train --data data/photos32-train.h5 --out "$out" --steps "$STEPS" \
        --global-batch-size 32 --lr 1e-3 --log-every 100 --checkpoint-every 0 --seed 1 ${f[@]+"${f[@]}"} > "$out.log" 2>&1 \
        || { tail -n 20 "$out.log" >&2; exit 1; }
    after=$(cut -d' ' -f1 /proc/loadavg)
    ckpt=$(ls "$out"/checkpoints/step-*.h5 | tail -n 1)
    "$BIN" eval --checkpoint "$ckpt" --data data/photos32-test.h5 --json > "$out.eval.json"
    seconds=$(grep -o 'done: [0-9]* steps in [0-9.]* s ([0-9.]* img/s)' "$out.log" | sed -E 's/.* in ([0-9.]+) s \(([0-9.]+) img.*/\1 \2/')
    grep -v "^$name	" "$WORK/rows.tsv.new" > "$WORK/rows.tmp" || true
    mv "$WORK/rows.tmp" "$WORK/rows.tsv.new"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$flags" "$seconds" "$before / $after" "$ckpt" "$(tr -d '\n' < "$out.eval.json")" >> "$WORK/rows.tsv.new"
done
mv "$WORK/rows.tsv.new" "$WORK/rows.tsv"

python3 - "$WORK/rows.tsv" "$STEPS" "$RANKS" <<'EOF'
import json, math, subprocess, sys, datetime
import h5py
rows_path, steps, ranks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
fam = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("cpu family")), "?")
mod = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model\t")), "?")
lines = ["# Quantizers on held-out photo patches", "",
         "Made by `scripts/quantizer_results.sh`: the default VQ-VAE (hidden 128, 2 residual blocks, `--down 2`, "
         "latent 8x8 per 32x32 patch) with each quantizer, trained on `data/photos32-train.h5` "
         f"for {steps} steps of 32 patches (`--lr 1e-3`, seed 1) under `mpirun -np {ranks}`, then `vqvae eval` on the "
         "2,000 held-out patches of `data/photos32-test.h5` (8-bit PSNR and SSIM; codes used, perplexity over those "
         "patches). Bits per code = log2 of the number of codes (what `encode` stores: ceil of it); with residual VQ "
         "(`--codebooks N`) a position's N codes, N log2 K bits, and codes used and perplexity count all "
         "codebooks' codes together.", "",
         f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
         f"- CPU: {cpu} (family {fam}, model {mod}), {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} logical CPUs; "
         "images/s is the whole run's average and moves with the machine's load (1-minute load before / after beside it)", "",
         "| quantizer | flags | PSNR (dB) | SSIM | codes used | perplexity | bits per code | images/s | load |",
         "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
for row in open(rows_path):
    name, flags, seconds, load, checkpoint, report = row.rstrip("\n").split("\t", 5)
    r = json.loads(report)
    with h5py.File(checkpoint, "r") as f:
        model = json.loads(f.attrs["config"])["model"]
    # Residual VQ: a position has one code per codebook, counted together ("of N*K").
    levels = model.get("codebooks", 1) if model.get("quantizer", "vq") == "vq" else 1
    codes = model["codes"] * levels
    used, perplexity = r["codes_used"], r["perplexity"]
    ips = seconds.split()[1] if len(seconds.split()) == 2 else "?"
    lines.append(f"| {name} | `{flags or '(default)'}` | {r['psnr']:.2f} | {r['ssim']:.4f} | {used} of {codes} | "
                 f"{perplexity:.1f} | {levels * math.log2(model['codes']):.2f} | {ips} | {load} |")
open("bench/quantizers.md", "w").write("\n".join(lines) + "\n")
print("wrote bench/quantizers.md")
EOF
