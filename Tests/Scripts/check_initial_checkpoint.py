#!/usr/bin/env python3
"""Checks, with h5py, that the checkpoint `vqvae train --steps 0 --seed 7` writes for the default
model on 28x28x1 images has the layout of spec/checkpoint.md, and that another seed gives other
weights.

    python3 Tests/Scripts/check_initial_checkpoint.py CHECKPOINT OTHER_SEED_CHECKPOINT

CHECKPOINT: format attributes, step 0, seed 7 in its config and /data, hidden 128; every
convolution's weight and bias under /model, /optimizer/adam_m and /optimizer/adam_v with the
PyTorch shapes, float32 little-endian, chunked and Fletcher-32 checksummed; weights within the
uniform bound 1/sqrt(fan_in); a 512x64 EMA codebook of mean 0 and standard deviation 1 with zero
counts and ema_sum equal to the codebook; Adam at t = 0 and lr = 3e-4; nothing else.
OTHER_SEED_CHECKPOINT: its /model/encoder/down0/weight differs.

Prints `ok PARAMETERS` (the model's parameter count); exits non-zero naming the first mismatch.
"""
import json
import sys

import h5py
import numpy as np


def check(condition, *what):
    if not condition:
        sys.exit("check_initial_checkpoint.py: " + " ".join(str(w) for w in what))


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: check_initial_checkpoint.py CHECKPOINT OTHER_SEED_CHECKPOINT")
    a, c = (h5py.File(p, "r") for p in sys.argv[1:3])
    names = []
    a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
    check(not np.array_equal(a["model/encoder/down0/weight"][()], c["model/encoder/down0/weight"][()]), "seeds must differ")
    check(a.attrs["format"] == "vqvae-checkpoint" and a.attrs["format_version"] == 1,
          "format", a.attrs["format"], a.attrs["format_version"])
    check(a.attrs["step"] == 0 and a.attrs["samples_seen"] == 0 and a.attrs["model"] == "vqvae",
          "step", a.attrs["step"], "samples_seen", a.attrs["samples_seen"], "model", a.attrs["model"])
    cfg = json.loads(a.attrs["config"])
    check(cfg["model"]["hidden"] == 128 and cfg["seed"] == 7, "config", cfg)
    shapes = {"encoder/down0": (64, 1, 4, 4), "encoder/down1": (128, 64, 4, 4), "encoder/conv": (128, 128, 3, 3),
              "encoder/res0/conv3x3": (32, 128, 3, 3), "encoder/res0/conv1x1": (128, 32, 1, 1),
              "encoder/res1/conv3x3": (32, 128, 3, 3), "encoder/res1/conv1x1": (128, 32, 1, 1),
              "pre_quant": (64, 128, 1, 1), "decoder/conv": (128, 64, 3, 3),
              "decoder/res0/conv3x3": (32, 128, 3, 3), "decoder/res0/conv1x1": (128, 32, 1, 1),
              "decoder/res1/conv3x3": (32, 128, 3, 3), "decoder/res1/conv1x1": (128, 32, 1, 1),
              "decoder/up0": (128, 64, 4, 4), "decoder/up1": (64, 1, 4, 4)}
    total = 0
    for name, shape in shapes.items():
        for group in ("model", "optimizer/adam_m", "optimizer/adam_v"):
            w, bias = a[f"{group}/{name}/weight"], a[f"{group}/{name}/bias"]
            check(w.shape == shape, name, w.shape, shape)
            out = shape[1] if name.startswith("decoder/up") else shape[0]
            check(bias.shape == (out,), name, bias.shape)
            for d in (w, bias):
                check(d.dtype == np.dtype("<f4") and d.chunks is not None and d.fletcher32, name, d.dtype, d.chunks)
        total += a[f"model/{name}/weight"].size + a[f"model/{name}/bias"].size
        fan_in = shape[1] * shape[2] * shape[3]
        check(np.abs(a[f"model/{name}/weight"][()]).max() <= 1 / np.sqrt(fan_in) + 1e-7, name, "exceeds 1/sqrt(fan_in)")
    check(a["model/quantizer/codebook"].shape == (512, 64) and a["model/quantizer/ema_count"].shape == (512,),
          "quantizer", a["model/quantizer/codebook"].shape, a["model/quantizer/ema_count"].shape)
    check(a["model/quantizer/ema_sum"].shape == (512, 64), "ema_sum", a["model/quantizer/ema_sum"].shape)
    check(np.all(a["model/quantizer/ema_count"][()] == 0), "ema_count is not zero")
    check(np.array_equal(a["model/quantizer/ema_sum"][()], a["model/quantizer/codebook"][()]), "ema_sum differs from the codebook")
    cb = a["model/quantizer/codebook"][()]
    check(abs(cb.mean()) < 0.02 and abs(cb.std() - 1) < 0.02, "codebook mean", cb.mean(), "std", cb.std())
    check(len(names) == len(shapes) * 6 + 3, len(names), "datasets")
    check(a["optimizer"].attrs["t"] == 0 and abs(a["optimizer"].attrs["lr"] - 3e-4) < 1e-9,
          "optimizer t", a["optimizer"].attrs["t"], "lr", a["optimizer"].attrs["lr"])
    check(a["data"].attrs["seed"] == 7 and a["data"].attrs["shuffle"] == 1, "data", dict(a["data"].attrs))
    print("ok", total)


if __name__ == "__main__":
    main()
