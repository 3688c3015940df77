#!/usr/bin/env bash
# The compression benchmark (bench/codec.md): trains the VQ-VAEs of the rate ladder and their
# priors under `mpirun -np 2` (skipped when their checkpoints exist), compresses every whole
# held-out photo at every number of codebooks with `vqvae compress`, decompresses it, and writes the
# rate-distortion report against Pillow's JPEG, WebP, JPEG 2000 and AVIF (scripts/codec_results.py).
#
#   bash scripts/codec_results.sh
#
# Environment: RUNS (default runs/codec), BUDGET (seconds of VQ-VAE training per model, default
# 1800), MODELS (names from the table below, default all; the other models' rows of an earlier
# run are kept), BENCH (default bench), VQVAE (the binary, default .build/release/vqvae), ENVELOPE
# (the models whose points make our rate-distortion curve, default d3-l4,d3-l4-rd,d3-l4-refine,
# d3-l4-rd-refine,d3-l4-resize,d3-l4-resize-refine,d3-l4-c16,d3-l4-c16-rd,d2-l2: the rate ladder;
# d3-l4-resize is the same ladder step with resize upsampling), NOTE (a sentence added to the
# report's notes), REPORT_ONLY=1 (only rewrite the reports from runs/codec/results.tsv).
# Also writes bench/codec-texture.md (scripts/codec_texture.py): the periodic texture of the decoded photos.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${RUNS:-runs/codec}
budget=${BUDGET:-1800}
bench=${BENCH:-bench}
vqvae=${VQVAE:-.build/release/vqvae}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun=(mpirun -np 2)
[ -x "$vqvae" ] || swift build -c release --product vqvae
mkdir -p "$runs" "$bench"

# The rate ladder: name | train flags | train-prior flags | codebooks to code | lambdas | refine rounds.
# The lambdas (optional) add the rows "<name>-rd, <lambda>": compress --lambda <lambda> at all the
# model's codebooks, each position coding its own number of them (the same lambda for every photo:
# points of one rate-distortion curve; a fixed --psnr per photo would not be). The refine rounds
# (optional) add the same rows again as "<name>-refine" and "<name>-rd-refine", compressed with
# --refine <rounds>: the codes chosen for the decoded image.
# d3-l4: 8x8 pixels per position, 4 codebooks of 512 (0.14 to 0.56 bpp before the prior);
# d3-l4-c16: the same with codebooks of 16 dimensions (--codebook-dim 16: the 64-dimensional latent
# projected to 16 and back), where each residual level's 512 codes buy more;
# d3-l4-resize: the same with --upsample resize (nearest-neighbour upsampling and 3x3 convolutions);
# d2-l2: 4x4 pixels per position, 2 codebooks of 512 (0.56 and 1.1 bpp before the prior).
table=$(cat <<'EOF'
d3-l4|--down 3 --codebooks 4 --quantizer-dropout --crop 128 --crops-per-image 32 --augment flips --global-batch-size 64 --lr 1e-3 --lr-schedule cosine --warmup-steps 200 --steps 5000|--crops-per-image 32 --global-batch-size 32 --steps 3000|1 2 3 4|10 30 100 300 1000 3000 10000|30
d3-l4-c16|--down 3 --codebooks 4 --codebook-dim 16 --quantizer-dropout --crop 128 --crops-per-image 32 --augment flips --global-batch-size 64 --lr 1e-3 --lr-schedule cosine --warmup-steps 200 --steps 5000|--crops-per-image 32 --global-batch-size 32 --steps 3000|1 2 3 4|10 30 100 300 1000 3000 10000
d3-l4-resize|--down 3 --codebooks 4 --quantizer-dropout --upsample resize --crop 128 --crops-per-image 32 --augment flips --global-batch-size 64 --lr 1e-3 --lr-schedule cosine --warmup-steps 200 --steps 5000|--crops-per-image 32 --global-batch-size 32 --steps 3000|1 2 3 4||30
d2-l2|--down 2 --codebooks 2 --quantizer-dropout --crop 96 --crops-per-image 32 --augment flips --global-batch-size 64 --lr 1e-3 --lr-schedule cosine --warmup-steps 200 --steps 4200|--crops-per-image 32 --global-batch-size 32 --steps 3000|1 2
EOF
)
refine_rounds=$(awk -F'|' '$6 != "" {print $6; exit}' <<<"$table")

data=$runs/data
if [ ! -f "$data/photos-test-whole.h5" ]; then
    python3 scripts/prepare_data.py photos --whole --out "$data"
