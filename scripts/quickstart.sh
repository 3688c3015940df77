#!/usr/bin/env bash
# The main job end to end on real data that ships in packages:
#   install dependencies, build (release), prepare 32x32 photo patches and MNIST digits as HDF5,
#   train the standard VQ-VAE of spec/model.md with 2 MPI ranks, and report where the checkpoint is.
# Environment: STEPS (default 2000), RANKS (default 2), OUT (default runs/photos32).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STEPS=${STEPS:-2000}
RANKS=${RANKS:-2}
OUT=${OUT:-runs/photos32}

bash scripts/install_dependencies.sh
swift build -c release
python3 scripts/prepare_data.py photos mnist --out data

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
rm -rf "$OUT"
mpirun -np "$RANKS" --oversubscribe --bind-to none \
    .build/release/vqvae train --data data/photos32-train.h5 --out "$OUT" \
    --steps "$STEPS" --global-batch-size 32 --kmeans-init --log-every 100 --checkpoint-every 500

echo "metrics: $OUT/metrics.jsonl"
