#!/usr/bin/env python3
"""How the codec's quality grows with training: every checkpoint of a residual-VQ run, each
held-out photo compressed at 1..L codebooks (no prior: the decoded image does not depend on it)
and decompressed, the mean PSNR per checkpoint and number of codebooks, as a markdown table.

    python3 scripts/codec_training_curve.py --run runs/codec/vq-d3-l4 --photos runs/codec/test \
        --vqvae runs/codec/bin/vqvae --out bench/codec-training.md [--seconds-per-step S] [--notes TEXT]
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255 ** 2 / mse)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a vqvae train --out folder (its checkpoints/step-*.h5)")
    ap.add_argument("--photos", required=True, help="a folder of the held-out photos as N.png")
    ap.add_argument("--vqvae", default=".build/release/vqvae")
    ap.add_argument("--out", required=True)
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--notes", default="")
    args = ap.parse_args()
    checkpoints = sorted(glob.glob(os.path.join(args.run, "checkpoints", "step-*.h5")))
    if not checkpoints:
        sys.exit(f"error: no checkpoints in {args.run}/checkpoints")
    photos = sorted(glob.glob(os.path.join(args.photos, "*.png")), key=lambda p: int(os.path.basename(p)[:-4]))
    if not photos:
        sys.exit(f"error: no photos in {args.photos}")
    originals = [np.asarray(Image.open(p).convert("RGB")) for p in photos]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for checkpoint in checkpoints:
            step = int(re.search(r"step-(\d+)", checkpoint).group(1))
            means = []
            for q in range(1, args.levels + 1):
                values = []
                for photo, original in zip(photos, originals):
                    vqz, png = os.path.join(work, "x.vqz"), os.path.join(work, "x.png")
                    subprocess.run([args.vqvae, "compress", "--checkpoint", checkpoint, photo, "-o", vqz, "--levels", str(q),
                                    "--force"], check=True, capture_output=True)
                    subprocess.run([args.vqvae, "decompress", "--checkpoint", checkpoint, vqz, "-o", png, "--force"],
                                   check=True, capture_output=True)
                    values.append(psnr(original, np.asarray(Image.open(png).convert("RGB"))))
                means.append(float(np.mean(values)))
            rows.append((step, means))
            print(step, " ".join(f"{m:.2f}" for m in means), flush=True)
    with open(args.out, "w") as f:
        f.write("# The codec's quality against training steps\n\n")
        f.write(f"{args.notes}\n\n" if args.notes else "")
        f.write(f"Made by `scripts/codec_training_curve.py` from every checkpoint of `{args.run}`: the {len(photos)} held-out photos "
                "compressed whole at each number of codebooks (`--levels`, the encoder's codes, no `--refine`) and decompressed; "
                "mean PSNR over the photos.\n\n")
        f.write("| step | " + " | ".join(f"{q} codebook{'s' if q > 1 else ''} (dB)" for q in range(1, args.levels + 1)) + " |\n")
        f.write("| --- |" + " --- |" * args.levels + "\n")
        for step, means in rows:
            f.write(f"| {step} | " + " | ".join(f"{m:.2f}" for m in means) + " |\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
