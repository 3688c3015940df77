#!/usr/bin/env bash
# Restoration benchmark on WHOLE held-out photos: writes bench/restoration.md,
# bench/restoration.json and bench/pictures/restoration-TASK.png; work files under runs/restoration/.
#
# The held-out TEST photos of scripts/prepare_data.py at their own size (centre-cropped to
# multiples of 8) are damaged once with numpy and a fixed seed and saved as 8-bit PNGs (tasks
# denoise-0.05, denoise-0.1, denoise-0.2, inpaint-cells, inpaint-strokes, deblur; masks as PNGs);
# classical baselines restore those files (non-local means and BM3D; biharmonic and OpenCV Telea
# inpainting; Wiener and Richardson-Lucy deconvolution), and so do the project's models: each
# recipe below is trained under mpirun for a fixed wall-clock budget and then restores, with
# `vqvae restore` (and `--mask` for inpainting), the damaged photos of the tasks it names. All
# the Python work is scripts/restoration_results.py.
#
# Environment:
#   BUDGET          seconds of wall-clock training per recipe (`--time-budget`), default 1800
#   RANKS           mpirun -np, default 2
#   RECIPES         comma-separated recipe names to train and restore (default: all below)
#   SKIP_TRAIN=1    reuse the checkpoints already in runs/restoration/train/
#   SKIP_BASELINES=1  reuse the photos, damaged copies and classical results already there
#   SKIP_MODELS=1   neither train nor restore with models (the report keeps earlier model results)
#   CHECKPOINT_EVERY=N  also keep a checkpoint every N steps (for a quality-against-time curve; default 0)
# Reference tools that are not project dependencies (bm3d, opencv-python-headless, PyWavelets)
# go into a virtual environment, runs/restoration/venv, made when missing (it sees the system's
# packages too). The opencv-doc photos of the test split come from Debian's opencv-doc.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# ---- Recipes: one per line, fields separated by '|':
#   name | tasks it is evaluated on | training data | `vqvae train` flags | `vqvae restore` flags
# Tasks: denoise-0.05, denoise-0.1, denoise-0.2, inpaint-cells, inpaint-strokes, deblur.
# Training data: `patches` (runs/restoration/data/photos32-train.h5, 32x32 patches of the TRAIN
# photos, made here), `tone` (runs/restoration/data-tone/photos32-train.h5: the same patches, half
# of them re-exposed with channels clipped at 0 and 255, `prepare_data.py --train-tone 0.5`), `tone-dark`
# (the same with offsets down to -0.45, `--tone-offset=-0.45,0.1`: more dark channels clipped at 0),
# `tone-black` (offsets down to -0.7: whole channels often black, as in saturated colours), `whole` (runs/restoration/data/photos-train-whole.h5, the TRAIN photos whole
# at their own sizes, made here; give --crop), `whole-more` and `tone-black-more` (`whole` and
# `tone-black` with the 12 nature photos of Debian's mate-backgrounds added to the TRAIN photos,
# `prepare_data.py --more-photos`; the package is installed when missing), the path of any HDF5 dataset, or `=NAME`: no
# training of its own, the model of recipe NAME restores with this recipe's restore flags (leave
# the train flags empty: NAME's are taken, for the record). The common flags (budget, batch, lr, logging) are in
# TRAIN_COMMON below.
RECIPE_TABLE=(
  "denoise-ae       | denoise-0.1                           | patches | --model ae --residual --detail-layers 3 --down 1 --corrupt noise:0.1      | "
  "denoise-ae-plain | denoise-0.1                           | patches | --model ae --residual --down 1 --corrupt noise:0.1                         | "
  "denoise-vq-skips | denoise-0.1                           | patches | --model vqvae --residual --skips --down 2 --corrupt noise:0.1              | "
  "blind-denoise-ae | denoise-0.05,denoise-0.1,denoise-0.2   | patches | --model ae --residual --detail-layers 3 --down 1 --corrupt noise:0.02..0.2 | "
  "inpaint-ae       | inpaint-cells,inpaint-strokes         | patches | --model ae --down 1 --corrupt mask:0.25                                    | "
  "holes-ae         | inpaint-cells,inpaint-strokes         | patches | --model ae --residual --detail-layers 3 --down 1 --corrupt holes:8          | "
  "inpaint-mask     | inpaint-cells,inpaint-strokes         | patches | --model ae --residual --detail-layers 3 --down 1 --mask-channel --corrupt holes:8 | "
  "inpaint-mask-d2  | inpaint-cells,inpaint-strokes         | patches | --model ae --residual --down 2 --skips --mask-channel --corrupt holes:8      | "
  "inpaint-mask-d3  | inpaint-cells,inpaint-strokes         | whole   | --crop 64 --crops-per-image 64 --augment dihedral --model ae --residual --down 3 --skips --mask-channel --corrupt holes:8 | --whole"
  "inpaint-mask-d3-ema | inpaint-cells,inpaint-strokes       | whole   | --crop 64 --crops-per-image 64 --augment dihedral --model ae --residual --down 3 --skips --mask-channel --corrupt holes:8 --weight-ema 0.999 | --whole"
  "blind-charb      | denoise-0.05,denoise-0.1,denoise-0.2   | patches | --task blind-denoise --lr 2e-3 --detail-layers 6 --detail-channels 64 --clip-grad-norm 0.05 --steps 9000 --loss charbonnier | "
  "deblur-task      | deblur                                | patches | --task deblur --steps 26000 | "
  "deblur-8bit      | deblur                                | patches | --task deblur --corrupt blur:2,quantize:255 --steps 26000 | "
  "inpaint-long     | inpaint-cells,inpaint-strokes         | whole   | --crop 64 --crops-per-image 64 --augment dihedral --task inpaint --loss-weight uniform --hole-fill zero --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05 --steps 32000 | --whole"
  "inpaint-resize   | inpaint-cells,inpaint-strokes         | whole   | --crop 64 --crops-per-image 64 --augment dihedral --task inpaint --loss-weight uniform --hole-fill zero --upsample resize --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05 --steps 32000 | --whole"
  "deblur-ae        | deblur                                | patches | --model ae --residual --detail-layers 3 --down 1 --corrupt blur:2          | "
  "denoise-deep     | denoise-0.1                           | patches | --task denoise --lr 2e-3 --detail-layers 6 --detail-channels 64 --clip-grad-norm 0.05 --steps 9000 | "
  "blind-deep       | denoise-0.05,denoise-0.1,denoise-0.2   | patches | --task blind-denoise --lr 2e-3 --detail-layers 6 --detail-channels 64 --clip-grad-norm 0.05 --steps 9000 | "
  "blind-log        | denoise-0.05,denoise-0.1,denoise-0.2   | patches | --task blind-denoise --lr 2e-3 --detail-layers 6 --detail-channels 64 --clip-grad-norm 0.05 --steps 9000 --corrupt noise:0.02~0.2 | "
  "blind-log-long   | denoise-0.05,denoise-0.1,denoise-0.2   | patches | --task blind-denoise --lr 2e-3 --detail-layers 6 --detail-channels 64 --clip-grad-norm 0.05 --steps 22000 --corrupt noise:0.02~0.2 | "
  "blind-weighted   | denoise-0.05,denoise-0.1,denoise-0.2   | patches | --task blind-denoise --lr 2e-3 --detail-layers 6 --detail-channels 64 --clip-grad-norm 0.05 --steps 22000 --corrupt noise:0.02~0.2 --loss-weight damage --weight-ema 0.999 | "
  "blind-tone       | denoise-0.05,denoise-0.1,denoise-0.2   | tone    | --task blind-denoise --lr 2e-3 --detail-layers 6 --detail-channels 64 --clip-grad-norm 0.05 --steps 22000 --corrupt noise:0.02~0.2 --loss-weight damage --weight-ema 0.999 | "
  "blind-tone-x8    | denoise-0.05,denoise-0.1,denoise-0.2   | =blind-tone | | --ensemble"
  "blind-tone-charb | denoise-0.05,denoise-0.1,denoise-0.2   | tone    | --task blind-denoise --lr 2e-3 --detail-layers 6 --detail-channels 64 --clip-grad-norm 0.05 --steps 22000 --corrupt noise:0.02~0.2 --loss-weight damage --loss charbonnier --weight-ema 0.999 | "
  "blind-tone-charb-x8 | denoise-0.05,denoise-0.1,denoise-0.2 | =blind-tone-charb | | --ensemble"
  "inpaint-128      | inpaint-cells,inpaint-strokes         | whole   | --crop 128 --crops-per-image 16 --augment dihedral --task inpaint --loss-weight uniform --hole-fill zero --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05 --steps 15000 | --whole"
  "inpaint-128-x8   | inpaint-cells,inpaint-strokes         | =inpaint-128 | | --whole --ensemble"
  "blind-log-long-x8 | denoise-0.05,denoise-0.1,denoise-0.2  | =blind-log-long | | --ensemble"
  "blind-weighted-x8 | denoise-0.05,denoise-0.1,denoise-0.2  | =blind-weighted | | --ensemble"
  "inpaint-long-x8  | inpaint-cells,inpaint-strokes         | =inpaint-long | | --whole --ensemble"
  "inpaint-smooth   | inpaint-cells,inpaint-strokes         | whole   | --crop 64 --crops-per-image 64 --augment dihedral --task inpaint --loss-weight uniform --hole-fill smooth --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05 --steps 32000 | --whole"
  "inpaint-smooth-x8 | inpaint-cells,inpaint-strokes        | =inpaint-smooth | | --whole --ensemble"
  "inpaint-smooth-long | inpaint-cells,inpaint-strokes       | whole   | --crop 64 --crops-per-image 64 --augment dihedral --task inpaint --loss-weight uniform --hole-fill smooth --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05 --steps 50000 | --whole"
  "inpaint-smooth-long-x8 | inpaint-cells,inpaint-strokes   | =inpaint-smooth-long | | --whole --ensemble"
  "inpaint-wide     | inpaint-cells,inpaint-strokes         | whole   | --crop 64 --crops-per-image 64 --augment dihedral --task inpaint --loss-weight uniform --hole-fill smooth --corrupt holes:4:0:2 --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05 --steps 50000 | --whole"
  "inpaint-wide-x8  | inpaint-cells,inpaint-strokes         | =inpaint-wide | | --whole --ensemble"
  "inpaint-plate    | inpaint-cells,inpaint-strokes         | whole   | --crop 64 --crops-per-image 64 --augment dihedral --task inpaint --loss-weight uniform --hole-fill plate --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05 --steps 50000 | --whole"
  "inpaint-plate-x8 | inpaint-cells,inpaint-strokes         | =inpaint-plate | | --whole --ensemble"
  "inpaint-plate-36k | inpaint-cells,inpaint-strokes        | whole   | --crop 64 --crops-per-image 64 --augment dihedral --task inpaint --loss-weight uniform --hole-fill plate --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05 --steps 36000 | --whole"
  "inpaint-plate-36k-x8 | inpaint-cells,inpaint-strokes    | =inpaint-plate-36k | | --whole --ensemble"
  "inpaint-plate-b6 | inpaint-cells,inpaint-strokes         | whole   | --crop 64 --crops-per-image 64 --augment dihedral --task inpaint --loss-weight uniform --hole-fill plate --res-blocks 6 --res-hidden 64 --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05 --steps 33000 | --whole"
  "inpaint-plate-b6-x8 | inpaint-cells,inpaint-strokes     | =inpaint-plate-b6 | | --whole --ensemble"
  # (inpaint-plate-45min: run with BUDGET=2700, its 52,000 steps need more than 1,800 s)
  "inpaint-plate-45min | inpaint-cells,inpaint-strokes       | whole   | --crop 64 --crops-per-image 64 --augment dihedral --task inpaint --loss-weight uniform --hole-fill plate --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05 --steps 52000 | --whole"
  "inpaint-plate-45min-x8 | inpaint-cells,inpaint-strokes   | =inpaint-plate-45min | | --whole --ensemble"
  "blind-tone-dark  | denoise-0.05,denoise-0.1,denoise-0.2   | tone-dark | --task blind-denoise --lr 2e-3 --detail-layers 6 --detail-channels 64 --clip-grad-norm 0.05 --steps 22000 --corrupt noise:0.02~0.2 --loss-weight damage --weight-ema 0.999 | "
  "blind-tone-dark-x8 | denoise-0.05,denoise-0.1,denoise-0.2 | =blind-tone-dark | | --ensemble"
  "blind-tone-black | denoise-0.05,denoise-0.1,denoise-0.2   | tone-black | --task blind-denoise --lr 2e-3 --detail-layers 6 --detail-channels 64 --clip-grad-norm 0.05 --steps 22000 --corrupt noise:0.02~0.2 --loss-weight damage --weight-ema 0.999 | "
  "blind-tone-black-x8 | denoise-0.05,denoise-0.1,denoise-0.2 | =blind-tone-black | | --ensemble"
  "inpaint-smooth-128 | inpaint-cells,inpaint-strokes       | whole   | --crop 128 --crops-per-image 16 --augment dihedral --task inpaint --loss-weight uniform --hole-fill smooth --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05 --steps 15000 | --whole"
  "inpaint-smooth-128-x8 | inpaint-cells,inpaint-strokes    | =inpaint-smooth-128 | | --whole --ensemble"
  "deblur-8bit-x8   | deblur                                | =deblur-8bit | | --ensemble"
  "inpaint-plate-more | inpaint-cells,inpaint-strokes       | whole-more | --crop 64 --crops-per-image 64 --augment dihedral --task inpaint --loss-weight uniform --hole-fill plate --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05 --steps 50000 | --whole"
  "inpaint-plate-more-x8 | inpaint-cells,inpaint-strokes    | =inpaint-plate-more | | --whole --ensemble"
  "blind-tone-black-more | denoise-0.05,denoise-0.1,denoise-0.2 | tone-black-more | --task blind-denoise --lr 2e-3 --detail-layers 6 --detail-channels 64 --clip-grad-norm 0.05 --steps 22000 --corrupt noise:0.02~0.2 --loss-weight damage --weight-ema 0.999 | "
  "blind-tone-black-more-x8 | denoise-0.05,denoise-0.1,denoise-0.2 | =blind-tone-black-more | | --ensemble"
  # (the model's own output, without matching the noisy input's local means)
  "blind-tone-black-more-raw | denoise-0.05,denoise-0.1,denoise-0.2 | =blind-tone-black-more | | --noise-consistency off"
  # (the cosine schedule fitted to what a 2-CPU Zen 4 trains in 1,800 s, about 7,300 steps)
  "blind-tone-black-more-7k | denoise-0.05,denoise-0.1,denoise-0.2 | tone-black-more | --task blind-denoise --lr 2e-3 --detail-layers 6 --detail-channels 64 --clip-grad-norm 0.05 --steps 7200 --corrupt noise:0.02~0.2 --loss-weight damage --weight-ema 0.999 | "
  "blind-tone-black-more-7k-x8 | denoise-0.05,denoise-0.1,denoise-0.2 | =blind-tone-black-more-7k | | --ensemble"
  "inpaint-plate-log | inpaint-cells,inpaint-strokes        | whole   | --crop 64 --crops-per-image 64 --augment dihedral --task inpaint --hole-fill plate --loss-weight log --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05 --steps 50000 | --whole"
  "inpaint-plate-log-x8 | inpaint-cells,inpaint-strokes     | =inpaint-plate-log | | --whole --ensemble"
  # (the same recipe from another seed: how much a repeat moves the results)
  "inpaint-plate-log-s2 | inpaint-cells,inpaint-strokes     | whole   | --crop 64 --crops-per-image 64 --augment dihedral --task inpaint --hole-fill plate --loss-weight log --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --clip-grad-norm 0.05 --steps 50000 --seed 2 | --whole"
  "inpaint-plate-log-s2-x8 | inpaint-cells,inpaint-strokes  | =inpaint-plate-log-s2 | | --whole --ensemble"
)
CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-0}
TRAIN_COMMON=(--steps 10000000 --global-batch-size 32 --lr 1e-3 --log-every 200 --checkpoint-every "$CHECKPOINT_EVERY")

