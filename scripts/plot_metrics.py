#!/usr/bin/env python3
"""Plots a run's metrics.jsonl (written by `vqvae train`) to a PNG with matplotlib.

    python3 scripts/plot_metrics.py runs/a/metrics.jsonl --out runs/a/metrics.png

Panels: training loss and reconstruction MSE (log scale); PSNR (the training MSE as PSNR of
normalised pixels, and --val's PSNR with its damaged input's when present); the codebook's
perplexity and codes in use (VQ-VAE) or the KL term (VAE); images per second.
"""
import argparse
import json
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    train, val = [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                sys.exit(f"error: {path}:{number}: not a JSON line ({error})")
            (val if "val_mse" in record else train).append(record)
    if not train and not val:
        sys.exit(f"error: {path}: no metrics records")
    return train, val


def series(records, key):
    points = [(r["step"], r[key]) for r in records if key in r and r[key] is not None]
    return [p[0] for p in points], [p[1] for p in points]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", help="metrics.jsonl of a run")
    parser.add_argument("--out", help="PNG to write (default: beside the metrics file)")
    args = parser.parse_args()
    out = args.out or args.metrics.rsplit(".", 1)[0] + ".png"
    train, val = read(args.metrics)

    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    ax = axes[0][0]
    for key, label in (("loss", "loss"), ("mse", "reconstruction MSE")):
        x, y = series(train, key)
        if x:
            ax.plot(x, y, label=label)
    ax.set_yscale("log")
    ax.set_title("training loss")
    ax.set_xlabel("step")
    ax.legend()

    ax = axes[0][1]
    x, y = series(train, "mse")
    if x:  # normalised pixels span 1, like [0, 1] pixels: PSNR = 10 log10(1 / MSE)
        ax.plot(x, [10 * math.log10(1 / max(v, 1e-12)) for v in y], label="training batch")
    for key, label in (("val_psnr", "validation"), ("val_input_psnr", "validation, damaged input")):
        x, y = series(val, key)
        if x:
            ax.plot(x, y, marker="o", label=label)
    ax.set_title("PSNR (dB)")
    ax.set_xlabel("step")
    ax.legend()

    ax = axes[1][0]
    x, y = series(train, "perplexity")
    if x:
        ax.plot(x, y, label="perplexity")
        x2, y2 = series(train, "codes_used")
        ax.plot(x2, y2, label="codes used")
        ax.set_title("codebook")
    else:
        x, y = series(train, "kl")
        ax.plot(x, y, label="KL per pixel element")
        ax.set_title("KL term" if x else "(no codebook or KL term)")
    ax.set_xlabel("step")
    ax.legend()

    ax = axes[1][1]
    x, y = series(train, "images_per_second")
    ax.plot(x, y)
    ax.set_title("images per second")
    ax.set_xlabel("step")

    figure.tight_layout()
    figure.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