fi
photos=$runs/test
mkdir -p "$photos"
python3 - "$data/photos-test-whole.h5" "$photos" <<'PY'
import sys, h5py, numpy as np
from PIL import Image
with h5py.File(sys.argv[1], "r") as f:
    pixels, shapes, offsets = f["pixels"][:], f["shapes"][:], f["offsets"][:]
for i, (shape, offset) in enumerate(zip(shapes, offsets)):
    Image.fromarray(pixels[offset:offset + int(np.prod(shape))].reshape(shape)).save(f"{sys.argv[2]}/{i}.png")
# A 768x512 photo for the one-core decode time.
Image.open(f"{sys.argv[2]}/1.png").resize((768, 512), Image.LANCZOS).save(f"{sys.argv[2]}/../speed-768x512.png")
PY

# The newest checkpoint in a run's folder ("" when there is none).
newest() { ls "$1/checkpoints" 2>/dev/null | grep '^step-' | sort | tail -n 1 || true; }

results=$runs/results.tsv
speed=""
if [ "${REPORT_ONLY:-0}" = 1 ]; then
    [ -s "$results" ] || { echo "error: REPORT_ONLY=1 but $results is missing or empty" >&2; exit 2; }
    table=""
    speed=$(cat "$runs/speed.txt" 2>/dev/null || true)
elif [ -n "${MODELS:-}" ] && [ -s "$results" ]; then
    # Only these models again: the other models' rows stay.
    keep=$(mktemp)
    awk -F'\t' -v models="$MODELS" 'BEGIN { n = split(models, m, " "); for (i = 1; i <= n; i++) {
        drop[m[i]]; drop[m[i] "-rd"]; drop[m[i] "-refine"]; drop[m[i] "-rd-refine"] } } !($1 in drop)' "$results" > "$keep"
    mv "$keep" "$results"
else
    : > "$results"