BUDGET=${BUDGET:-1800}
RANKS=${RANKS:-2}
RECIPES=${RECIPES:-}
SKIP_TRAIN=${SKIP_TRAIN:-0}
SKIP_BASELINES=${SKIP_BASELINES:-0}
SKIP_MODELS=${SKIP_MODELS:-0}
WORK=runs/restoration
BUILT=.build/release/vqvae
BIN=$WORK/bin/vqvae  # a copy taken at the start, so a rebuild meanwhile cannot mix two binaries
PY=scripts/restoration_results.py
VENV=$WORK/venv
PATCHES=$WORK/data/photos32-train.h5
WHOLE=$WORK/data/photos-train-whole.h5
# The re-exposed patch sets by data kind: each kind's extra prepare_data.py flags (the offsets).
declare -A TONE_FLAGS=([tone]="" [tone-dark]="--tone-offset=-0.45,0.1" [tone-black]="--tone-offset=-0.7,0.1"
                       [tone-black-more]="--tone-offset=-0.7,0.1 --more-photos")
WHOLE_MORE=$WORK/data-more/photos-train-whole.h5
tone_data() { echo "$WORK/data-$1/photos32-train.h5"; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
log() { echo "restoration: $*" >&2; }
# Wall-clock seconds of each part, kept across runs that skip parts (runs/restoration/phases.txt).
phase() {  # NAME SECONDS
    mkdir -p "$WORK"
    { grep -v "^$1	" "$WORK/phases.txt" 2>/dev/null || true; printf '%s\t%s\n' "$1" "$2"; } > "$WORK/phases.txt.new"
    mv "$WORK/phases.txt.new" "$WORK/phases.txt"
}

trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; s=${s%"${s##*[![:space:]]}"}; printf '%s' "$s"; }
names=() tasks=() datas=() flags=() rflags=()
declare -A train_flags  # every recipe's train flags, for the =NAME recipes
for line in "${RECIPE_TABLE[@]}"; do
    IFS='|' read -r n _ _ f _ <<< "$line"
    train_flags[$(trim "$n")]=$(trim "$f")
