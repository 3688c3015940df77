#!/usr/bin/env python3
"""Writes a small synthetic image dataset (spec/dataset.md) for the cluster and fault tests:
`images` (N, S, S, 1) uint8, each a Gaussian blob at a random place and of a random width.

    python3 scripts/synthetic_data.py OUT.h5 [--count 256] [--size 16] [--seed 0]
"""
import argparse

import h5py
import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    s = args.size
    y, x = np.mgrid[0:s, 0:s]
    centres = rng.uniform(3, s - 3, (args.count, 2))
    widths = rng.uniform(2, 6, args.count)
    blobs = np.exp(-((x[None] - centres[:, 0, None, None]) ** 2 + (y[None] - centres[:, 1, None, None]) ** 2)
                   / (2 * widths[:, None, None] ** 2))
    with h5py.File(args.out, "w") as f:
        f.create_dataset("images", data=(255 * blobs).astype(np.uint8)[..., None], chunks=(16, s, s, 1))


if __name__ == "__main__":
    main()