fi
# Compresses and decompresses every photo with model "$model" and prior "$priorfile", the compress
# flags after the first three arguments, and appends a row per photo to the results: the row's
# name, its setting (codebooks or lambda), the folder of its files. Codes coded: what compress
# reports with per-position codebooks, else the grid times the codebooks.
code_photos() {
    local row=$1 setting=$2 folder=$3 png i enc dec bytes codes h w
    shift 3
    mkdir -p "$folder"
    for png in "$photos"/*.png; do
        i=$(basename "$png" .png)
        enc=$("$vqvae" compress --checkpoint "$model" --prior "$priorfile" "$png" -o "$folder/$i.vqz" "$@" --force)
        dec=$("$vqvae" decompress --checkpoint "$model" --prior "$priorfile" "$folder/$i.vqz" -o "$folder/$i.png" --force)
        bytes=$(stat -c %s "$folder/$i.vqz")
        codes=$(grep -o '[0-9]* codes)' <<<"$enc" | cut -d' ' -f1 || true)
        if [ -z "$codes" ]; then
            read -r h w < <(python3 -c "from PIL import Image; im = Image.open('$png'); print(im.height, im.width)")
            codes=$(python3 -c "f = 1 << ${name:1:1}; print(((($h + f - 1) // f) * (($w + f - 1) // f)) * $setting)")
        fi
        echo -e "$row\t$setting\t$i\t$folder/$i.vqz\t$folder/$i.png\t$bytes\t$(awk '{print $(NF-1)}' <<<"$enc")\t$(awk '{print $(NF-1)}' <<<"$dec")\t$codes" >> "$results"
    done
}

# The table is read from descriptor 3: mpirun forwards its standard input to rank 0, and would
# swallow the rest of the table.
while IFS='|' read -r name train prior levels lambdas refine <&3; do
    [ -n "$name" ] || continue
    if [ -n "${MODELS:-}" ] && [[ " $MODELS " != *" $name "* ]]; then continue; fi
    model=$runs/vq-$name/checkpoints/$(newest "$runs/vq-$name")
    if [ ! -f "$model" ]; then
        echo "training the VQ-VAE $name for up to ${budget}s"
        # shellcheck disable=SC2086
        "${mpirun[@]}" "$vqvae" train --data "$data/photos-train-whole.h5" --out "$runs/vq-$name" --time-budget "$budget" \
            --checkpoint-every 1000 $train > "$runs/vq-$name.log"
        model=$runs/vq-$name/checkpoints/$(newest "$runs/vq-$name")
    fi
    priorfile=$runs/prior-$name/checkpoints/$(newest "$runs/prior-$name")
    if [ ! -f "$priorfile" ]; then
        echo "training the prior of $name"
        # shellcheck disable=SC2086
        "${mpirun[@]}" "$vqvae" train-prior --checkpoint "$model" --data "$data/photos-train-whole.h5" --out "$runs/prior-$name" \
            --log-every 100 $prior > "$runs/prior-$name.log"
        priorfile=$runs/prior-$name/checkpoints/$(newest "$runs/prior-$name")
    fi
    echo "$name: $model, prior $priorfile"
    for q in $levels; do code_photos "$name" "$q" "$runs/results/$name/q$q" --levels "$q"; done
    for lambda in $lambdas; do code_photos "$name-rd" "$lambda" "$runs/results/$name/lambda$lambda" --lambda "$lambda"; done
    if [ -n "$refine" ]; then
        for q in $levels; do code_photos "$name-refine" "$q" "$runs/results/$name/refine-q$q" --levels "$q" --refine "$refine"; done
        for lambda in $lambdas; do
            code_photos "$name-rd-refine" "$lambda" "$runs/results/$name/refine-lambda$lambda" --lambda "$lambda" --refine "$refine"
        done
    fi
    if [ -z "$speed" ]; then
        # One core, one thread: decompress of a 768x512 photo (the command's own time, model loading excluded,
        # and the whole process's wall time).
        "$vqvae" compress --checkpoint "$model" --prior "$priorfile" "$runs/speed-768x512.png" -o "$runs/speed.vqz" --force >/dev/null
        start=$(date +%s.%N)
        line=$(taskset -c 0 "$vqvae" decompress --threads 1 --checkpoint "$model" --prior "$priorfile" "$runs/speed.vqz" -o "$runs/speed.png" --force)
        wall=$(python3 -c "print(f'{$(date +%s.%N) - $start:.2f}')")
        speed="Decode of a 768x512 photo on one core (taskset -c 0, --threads 1) with $name at all $((${levels: -1})) codebooks: $(awk '{print $(NF-1)}' <<<"$line") s in decompress, $wall s for the whole process (loading the model and prior included)."
        echo "$speed" > "$runs/speed.txt"
    fi
done 3<<<"$table"
[ -s "$results" ] || { echo "error: no model was compressed (MODELS=${MODELS:-})" >&2; exit 2; }

cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | xargs)
family=$(grep -m1 "cpu family" /proc/cpuinfo | cut -d: -f2 | xargs)
cpumodel=$(grep -m1 "^model[[:space:]]" /proc/cpuinfo | cut -d: -f2 | xargs)
python3 scripts/codec_results.py --photos "$photos" --ours "$results" --out "$bench/codec.md" \
    --figure "$bench/codec-rd.png" --example "$bench/codec-example.png" --envelope "${ENVELOPE:-d3-l4,d3-l4-rd,d3-l4-refine,d3-l4-rd-refine,d3-l4-resize,d3-l4-resize-refine,d3-l4-c16,d3-l4-c16-rd,d2-l2}" \
    --cpu "$cpu (family $family model $cpumodel), $(nproc) CPUs" \
    --notes "Made by \`bash scripts/codec_results.sh\`: each VQ-VAE trained for up to ${budget} s under mpirun -np 2 on random crops of the 22 training photos, its prior for the steps in the script's table. d3-l4-resize is d3-l4 with \`--upsample resize\`; our curve is the upper envelope of the rows of (${ENVELOPE:-d3-l4,d3-l4-rd,d3-l4-refine,d3-l4-rd-refine,d3-l4-resize,d3-l4-resize-refine,d3-l4-c16,d3-l4-c16-rd,d2-l2}); the periodic texture of every model's decoded photos is measured in [codec-texture.md](codec-texture.md). Rows \"<model>-rd, L\": \`compress --lambda L\` at all the model's codebooks, each position coding its own number of them, the same L for every photo. Rows \"<model>-refine\" and \"<model>-rd-refine\": the same files compressed with \`--refine $refine_rounds\`, the codes chosen for the decoded image. ${NOTE:-}$speed"
if grep -qP '^d3-l4\t2\t' "$results" && grep -qP '^d3-l4-resize\t2\t' "$results"; then
    python3 scripts/codec_texture.py --photos "$photos" --ours "$results" --out "$bench/codec-texture.md" \
        --figure "$bench/codec-texture.png" --pair d3-l4,d3-l4-resize --levels 2 --cpu "$cpu (family $family model $cpumodel)"
    echo "wrote $bench/codec-texture.md"
fi
echo "wrote $bench/codec.md"
