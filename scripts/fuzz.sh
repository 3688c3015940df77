#!/usr/bin/env bash
# Fuzzes the readers of user files with libFuzzer, AddressSanitizer and coverage:
#   dataset     ImageDataset(paths:), its memory check, a small batch read, labels, inspect
#   checkpoint  Checkpoint.verify, the stored configuration, Checkpoint.load into a model built
#               from it, inspect; PriorCheckpoint.load into a prior built from its settings
#   codec       VQZFile(bytes:) and the decoding of its rANS stream, uniform and under a prior
# (harnesses in Tests/Fuzz/). Each input is a whole file; the seeds are valid files: small
# datasets as h5py writes them (Tests/Fuzz/make_corpus.py), real checkpoints of small models
# written by `vqvae train`, .vqz files written by `vqvae compress`, plus the saved regression inputs.
#
#   scripts/fuzz.sh [SECONDS]     seconds per fuzzer (default 300, or $FUZZ_SECONDS)
#
# Environment: FUZZ_SECONDS, FUZZ_TARGETS (default "dataset checkpoint codec"), FUZZ_BUILD_DIR (default
# .build/fuzz: binaries, the growing corpus, logs), FUZZ_OUT (default $FUZZ_BUILD_DIR/findings:
# every failing input, by fuzzer), FUZZ_TIMEOUT (seconds per input, default 10), FUZZ_RSS_MB
# (default 2048), VQVAE_BINARY (a release `vqvae` for the checkpoint seeds; built if missing).
#
# Every failing input is run again alone and classified by Tests/Fuzz/classify.py: a failure in
# the project's code (a trap, an ASan error, a hang or huge allocation in our frames, HDF5 objects
# left open), or a crash inside libhdf5 itself, known when its signature is listed in
# Tests/Fuzz/known-libhdf5/signatures.txt. Exits 1 when any failure is in the project's code
# (or, with FUZZ_STRICT=1, when anything failed at all), 0 otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-${FUZZ_SECONDS:-300}}
targets=${FUZZ_TARGETS:-dataset checkpoint codec}
build=${FUZZ_BUILD_DIR:-.build/fuzz}
findings=${FUZZ_OUT:-$build/findings}
timeout=${FUZZ_TIMEOUT:-10}
rss=${FUZZ_RSS_MB:-2048}
mkdir -p "$build" "$findings" "$build/tmp"
build=$(cd "$build" && pwd)
findings=$(cd "$findings" && pwd)
# The harnesses write each input to a file in TMPDIR; one that crashes leaves it there.
export TMPDIR="$build/tmp"
log() { echo "fuzz: $*"; }
# Failures are reported by libFuzzer and ASan, not by Swift's own crash backtracer. Memory that
# libhdf5 keeps until exit is not a finding (LeakSanitizer off). A request for more memory than
# exists returns NULL, as malloc does outside ASan, so that only what crashes (or really
# allocates more than the RSS limit; libFuzzer reports each such allocation with its stack) is a
# finding.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}

# --- Build: Model and Data as static libraries, then one executable per harness, all with the
# same sanitizers (coverage for the fuzzer in every module, so it sees inside the readers).
# The C shims of Sources/C*/ (their module maps link the libraries) and the system libraries'
# header and library folders from pkg-config.
flags=(-O -sanitize=fuzzer,address -parse-as-library -I "$build/modules")
for shim in Sources/C*/; do flags+=(-I "$shim"); done
libraries=()
for package in hdf5 openblas libpng libjpeg; do
    pkg-config --exists "$package" || continue
    for include in $(pkg-config --cflags-only-I "$package"); do flags+=(-Xcc "$include"); done
    for folder in $(pkg-config --libs-only-L "$package"); do libraries+=("$folder"); done
done
mkdir -p "$build/modules"
log "building the fuzzers in $build"
# The C target that wraps libjpeg (SwiftPM makes its module map; here it is written out).
mkdir -p "$build/modules/CJPEGShim"
cat > "$build/modules/CJPEGShim/module.modulemap" <<MAP
module CJPEGShim {
    header "$(pwd)/Sources/CJPEGShim/include/jpeg_shim.h"
    link "jpeg"
    export *
}
MAP
clang -O1 -fsanitize=fuzzer-no-link,address -I Sources/CJPEGShim/include $(pkg-config --cflags libjpeg 2>/dev/null) \
    -c Sources/CJPEGShim/jpeg_shim.c -o "$build/jpeg_shim.o"
