#!/usr/bin/env bash
# Restoration and compression results on held-out photos; writes bench/restoration.md and
# bench/restoration.json, work files under runs/restoration/.
#
# Trains nine models with the same wall-clock budget each (tasks denoise / inpaint / compress x
# models vqvae / vae / ae) on 32x32 patches of the TRAIN photos (40,000 patches drawn from each
# photo at full size, half and 0.35 of it, since the test photos are downscaled; restoration
# models with --down 1, compression models with the default --down 2), then restores the damaged TEST
# photos with `vqvae restore`, compresses them with `vqvae encode`/`decode` (and `vqvae eval
# --recon-out` for the AE and VAE), and compares with scikit-image's non-local means, TV
# denoising and biharmonic inpainting and with Pillow's JPEG (scripts/restoration_results.py).
#
# Models restore with `vqvae restore --ensemble` (the image and its seven mirrored and rotated
# copies, averaged).
#
# Environment: BUDGET (seconds of training per model, default 300), RANKS (mpirun -np, default 2),
# SKIP_TRAIN=1 (reuse the checkpoints already in runs/restoration/), SKIP_BASELINES=1 (reuse the
# photos, damaged copies and classical baselines already there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUDGET=${BUDGET:-300}
RANKS=${RANKS:-2}
SKIP_TRAIN=${SKIP_TRAIN:-0}
SKIP_BASELINES=${SKIP_BASELINES:-0}
WORK=runs/restoration
BUILT=.build/release/vqvae
BIN=$WORK/bin/vqvae  # a copy taken at the start, so a rebuild meanwhile cannot mix two binaries
PY=scripts/restoration_results.py
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

[ -x "$BUILT" ] || swift build -c release
# scikit-image's estimate_sigma (non-local means baseline) needs PyWavelets.
python3 -c "import h5py, numpy, skimage, sklearn, matplotlib, PIL, pywt" 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check h5py numpy scikit-image scikit-learn \
        matplotlib pillow PyWavelets
TRAIN=$WORK/data/photos32-train.h5
SCALES=1,0.5,0.35
[ -f "$TRAIN" ] || python3 scripts/prepare_data.py photos --out "$WORK/data" --train-scales "$SCALES" \
    --train-patches 40000

mkdir -p "$WORK/bin"
cp "$BUILT" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
"$BIN" --help > /dev/null
described="$BIN: copy of $BUILT ($(date -r "$BUILT" -u +%Y-%m-%dT%H:%M:%SZ)), sha256 $(sha256sum "$BIN" | cut -c1-16)"
if [ "$SKIP_TRAIN" != 1 ]; then
    echo "$described" > "$WORK/binary.txt"
else
    # The checkpoints were trained by the binary already named there.
    trained_by=$(head -n 1 "$WORK/binary.txt" 2>/dev/null | sed 's/ (training);.*$//')
    echo "$trained_by (training); $described (restoration, compression, evaluation)" > "$WORK/binary.txt.new"
    mv "$WORK/binary.txt.new" "$WORK/binary.txt"
fi
commands="$WORK/commands.txt"
if [ "$SKIP_TRAIN" != 1 ]; then
    : > "$commands"
else
    # Keep the training commands of the run that made the checkpoints.
    grep -E "^BUDGET=| train " "$commands" > "$commands.kept" 2>/dev/null || true
    mv "$commands.kept" "$commands"
fi
printf "BUDGET=%s RANKS=%s SKIP_TRAIN=%s SKIP_BASELINES=%s bash scripts/restoration_results.sh   # which runs:\n" \
    "$BUDGET" "$RANKS" "$SKIP_TRAIN" "$SKIP_BASELINES" >> "$commands"
log() { echo "restoration: $*" >&2; }
record() { printf '%s\n' "$*" >> "$commands"; }

# Held-out photos, damaged copies, masks, tiles; classical baselines.
rm -rf "$WORK"/restored_* "$WORK"/compress_*
if [ "$SKIP_BASELINES" != 1 ]; then
    rm -rf "$WORK"/clean "$WORK"/damaged_* "$WORK"/masks "$WORK"/tiles "$WORK"/baseline_*
    record "python3 $PY prepare --work $WORK"
    python3 "$PY" prepare --work "$WORK"
    record "python3 $PY baselines --work $WORK"
    python3 "$PY" baselines --work "$WORK"
