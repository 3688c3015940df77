#!/usr/bin/env python3
"""Compares, with h5py, the checkpoints of runs that differ only in their number of ranks (the
same global batch, seed and flags), to see how far they drift apart.

    python3 Tests/Scripts/compare_world_sizes.py ONE_RANK_FOLDER OTHER_FOLDER...

Each folder is a run's `checkpoints/` holding step-00000001.h5 and step-00000005.h5. Every other
run is compared with the one-rank run and must have another `world_size`. Prints four figures,
the worst over the other runs:

  1. step 1: the gradients (`/optimizer/adam_m`, which is 0.1 * gradient after one step; one per
     trained tensor, 30 for the default architecture) and the EMA statistics (`ema_count`, `ema_sum`, `codebook`), as
     max|a - b| / max|b| per tensor;
  2. step 5: every tensor, as max|a - b| / max|b| over the entries whose step-1 gradient is
     more than 1e-3 of its tensor's largest (see LIVE below);
  3. step 5: every float tensor, as ||a - b|| / ||b||;
  4. step 5: the largest absolute difference of the other entries (small or noise gradients).

LIVE: Adam divides each entry's gradient by that entry's own running RMS, so rounding that is
1e-6 of a tensor's largest gradient becomes a relative error of 1e-6 / r in the step of an entry
whose gradient is r of the largest: for r = 3.5e-4 (measured, the first layer's weight, W = 16
against W = 1), a 5% difference in the step, 2e-5 after 5 steps, 2.6e-4 of the tensor's
largest weight. Such entries are held to the absolute bound of figure 4 instead, as are dead
ReLU channels (zero true gradient, where rounding alone decides the sign of the step).

The limits are the caller's (Tests/EndToEndTests/DistributedTests.swift); exits non-zero when a
file is missing or a checkpoint does not have the expected contents.
"""
import sys

import h5py
import numpy as np


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def datasets(group):
    names = []
    group.visit(lambda n: names.append(n) if isinstance(group[n], h5py.Dataset) else None)
    return names


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: compare_world_sizes.py ONE_RANK_FOLDER OTHER_FOLDER...")
    one, others = sys.argv[1], sys.argv[2:]
    worst_grad = worst_param = worst_norm = worst_noise = 0.0
    for other in others:
        a, b = h5py.File(other + "/step-00000001.h5", "r"), h5py.File(one + "/step-00000001.h5", "r")
        names = datasets(b["optimizer/adam_m"])
        # Every model tensor but the EMA codebooks' state (each residual level's too; the
        # projections of --codebook-dim train). A --codebook grad codebook has Adam moments.
        ema = {n for n in datasets(b["model"]) if n.startswith("quantizer/") and
               n.rsplit("/", 1)[-1] in ("ema_count", "ema_sum", "codebook") and n not in names}
        trained = sorted(n for n in datasets(b["model"]) if n not in ema)
        if sorted(names) != trained or len(names) < 30:
            sys.exit(f"compare_world_sizes.py: {one}/step-00000001.h5 holds {len(names)} Adam moments, expected one per trained tensor ({len(trained)}): {names}")
        for n in names:  # adam_m after one step is 0.1 * gradient
            worst_grad = max(worst_grad, rel(a["optimizer/adam_m/" + n][()], b["optimizer/adam_m/" + n][()]))
        for n in sorted(ema):  # none for the VAE and the autoencoder
            worst_grad = max(worst_grad, rel(a["model/" + n][()], b["model/" + n][()]))
        # After 5 steps: entries whose step-1 gradient is small (below 1e-3 of their tensor's
        # largest, dead ReLU channels among them) are judged apart (LIVE above).
        g1 = h5py.File(one + "/step-00000001.h5", "r")
        a, b = h5py.File(other + "/step-00000005.h5", "r"), h5py.File(one + "/step-00000005.h5", "r")
        for n in datasets(b):
            x, y = a[n][()], b[n][()]
            if y.dtype.kind != "f":
                worst_param = max(worst_param, rel(x, y))
                continue
            key = "optimizer/adam_m/" + n[len("model/"):]
            if n.startswith("model/") and key in g1:
                live = np.abs(g1[key][()]) > 1e-3 * np.abs(g1[key][()]).max()
            else:
                live = np.ones(y.shape, bool)
            worst_param = max(worst_param, float(np.abs(x - y)[live].max() / max(np.abs(y).max(), 1e-12)) if live.any() else 0)
            worst_norm = max(worst_norm, float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-12)))
            worst_noise = max(worst_noise, float(np.abs(x - y)[~live].max()) if (~live).any() else 0)
        if a.attrs["world_size"] == b.attrs["world_size"]:
            sys.exit(f"compare_world_sizes.py: {other} and {one} were both written by {a.attrs['world_size']} rank(s)")
    print(f"{worst_grad:.3e} {worst_param:.3e} {worst_norm:.3e} {worst_noise:.3e}")


if __name__ == "__main__":
    main()
