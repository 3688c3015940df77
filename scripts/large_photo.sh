#!/usr/bin/env bash
# Time and peak memory of `vqvae restore` on one 12-megapixel photo: scikit-learn's flower.jpg
# upscaled to 4000x3000 with Pillow's LANCZOS, Gaussian noise of sigma 0.1 added with numpy (seed
# 1), clipped and saved as an 8-bit PNG; then restored with CHECKPOINT under each setting of
# --noise-consistency in SETTINGS (default "off auto"), one thread, measured with /usr/bin/time -v.
# Prints a Markdown table for bench/large-photo.md; work files in runs/large-photo/.
#
#   CHECKPOINT=runs/restoration/train/blind-tone-black-more/checkpoints/step-00007330.h5 bash scripts/large_photo.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${CHECKPOINT:?CHECKPOINT=path of a vqvae checkpoint}"
[ -f "$CHECKPOINT" ] || { echo "large_photo.sh: CHECKPOINT $CHECKPOINT: no such file" >&2; exit 1; }
SETTINGS=${SETTINGS:-off auto}
WORK=runs/large-photo
BIN=.build/release/vqvae
[ -x "$BIN" ] || { echo "large_photo.sh: build first: swift build -c release" >&2; exit 1; }
mkdir -p "$WORK"
if [ ! -f "$WORK/big-noisy.png" ]; then
    python3 - "$WORK" <<'EOF'
import sys
import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_image
work = sys.argv[1]
clean = Image.fromarray(load_sample_image("flower.jpg")).resize((4000, 3000), Image.LANCZOS)
clean.save(f"{work}/big-clean.png")
x = np.asarray(clean).astype(np.float64) / 255
noisy = np.clip(x + np.random.default_rng(1).normal(0, 0.1, x.shape), 0, 1)
Image.fromarray(np.rint(noisy * 255).astype(np.uint8)).save(f"{work}/big-noisy.png")
EOF
fi
echo "| \`--noise-consistency\` | wall-clock time | peak resident memory | PSNR (dB) | worst channel mean shift (of 255) |"
echo "| --- | --- | --- | --- | --- |"
for setting in $SETTINGS; do
    out="$WORK/big-restored-$setting.png"
    /usr/bin/time -v "$BIN" restore --checkpoint "$CHECKPOINT" --input "$WORK/big-noisy.png" --out "$out" --force \
        --noise-consistency "$setting" --threads 1 > "$WORK/restore-$setting.log" 2> "$WORK/time-$setting.txt"
    seconds=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s}' "$WORK/time-$setting.txt")
    kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time-$setting.txt")
    score=$(python3 - "$WORK/big-clean.png" "$out" <<'EOF'
import sys
import numpy as np
from PIL import Image
c = np.asarray(Image.open(sys.argv[1])).astype(np.float64)
r = np.asarray(Image.open(sys.argv[2])).astype(np.float64)
print(f"{10 * np.log10(255 ** 2 / np.mean((c - r) ** 2)):.2f} | {np.abs((r - c).mean((0, 1))).max():.2f}")
EOF
)
    echo "| $setting | $seconds s | $((kb / 1024)) MB | $score |"
done