fi

checkpoint() {  # run folder -> newest checkpoint
    local newest
    newest=$(ls "$1"/checkpoints/step-*.h5 2>/dev/null | sort | tail -n 1)
    [ -n "$newest" ] || { log "no checkpoint in $1/checkpoints"; exit 1; }
    echo "$newest"
}

# Training: the same budget for every model.
if [ "$SKIP_TRAIN" != 1 ]; then
    : > "$WORK/load.txt"
    for task in denoise inpaint compress; do
        case $task in
            denoise) corrupt=(--corrupt noise:0.1 --down 1) ;;
            inpaint) corrupt=(--corrupt mask:0.25 --down 1) ;;
            compress) corrupt=() ;;
        esac
        for model in vqvae vae ae; do
            case $model in
                vqvae) extra=(--kmeans-init --dead-code-threshold 1) ;;
                vae) extra=(--kl-weight 0.001) ;;
                ae) extra=() ;;
            esac
            out="$WORK/$task-$model"
            rm -rf "$out"
            cmd=(mpirun -np "$RANKS" --bind-to none "$BIN" train --model "$model" --data "$TRAIN"
                 --out "$out" --steps 10000000 --time-budget "$BUDGET" --global-batch-size 32 --lr 1e-3
                 --log-every 200 --checkpoint-every 0 ${corrupt[@]+"${corrupt[@]}"} ${extra[@]+"${extra[@]}"})
            record "${cmd[*]}"
            log "training $task-$model for ${BUDGET}s"
            before=$(cut -d' ' -f1-3 /proc/loadavg)
            mkdir -p "$out"
            "${cmd[@]}" > "$out/train.log" 2>&1 || { tail -n 20 "$out/train.log" >&2; exit 1; }
            echo "$task-$model: before: $before | after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$WORK/load.txt"
            tail -n 2 "$out/train.log" >&2
        done
    done
fi

# Restoration of the damaged held-out photos.
for task in denoise inpaint; do
    for model in vqvae vae ae; do
        ckpt=$(checkpoint "$WORK/$task-$model")
        cmd=("$BIN" restore --checkpoint "$ckpt" --input "$WORK/damaged_$task" --out "$WORK/restored_${task}_$model" --ensemble)
        record "${cmd[*]}"
        mkdir -p "$WORK/restored_${task}_$model"
        "${cmd[@]}"
    done
done

# Compression of the clean held-out photos, tile by tile.
vq=$(checkpoint "$WORK/compress-vqvae")
mkdir -p "$WORK/compress_vqvae" "$WORK/compress_vae" "$WORK/compress_ae"
first=1
for tiles in "$WORK"/tiles/*.h5; do
    stem=$(basename "$tiles" .h5)
    enc=("$BIN" encode --checkpoint "$vq" --data "$tiles" --out "$WORK/compress_vqvae/$stem-codes.h5")
    dec=("$BIN" decode --codes "$WORK/compress_vqvae/$stem-codes.h5" --out "$WORK/compress_vqvae/$stem-decoded.h5")
    [ $first = 1 ] && record "${enc[*]}" && record "${dec[*]}"
    "${enc[@]}" > /dev/null
    "${dec[@]}" > /dev/null
    for model in vae ae; do
        ckpt=$(checkpoint "$WORK/compress-$model")
        ev=("$BIN" eval --checkpoint "$ckpt" --data "$tiles" --recon-out "$WORK/compress_$model/$stem-recon.h5" --json)
        [ $first = 1 ] && record "${ev[*]} > $WORK/compress_$model/$stem-eval.json"
        "${ev[@]}" > "$WORK/compress_$model/$stem-eval.json"
    done
    first=0
done
record "(encode/decode/eval repeated for every photo's tiles in $WORK/tiles/)"
record "python3 $PY report --work $WORK --budget $BUDGET --ranks $RANKS"

mkdir -p bench
python3 "$PY" report --work "$WORK" --budget "$BUDGET" --ranks "$RANKS"
