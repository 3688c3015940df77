#!/usr/bin/env bash
# Runs every test of the project: installs missing dependencies, builds in release (the numeric
# tests need optimised code), runs the unit, data and end-to-end tests (XCTest) and then the short
# Slurm check (scripts/slurm_test.sh --short). Extra arguments go to `swift test` (e.g. --filter
# ModelTests) and leave the Slurm check out.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install_dependencies.sh
# TensorBoard's own loader reads the event files `train --tensorboard` writes (a test-only tool).
python3 -c "import tensorboard" 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check tensorboard

# mpirun refuses to run as root without these; harmless otherwise.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

swift build -c release -Xswiftc -enable-testing --build-tests
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
swift test -c release -Xswiftc -enable-testing --skip-build --disable-swift-testing "$@" 2>&1 | tee "$log" || status=$?

# One closing line for the whole run, from XCTest's own totals.
summary=$(grep -E "^[[:space:]]*Executed [0-9]+ tests?, with [0-9]+ failures?" "$log" | tail -n 1 || true)
if [ -z "$summary" ]; then
    echo "error: no test results found" >&2
    exit 1
fi
executed=$(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<<"$summary")
failed=$(sed -E 's/.*with ([0-9]+) failures?.*/\1/' <<<"$summary")
if [ "$executed" -eq 0 ]; then
    echo "error: no test was executed" >&2
    exit 1
fi

# The whole suite (no arguments, as CI runs it) ends with the short Slurm check, counted as one
# more test: a Slurm cluster on this machine (installed when missing), one srun launch on this
# machine as the node and one across two nodes made of network namespaces, one scancel
# --signal=TERM and requeue (root; it fails, never skips, when Slurm cannot start).
if [ $# -eq 0 ]; then
    echo "Slurm check: bash scripts/slurm_test.sh --short"
    slurm_start=$SECONDS
    if VQVAE=.build/release/vqvae bash scripts/slurm_test.sh --short; then
        executed=$((executed + 1))
        echo "Slurm check passed in $((SECONDS - slurm_start)) s"
    else
        executed=$((executed + 1)) failed=$((failed + 1))
        echo "error: Slurm check (scripts/slurm_test.sh --short) failed after $((SECONDS - slurm_start)) s" >&2
    fi
fi
echo "$((executed - failed)) passed, $failed failed"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