swiftc "${flags[@]}" -emit-library -static -emit-module -module-name Model \
    -emit-module-path "$build/modules/Model.swiftmodule" Sources/Model/*.swift -o "$build/libModel.a"
swiftc "${flags[@]}" -emit-library -static -emit-module -module-name Data \
    -emit-module-path "$build/modules/Data.swiftmodule" Sources/Data/*.swift -o "$build/libData.a"
swiftc "${flags[@]}" -emit-library -static -emit-module -module-name Codec \
    -emit-module-path "$build/modules/Codec.swiftmodule" Sources/Codec/*.swift -o "$build/libCodec.a"
for target in dataset checkpoint codec; do
    name="$(tr '[:lower:]' '[:upper:]' <<<"${target:0:1}")${target:1}Fuzzer"
    # ld.gold warns about ASan's local helper symbols of every object; the warnings are harmless.
    swiftc "${flags[@]}" -module-name "$name" Tests/Fuzz/FuzzSupport.swift "Tests/Fuzz/$name.swift" \
        "$build/libData.a" "$build/libCodec.a" "$build/libModel.a" "$build/jpeg_shim.o" "${libraries[@]}" \
        -o "$build/$target-fuzzer" 2> >(grep -v "Cannot export local symbol '__asan" >&2)
done

# --- Seeds: valid files only.
seeds="$build/seeds"
rm -rf "$seeds"
mkdir -p "$seeds/dataset" "$seeds/checkpoint" "$seeds/codec"
python3 Tests/Fuzz/make_corpus.py "$seeds/dataset"
vqvae=${VQVAE_BINARY:-.build/release/vqvae}
if [ ! -x "$vqvae" ]; then
    log "building vqvae (release) for the checkpoint seeds"
    swift build -c release --product vqvae
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import sys, h5py, numpy as np
rng = np.random.default_rng(1)
with h5py.File(sys.argv[1] + "/gray.h5", "w") as f:
    f.create_dataset("images", data=rng.integers(0, 256, (8, 8, 8, 1), dtype=np.uint8), chunks=(4, 8, 8, 1))
with h5py.File(sys.argv[1] + "/rgb.h5", "w") as f:
    f.create_dataset("images", data=rng.random((8, 4, 4, 3), dtype=np.float32))
PY
small=(--hidden 8 --res-hidden 4 --code-dim 4 --codes 8 --global-batch-size 4 --threads 1)
checkpoint_seed() {  # NAME DATA STEPS FLAGS...
    local name=$1 data=$2 steps=$3
    shift 3
    "$vqvae" train --data "$work/$data" --out "$work/$name" --steps "$steps" "${small[@]}" "$@" >/dev/null
    cp "$(ls "$work/$name"/checkpoints/step-*.h5 | tail -n 1)" "$seeds/checkpoint/$name.h5"
}
checkpoint_seed ema-initial gray.h5 0
checkpoint_seed ema-trained gray.h5 2
checkpoint_seed grad-codebook gray.h5 0 --codebook grad
checkpoint_seed rgb-one-block rgb.h5 0 --res-blocks 1 --down 1
# .vqz seeds: small images compressed (every code equally likely) by tiny untrained models.
python3 - "$work" <<'PY'
import sys
from PIL import Image
import numpy as np
rng = np.random.default_rng(2)
for name, (h, w, c) in {"rgb": (13, 10, 3), "gray": (8, 17, 1)}.items():
    Image.fromarray(rng.integers(0, 256, (h, w, c), dtype=np.uint8).squeeze()).save(f"{sys.argv[1]}/{name}.png")
PY
checkpoint_seed rvq rgb.h5 0 --codebooks 2 --down 1
"$vqvae" train-prior --checkpoint "$seeds/checkpoint/rvq.h5" --data "$work/rgb.h5" --out "$work/prior" --steps 1 --crop 4 \
    --crops-per-image 1 --global-batch-size 4 --channels 16 >/dev/null
cp "$work/prior/checkpoints/step-00000001.h5" "$seeds/checkpoint/prior.h5"
"$vqvae" compress --checkpoint "$seeds/checkpoint/rvq.h5" "$work/rgb.png" -o "$seeds/codec/rvq.vqz" >/dev/null
"$vqvae" compress --checkpoint "$seeds/checkpoint/rvq.h5" "$work/rgb.png" -o "$seeds/codec/rvq-1.vqz" --levels 1 >/dev/null
"$vqvae" compress --checkpoint "$seeds/checkpoint/rvq.h5" --prior "$seeds/checkpoint/prior.h5" "$work/rgb.png" \
    -o "$seeds/codec/rvq-map.vqz" --psnr 12 >/dev/null
"$vqvae" compress --checkpoint "$seeds/checkpoint/ema-initial.h5" "$work/gray.png" -o "$seeds/codec/gray.vqz" >/dev/null
for target in dataset checkpoint codec; do
    if compgen -G "Tests/Fuzz/regressions/$target/*" >/dev/null; then cp Tests/Fuzz/regressions/$target/* "$seeds/$target/"; fi
done
log "seeds: $(ls "$seeds/dataset" | wc -l) datasets, $(ls "$seeds/checkpoint" | wc -l) checkpoints, $(ls "$seeds/codec" | wc -l) codec files"

# --- Fuzz each target, one process at a time. libFuzzer stops at a failing input; it is saved
# with the full report, and fuzzing starts again from the grown corpus until the time is up.
known=Tests/Fuzz/known-libhdf5/signatures.txt
options=(-timeout="$timeout" -rss_limit_mb="$rss" -print_final_stats=1)
ours_total=0
library_total=0
summary=()
for target in $targets; do
    corpus="$build/corpus/$target"
    artifacts="$findings/$target"
    rm -rf "$artifacts" "$build/logs/$target"
    mkdir -p "$corpus" "$artifacts" "$build/logs/$target"
    log "fuzzing $target for ${seconds}s (timeout ${timeout}s per input, RSS limit ${rss} MB); logs in $build/logs/$target"
    deadline=$((SECONDS + seconds))
    runs=0
    executions=0
    early=0
    stats=""
    while [ "$SECONDS" -lt "$deadline" ]; do
        runs=$((runs + 1))
        runlog="$build/logs/$target/run-$runs.log"
        dictionary=(-dict=Tests/Fuzz/hdf5.dict)
        [ "$target" = codec ] && dictionary=()
        "$build/$target-fuzzer" "${options[@]}" -max_total_time=$((deadline - SECONDS)) \
            "${dictionary[@]}" -artifact_prefix="$artifacts/" "$corpus" "$seeds/$target" >"$runlog" 2>&1 || true
        done_units=$(sed -nE 's/^stat::number_of_executed_units: ([0-9]+).*/\1/p' "$runlog" | tail -n 1)
        executions=$((executions + ${done_units:-0}))
        last=$(grep -E "^#[0-9]+[[:space:]].* cov: " "$runlog" | tail -n 1 || true)
        [ -n "$last" ] && stats=$last
        unit=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$runlog" | tail -n 1)
        if [ -n "$unit" ] && [ -e "$unit" ]; then
            cp "$runlog" "$unit.report"
        elif [ "$SECONDS" -lt "$deadline" ]; then
            tail -n 30 "$runlog" >&2
            echo "error: the $target fuzzer stopped without saving an input (see $runlog)" >&2
            exit 1
        fi
        # A failure before the first coverage line means a corpus input fails by itself.
        if grep -q "INITED" "$runlog"; then early=0; else early=$((early + 1)); fi
        if [ "$early" -ge 3 ]; then
            tail -n 30 "$runlog" >&2
            echo "error: the $target fuzzer fails while loading its corpus (see $runlog)" >&2
            exit 1
        fi
    done
    if [ -z "$stats" ]; then
        echo "error: the $target fuzzer did not run (see $build/logs/$target)" >&2
        exit 1
    fi
    coverage=$(sed -E 's/.* cov: ([0-9]+).*/\1/' <<<"$stats")
    features=$(sed -E 's/.* ft: ([0-9]+).*/\1/' <<<"$stats")
    corpus_size=$(ls "$corpus" | wc -l)
    ours=0
    library=0
    new_library=0
    classification="$artifacts/classification.txt"
    : >"$classification"
    for input in "$artifacts"/crash-* "$artifacts"/timeout-* "$artifacts"/oom-* "$artifacts"/leak-*; do
        [ -e "$input" ] || continue
        case "$input" in *.report | *.alone) continue ;; esac
        # Run it again alone, with full stacks for allocations: does it fail without the inputs
        # the fuzzer ran before it in the same process?
        reproduces="reproduces alone"
        ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0" \
            "$build/$target-fuzzer" "${options[@]}" "$input" >"$input.alone" 2>&1 && reproduces="DOES NOT reproduce alone"
        # Classified from the run alone when it reproduces (full stacks), else from the report of
        # the fuzzing run that found it.
        report="$input.alone"
        if [ "$reproduces" != "reproduces alone" ] && [ -e "$input.report" ]; then report="$input.report"; fi
        read -r verdict signature < <(python3 Tests/Fuzz/classify.py "$report")
        if [ "$verdict" = ours ]; then
            ours=$((ours + 1))
            echo "OURS          $signature ($reproduces) $input" >>"$classification"
        elif grep -qxF "$signature" <(sed 's/[[:space:]]*#.*//' "$known" 2>/dev/null); then
            library=$((library + 1))
            echo "libhdf5       $signature ($reproduces) $input" >>"$classification"
        else
            library=$((library + 1))
            new_library=$((new_library + 1))
            echo "libhdf5 (new) $signature ($reproduces) $input" >>"$classification"
        fi
    done
    ours_total=$((ours_total + ours))
    library_total=$((library_total + library))
    summary+=("$target: ${seconds}s in $runs run(s), $executions executions, coverage $coverage edges ($features features), corpus $corpus_size; failing inputs: $ours in our code, $library inside libhdf5 ($new_library of them with signatures not in $known)")
    if [ -s "$classification" ]; then
        awk '{ $NF = ""; print }' "$classification" | sort | uniq -c | sed 's/^/  /'
    fi
done

echo
for line in "${summary[@]}"; do echo "fuzz: $line"; done
echo "fuzz: failing inputs and their reports are in $findings"
if [ "$ours_total" -gt 0 ]; then
    echo "fuzz: FAILED: $ours_total failing input(s) in the project's code (see classification.txt)" >&2
    exit 1
fi
if [ "${FUZZ_STRICT:-0}" = 1 ] && [ "$library_total" -gt 0 ]; then
    echo "fuzz: FAILED (FUZZ_STRICT): $library_total input(s) crash inside libhdf5" >&2
    exit 1
fi
echo "fuzz: no failure in the project's code"
