#!/usr/bin/env bash
# The mask-aware inpainter trained by `vqvae train` and by PyTorch (scripts/restoration_torch.py,
# the same model, data, masks, optimiser, schedule and batch) for the same wall-clock budget, one
# after the other on this machine, then both restoring the inpainting photos of the restoration
# benchmark (runs/restoration: run scripts/restoration_results.sh first, SKIP_MODELS=1 suffices).
# Prints a table of PSNR and SSIM per task (and per photo) for bench/restoration-torch.md.
#
# Environment: BUDGET (seconds per trainer, default 300), STEPS (the cosine's horizon, default
# 10000), HOLE_FILL (what the model reads in the missing pixels, zero or smooth; default smooth, as
# `--task inpaint`), TORCH_PY (default /opt/torchenv/bin/python: torch, numpy, h5py, Pillow, scikit-image),
# WORK (default runs/inpaint-torch). PyTorch runs as DDP 2 x 1 thread, its fastest form on 2 CPUs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUDGET=${BUDGET:-300}
STEPS=${STEPS:-10000}
HOLE_FILL=${HOLE_FILL:-smooth}
TORCH_PY=${TORCH_PY:-/opt/torchenv/bin/python}
WORK=${WORK:-runs/inpaint-torch}
BENCH=runs/restoration
DATA=$BENCH/data/photos-train-whole.h5
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for need in "$DATA" "$BENCH/damaged/inpaint-cells" "$BENCH/masks/inpaint-strokes" "$BENCH/clean"; do
    [ -e "$need" ] || { echo "inpaint_torch_compare: $need is missing (run scripts/restoration_results.sh first)" >&2; exit 1; }
done
[ -x .build/release/vqvae ] || swift build -c release
rm -rf "$WORK"
mkdir -p "$WORK/vqvae" "$WORK/torch"
cp .build/release/vqvae "$WORK/vqvae-bin"

R="--model ae --down 3 --residual --skips --mask-channel --hole-fill $HOLE_FILL --lr 2e-3 --lr-schedule cosine --warmup-steps 100
   --clip-grad-norm 0.05 --weight-ema 0.999 --corrupt holes:8 --crop 64 --crops-per-image 64 --augment dihedral
   --global-batch-size 32 --steps $STEPS"
read -r -a recipe <<< "$(echo $R)"
echo "recipe: ${recipe[*]}; budget ${BUDGET}s each; CPU: $(python3 scripts/cpu_name.py 2>/dev/null || uname -m)"

echo "vqvae: load before $(cut -d' ' -f1-3 /proc/loadavg)"
mpirun -np 2 --bind-to none "$WORK/vqvae-bin" train --data "$DATA" --out "$WORK/vqvae/run" "${recipe[@]}" \
    --time-budget "$BUDGET" --log-every 500 --checkpoint-every 0 > "$WORK/vqvae/train.log" 2>&1
echo "vqvae: load after $(cut -d' ' -f1-3 /proc/loadavg)"
tail -n 2 "$WORK/vqvae/train.log"
ckpt=$(ls "$WORK"/vqvae/run/checkpoints/step-*.h5 | sort | tail -n 1)

inputs=() outputs=() masks=()
for task in inpaint-cells inpaint-strokes; do
    mkdir -p "$WORK/vqvae/$task" "$WORK/torch/$task"
    for damaged in "$BENCH/damaged/$task"/*.png; do
        file=$(basename "$damaged")
        "$WORK/vqvae-bin" restore --checkpoint "$ckpt" --input "$damaged" --mask "$BENCH/masks/$task/$file" --whole \
            --out "$WORK/vqvae/$task/$file" > /dev/null 2>&1
        inputs+=("$damaged") outputs+=("$WORK/torch/$task/$file") masks+=("$BENCH/masks/$task/$file")
    done
done

echo "pytorch: load before $(cut -d' ' -f1-3 /proc/loadavg)"
"$TORCH_PY" scripts/restoration_torch.py --data "$DATA" "${recipe[@]}" --time-budget "$BUDGET" --log-every 500 \
    --ddp 2 --threads 1 --whole --restore "${inputs[@]}" --restore-out "${outputs[@]}" --mask "${masks[@]}" \
    > "$WORK/torch/train.log" 2>&1
grep -E "^(done|pytorch)" "$WORK/torch/train.log"

"$TORCH_PY" - "$WORK" "$BENCH" <<'EOF'
import os, sys
import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
work, bench = sys.argv[1:]
def load(path):
    return np.asarray(Image.open(path).convert("RGB"), np.float64) / 255
print("| task | trainer | PSNR (dB) | SSIM | per photo (dB) |")
print("| --- | --- | --- | --- | --- |")
for task in ("inpaint-cells", "inpaint-strokes"):
    files = sorted(os.listdir(os.path.join(bench, "damaged", task)))
    for trainer in ("vqvae", "torch"):
        scores = []
        for f in files:
            clean, out = load(os.path.join(bench, "clean", f)), load(os.path.join(work, trainer, task, f))
            scores.append((peak_signal_noise_ratio(clean, out, data_range=1),
                           structural_similarity(clean, out, channel_axis=-1, data_range=1, gaussian_weights=True,
                                                 sigma=1.5, use_sample_covariance=False)))
        print(f"| {task} | {trainer} | {np.mean([s[0] for s in scores]):.2f} | {np.mean([s[1] for s in scores]):.4f} | "
              + ", ".join(f"{s[0]:.2f}" for s in scores) + " |")
EOF
