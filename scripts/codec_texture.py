#!/usr/bin/env python3
"""How much periodic texture the codec's decoded photos carry (bench/codec-texture.md).

    python3 scripts/codec_texture.py --photos runs/codec/test --ours runs/codec/results.tsv \
        --out bench/codec-texture.md --figure bench/codec-texture.png --pair d3-l4,d3-l4-resize --levels 2

A decoder whose upsampling draws a fixed pattern on smooth areas (the checkerboard of transposed
convolutions) puts energy at periods of 2 and 4 pixels. For every decoded photo (and, as the
reference, every original) this takes the differences of neighbouring pixels (grey, along rows and
along columns), the mean magnitude of their Fourier transform along that axis, and reports the
magnitude at periods 2 and 4 divided by the median magnitude of the spectrum: about 1 where nothing
repeats, more where a pattern does. Means over the photos, per model and number of codebooks. The
figure shows the top-left quarter of photo 0 as the original and as each model of --pair decodes it
at --levels codebooks.
"""
import argparse
import csv
import os

import numpy as np
from PIL import Image


def periodicity(image):
    """(period 2, period 4) magnitudes over the median, averaged over rows and columns."""
    grey = np.asarray(Image.fromarray(image).convert("L"), dtype=np.float64)
    ratios = []
    for axis in (1, 0):
        difference = np.diff(grey, axis=axis)
        n = difference.shape[axis] - difference.shape[axis] % 4  # periods 2 and 4 fall on exact bins
        difference = difference.take(range(n), axis=axis)
        spectrum = np.abs(np.fft.rfft(difference, axis=axis)).mean(axis=1 - axis)
        median = np.median(spectrum[1:])
        ratios.append((spectrum[n // 2] / median, spectrum[n // 4] / median))
    return tuple(float(np.mean([r[k] for r in ratios])) for k in range(2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", required=True, help="folder of the original photos, 0.png, 1.png, ...")
    ap.add_argument("--ours", required=True, help="results.tsv of scripts/codec_results.sh")
    ap.add_argument("--out", required=True)
    ap.add_argument("--figure")
    ap.add_argument("--pair", default="", help="models to show side by side, comma-separated")
    ap.add_argument("--levels", type=int, default=2)
    ap.add_argument("--cpu", default="")
    args = ap.parse_args()

    rows = list(csv.reader(open(args.ours), delimiter="\t"))
    photos = sorted({int(r[2]) for r in rows})
    originals = {i: np.asarray(Image.open(os.path.join(args.photos, f"{i}.png")).convert("RGB")) for i in photos}
    reference = np.mean([periodicity(originals[i]) for i in photos], axis=0)
    results = {}
    for r in rows:
        results.setdefault((r[0], int(r[1])), []).append(periodicity(np.asarray(Image.open(r[4]).convert("RGB"))))
    lines = ["| model, codebooks | period 2 | period 4 |", "| --- | --- | --- |",
             f"| originals | {reference[0]:.2f} | {reference[1]:.2f} |"]
    for (name, q), values in results.items():
        mean = np.mean(values, axis=0)
        lines.append(f"| {name}, {q} | {mean[0]:.2f} | {mean[1]:.2f} |")
    with open(args.out, "w") as f:
        f.write("# Periodic texture in the codec's decoded photos\n\n")
        f.write("Made by `scripts/codec_texture.py` from the photos `scripts/codec_results.sh` decoded"
                + (f" ({args.cpu})" if args.cpu else "") + ". For each photo: the differences of neighbouring grey "
                "pixels along rows and along columns, the mean magnitude of their Fourier transform along that axis, "
                "and its value at periods of 2 and 4 pixels divided by the spectrum's median (about 1 where nothing "
                "repeats). Means over the " + f"{len(photos)} held-out photos. A transposed convolution's checkerboard "
                "shows at these periods; the code grid of 8x8 pixels would show at period 8.\n\n")
        f.write("\n".join(lines) + "\n")
        if args.figure and args.pair:
            names = args.pair.split(",")
            f.write(f"\nThe top-left quarter of photo 0: the original, then {', '.join(names)} at {args.levels} "
                    f"codebook(s):\n\n![photo 0 decoded by each model]({os.path.basename(args.figure)})\n")
    if args.figure and args.pair:
        original = originals[photos[0]]
        panels = [original]
        for name in args.pair.split(","):
            png = next(r[4] for r in rows if (r[0], int(r[1]), int(r[2])) == (name, args.levels, photos[0]))
            panels.append(np.asarray(Image.open(png).convert("RGB")))
        h, w = original.shape[:2]
        Image.fromarray(np.concatenate([p[: h // 2, : w // 2] for p in panels], axis=1)).save(args.figure)


if __name__ == "__main__":
    main()