done
for line in "${RECIPE_TABLE[@]}"; do
    IFS='|' read -r n t d f r <<< "$line"
    n=$(trim "$n") d=$(trim "$d") f=$(trim "$f")
    if [ -n "$RECIPES" ] && [[ ",$RECIPES," != *",$n,"* ]]; then continue; fi
    if [[ $d == =* ]]; then
        [ -n "${train_flags[${d#=}]+set}" ] || { log "recipe $n: no recipe named ${d#=}"; exit 1; }
        f=${train_flags[${d#=}]}
    fi
    names+=("$n"); tasks+=("$(trim "$t")"); datas+=("$d"); flags+=("$f"); rflags+=("$(trim "${r:-}")")
done
if [ -n "$RECIPES" ]; then
    IFS=',' read -r -a wanted <<< "$RECIPES"
    for w in "${wanted[@]}"; do
        [[ " ${names[*]} " == *" $w "* ]] || { log "no recipe named $w"; exit 1; }
    done
fi

# ---- Tools: the project's Python packages, the opencv-doc photos, the reference tools' venv.
python3 -c "import h5py, numpy, skimage, sklearn, matplotlib, PIL, scipy" 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check h5py numpy scikit-image scikit-learn \
        matplotlib pillow scipy
if [ ! -d /usr/share/doc/opencv-doc/examples/data ]; then
    log "installing Debian's opencv-doc (four of the six test photos)"
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends opencv-doc >/dev/null
fi
if ! "$VENV/bin/python" -c "import bm3d, cv2, pywt" 2>/dev/null; then
    log "making $VENV with bm3d, opencv-python-headless, PyWavelets (reference tools)"
    python3 -m venv --system-site-packages "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check bm3d opencv-python-headless PyWavelets
fi
VPY=$VENV/bin/python
if [[ " ${datas[*]} " == *"-more "* ]] && [ ! -d /usr/share/backgrounds/mate/nature ]; then
    log "installing Debian's mate-backgrounds (the extra TRAIN photos of the *-more data)"
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends mate-backgrounds >/dev/null
fi

commands="$WORK/commands.txt"
mkdir -p "$WORK"
if [ "$SKIP_TRAIN" != 1 ] && [ "$SKIP_MODELS" != 1 ]; then
    : > "$commands"
elif [ "$SKIP_MODELS" = 1 ]; then
    # Keep the commands that made the model results the report still shows.
    grep -v " report --work " "$commands" > "$commands.kept" 2>/dev/null || true
    mv "$commands.kept" "$commands"
else
    # Keep the training commands of the run that made the checkpoints.
    grep -E "SKIP_TRAIN=0 .*SKIP_MODELS=0 bash .*# which runs:| train " "$commands" > "$commands.kept" 2>/dev/null || true
    mv "$commands.kept" "$commands"
fi
printf "BUDGET=%s RANKS=%s RECIPES=%s SKIP_TRAIN=%s SKIP_BASELINES=%s SKIP_MODELS=%s bash scripts/restoration_results.sh   # which runs:\n" \
    "$BUDGET" "$RANKS" "${RECIPES:-all}" "$SKIP_TRAIN" "$SKIP_BASELINES" "$SKIP_MODELS" >> "$commands"
record() { printf '%s\n' "$*" >> "$commands"; }

# ---- Photos, damage, tuning on a TRAIN photo, classical baselines.
if [ "$SKIP_BASELINES" != 1 ]; then
    rm -rf "$WORK"/clean "$WORK"/damaged "$WORK"/masks "$WORK"/baseline "$WORK"/photos.json
    record "$VPY $PY prepare --work $WORK"
    t0=$(date +%s)
    "$VPY" "$PY" prepare --work "$WORK"
    phase "photos, damage, tuning" $(($(date +%s) - t0))
    record "$VPY $PY baselines --work $WORK"
    t0=$(date +%s)
    "$VPY" "$PY" baselines --work "$WORK"
    phase "classical baselines" $(($(date +%s) - t0))
fi

# ---- Models.
data_of() { case $1 in patches) echo "$PATCHES" ;; whole) echo "$WHOLE" ;; whole-more) echo "$WHOLE_MORE" ;; *) if [ -n "${TONE_FLAGS[$1]+set}" ]; then tone_data "$1"; else echo "$1"; fi ;; esac; }
checkpoint() {  # run folder -> newest checkpoint
    local newest
    newest=$(ls "$1"/checkpoints/step-*.h5 2>/dev/null | sort | tail -n 1)
    [ -n "$newest" ] || { log "no checkpoint in $1/checkpoints"; exit 1; }
    echo "$newest"
}
if [ "$SKIP_MODELS" != 1 ] && ((${#names[@]})); then
    [ -x "$BUILT" ] || swift build -c release
    mkdir -p "$WORK/bin"
    described="$BIN: copy of $BUILT ($(date -r "$BUILT" -u +%Y-%m-%dT%H:%M:%SZ)), sha256 $(cp "$BUILT" "$BIN.tmp" && sha256sum "$BIN.tmp" | cut -c1-16)"
    mv "$BIN.tmp" "$BIN"
    "$BIN" --help > /dev/null
    # The deblur input must be what the trainer's --corrupt blur:2 makes: compare once.
    record "$VPY $PY blurcheck --work $WORK --bin $BIN"
    "$VPY" "$PY" blurcheck --work "$WORK" --bin "$BIN"
    if [ "$SKIP_TRAIN" != 1 ]; then
        echo "$described" > "$WORK/binary.txt"
    else
        trained_by=$(head -n 1 "$WORK/binary.txt" 2>/dev/null | sed 's/ (training);.*$//')
        echo "$trained_by (training); $described (restoration)" > "$WORK/binary.txt"
    fi
    # recipes.tsv: the recipes the report lists (this run's replace their earlier lines, others
    # stay, so RECIPES=a then RECIPES=b reports both), with the budget they were trained for.
    : > "$WORK/recipes.tsv.new"
    if [ -f "$WORK/recipes.tsv" ]; then
        while IFS= read -r line; do
            [[ " ${names[*]} " == *" ${line%%	*} "* ]] || printf '%s\n' "$line" >> "$WORK/recipes.tsv.new"
        done < "$WORK/recipes.tsv"
    fi
    for i in "${!names[@]}"; do
        b=$BUDGET
        if [ "$SKIP_TRAIN" = 1 ] && [ -f "$WORK/train/${names[$i]}/budget" ]; then b=$(cat "$WORK/train/${names[$i]}/budget"); fi
        if [[ ${datas[$i]} == =* ]]; then
            # Another recipe's model: its budget (it trains first when both run).
            source_recipe=${datas[$i]#=}
            b=$BUDGET
            if ! [[ " ${names[*]} " == *" $source_recipe "* && $SKIP_TRAIN != 1 ]]; then
                [ -f "$WORK/train/$source_recipe/budget" ] || { log "recipe ${names[$i]}: no trained model of $source_recipe in $WORK/train"; exit 1; }
                b=$(cat "$WORK/train/$source_recipe/budget")
            fi
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "${names[$i]}" "${tasks[$i]}" "${datas[$i]}" "${flags[$i]}" "${rflags[$i]}" "$b" >> "$WORK/recipes.tsv.new"
    done
    mv "$WORK/recipes.tsv.new" "$WORK/recipes.tsv"

    if [ "$SKIP_TRAIN" != 1 ]; then
        : > "$WORK/load.txt"
        if [[ " ${datas[*]} " == *" patches "* ]] && [ ! -f "$PATCHES" ]; then
            record "python3 scripts/prepare_data.py photos --out $WORK/data --train-scales 1,0.5,0.35 --train-patches 40000"
            t0=$(date +%s)
            python3 scripts/prepare_data.py photos --out "$WORK/data" --train-scales 1,0.5,0.35 --train-patches 40000
            phase "training data" $(($(date +%s) - t0))
        fi
        for kind in "${!TONE_FLAGS[@]}"; do
            [[ " ${datas[*]} " == *" $kind "* ]] && [ ! -f "$(tone_data "$kind")" ] || continue
            read -r -a extra <<< "${TONE_FLAGS[$kind]}"
            cmd=(python3 scripts/prepare_data.py photos --out "$WORK/data-$kind" --train-scales 1,0.5,0.35
                 --train-patches 40000 --train-tone 0.5 ${extra[@]+"${extra[@]}"})
            record "${cmd[*]}"
            "${cmd[@]}"
        done
        if [[ " ${datas[*]} " == *" whole "* ]] && [ ! -f "$WHOLE" ]; then
            record "python3 scripts/prepare_data.py photos --whole --out $WORK/data"
            python3 scripts/prepare_data.py photos --whole --out "$WORK/data"
        fi
        if [[ " ${datas[*]} " == *" whole-more "* ]] && [ ! -f "$WHOLE_MORE" ]; then
            record "python3 scripts/prepare_data.py photos --whole --more-photos --out $WORK/data-more"
            python3 scripts/prepare_data.py photos --whole --more-photos --out "$WORK/data-more"
        fi
        for i in "${!names[@]}"; do
            name=${names[$i]}
            [[ ${datas[$i]} == =* ]] && continue
            data=$(data_of "${datas[$i]}")
            [ -f "$data" ] || { log "recipe $name: no training data $data"; exit 1; }
            out="$WORK/train/$name"
            rm -rf "$out"
            mkdir -p "$out"
            read -r -a f <<< "${flags[$i]}"
            cmd=(mpirun -np "$RANKS" --bind-to none "$BIN" train --data "$data" --out "$out"
                 --time-budget "$BUDGET" "${TRAIN_COMMON[@]}" "${f[@]}")
            record "${cmd[*]}"
            log "training $name for ${BUDGET}s"
            before=$(cut -d' ' -f1-3 /proc/loadavg)
            t0=$(date +%s)
            "${cmd[@]}" > "$out/train.log" 2>&1 || { tail -n 20 "$out/train.log" >&2; exit 1; }
            phase "training: $name" $(($(date +%s) - t0))
            echo "$BUDGET" > "$out/budget"
            echo "$name: $before / $(cut -d' ' -f1-3 /proc/loadavg)" >> "$WORK/load.txt"
            tail -n 2 "$out/train.log" >&2
        done
    fi

    # Restoration: one process per photo (inpainting needs each photo's own mask), timed.
    for i in "${!names[@]}"; do
        name=${names[$i]}
        t1=$(date +%s)
        if [[ ${datas[$i]} == =* ]]; then
            # The other recipe's run folder, under this recipe's name too.
            rm -rf "$WORK/train/$name"
            ln -s "${datas[$i]#=}" "$WORK/train/$name"
        fi
        ckpt=$(checkpoint "$WORK/train/$name")
        read -r -a rf <<< "${rflags[$i]}"
        IFS=',' read -r -a ts <<< "${tasks[$i]}"
        for task in "${ts[@]}"; do
            dest="$WORK/restored/$name/$task"
            rm -rf "$dest"
            mkdir -p "$dest"
            first=1
            for damaged in "$WORK/damaged/$task"/*.png; do
                file=$(basename "$damaged")
                cmd=("$BIN" restore --checkpoint "$ckpt" --input "$damaged" --out "$dest/$file")
                [ -f "$WORK/masks/$task/$file" ] && cmd+=(--mask "$WORK/masks/$task/$file")
                cmd+=(${rf[@]+"${rf[@]}"})
                [ $first = 1 ] && record "${cmd[*]}   # and every other photo of $task"
                first=0
                t0=$(date +%s.%N)
                "${cmd[@]}" > "$dest/${file%.png}.log" 2>&1 || { cat "$dest/${file%.png}.log" >&2; exit 1; }
                printf '%s\t%s\n' "$file" "$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')" >> "$dest/times.tsv"
            done
            log "restored $task with $name"
        done
        phase "restoring: $name" $(($(date +%s) - t1))
    done
fi

record "$VPY $PY report --work $WORK --ranks $RANKS"
mkdir -p bench
"$VPY" "$PY" report --work "$WORK" --ranks "$RANKS"
