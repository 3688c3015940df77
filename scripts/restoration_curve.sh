#!/usr/bin/env bash
# Quality against training time for one recipe of scripts/restoration_results.sh that kept
# intermediate checkpoints (CHECKPOINT_EVERY=N): every checkpoint in
# runs/restoration/train/RECIPE/checkpoints restores the recipe's damaged held-out photos (with the
# masks, and the recipe's restore flags), and bench/restoration-curve-RECIPE.md gets the mean PSNR per
# task against the step and the training seconds at that step (from metrics.jsonl), beside the
# best classical method of each task.
#   bash scripts/restoration_curve.sh RECIPE
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RECIPE=${1:?usage: restoration_curve.sh RECIPE}
WORK=runs/restoration
BIN=$WORK/bin/vqvae
line=$(grep "^$RECIPE	" "$WORK/recipes.tsv") || { echo "no recipe $RECIPE in $WORK/recipes.tsv" >&2; exit 1; }
# (cut, not read: tabs are whitespace to read, which would merge an empty field with the next)
tasks=$(printf '%s\n' "$line" | cut -f2)
rflags=$(printf '%s\n' "$line" | cut -f5)
read -r -a rf <<< "$rflags"
IFS=',' read -r -a ts <<< "$tasks"
out=$WORK/curve/$RECIPE
rm -rf "$out"
: > "$WORK/curve-$RECIPE.tsv"
for ckpt in "$WORK/train/$RECIPE"/checkpoints/step-*.h5; do
    step=$(basename "$ckpt" .h5); step=$((10#${step#step-}))
    for task in "${ts[@]}"; do
        dest=$out/$step/$task
        mkdir -p "$dest"
        for damaged in "$WORK/damaged/$task"/*.png; do
            file=$(basename "$damaged")
            cmd=("$BIN" restore --checkpoint "$ckpt" --input "$damaged" --out "$dest/$file")
            [ -f "$WORK/masks/$task/$file" ] && cmd+=(--mask "$WORK/masks/$task/$file")
            "${cmd[@]}" ${rf[@]+"${rf[@]}"} > /dev/null
        done
        printf '%s\t%s\n' "$step" "$task" >> "$WORK/curve-$RECIPE.tsv"
    done
    echo "curve: $RECIPE step $step" >&2
done
python3 - "$RECIPE" "$WORK" <<'EOF'
import json, os, sys
import numpy as np
from PIL import Image
recipe, work = sys.argv[1], sys.argv[2]
done = [l.rstrip("\n").split("\t") for l in open(f"{work}/curve-{recipe}.tsv")]
tasks = sorted({t for _, t in done}, key=[t for _, t in done].index)
steps = sorted({int(s) for s, _ in done})
elapsed = {}
for line in open(f"{work}/train/{recipe}/metrics.jsonl"):
    r = json.loads(line)
    if "elapsed_seconds" in r:
        elapsed[r["step"]] = r["elapsed_seconds"]
def seconds(step):
    known = sorted(elapsed)
    if not known:
        return float("nan")
    after = [s for s in known if s >= step]
    s = after[0] if after else known[-1]
    return elapsed[s] * step / s if s else 0.0
def psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b) ** 2))
report = json.load(open("bench/restoration.json"))["results"]
best = {t: max((r for r in report.get(t, []) if r.get("type") == "classical"), key=lambda r: r["psnr"], default=None) for t in tasks}
rows = []
for step in steps:
    cells = []
    for task in tasks:
        values = []
        for name in sorted(os.listdir(f"{work}/curve/{recipe}/{step}/{task}")):
            clean = np.asarray(Image.open(f"{work}/clean/{name}").convert("RGB"))
            values.append(psnr(np.asarray(Image.open(f"{work}/curve/{recipe}/{step}/{task}/{name}").convert("RGB")), clean))
        cells.append(f"{np.mean(values):.2f}")
    rows.append(f"| {step} | {seconds(step):.0f} | " + " | ".join(cells) + " |")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = [f"# PSNR against training time: `{recipe}`", "",
         f"Made by `scripts/restoration_curve.sh {recipe}` from the checkpoints `scripts/restoration_results.sh` kept "
         f"(`CHECKPOINT_EVERY`), on the same whole held-out photos, damage and masks as "
         f"[restoration.md](restoration.md) (mean PSNR over the six photos, dB). Training seconds are the run's own "
         f"(`metrics.jsonl`, interpolated to the checkpoint's step), on {cpu} with 2 logical CPUs shared with other work.", "",
         "| step | training s | " + " | ".join(tasks) + " |", "| --- | --- | " + " | ".join("---" for _ in tasks) + " |"] + rows
lines += ["| best classical | | " + " | ".join(f"{best[t]['row']} {best[t]['psnr']:.2f}" if best[t] else "" for t in tasks) + " |"]
open(f"bench/restoration-curve-{recipe}.md", "w").write("\n".join(lines) + "\n")
print(f"wrote bench/restoration-curve-{recipe}.md")
EOF
