#!/usr/bin/env python3
"""Writes a gray PNG, with Pillow, of the first ROWS x COLUMNS images of an HDF5 file laid side by
side in row-major order (channel 0), cropped to its top-left HEIGHT x WIDTH: an image larger than
a model's tiles, made of real digits.

    python3 Tests/Scripts/make_digit_mosaic.py IMAGES_H5 OUT_PNG --grid ROWSxCOLUMNS --size HEIGHTxWIDTH

IMAGES_H5 holds uint8 `images` of shape (N, H, W, C). Exits non-zero with a message when it holds
too few images or the mosaic is smaller than the size asked for.
"""
import argparse
import sys

import h5py
import numpy as np
from PIL import Image


def pair(text):
    first, second = text.lower().split("x")
    return int(first), int(second)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images")
    parser.add_argument("out")
    parser.add_argument("--grid", type=pair, required=True)
    parser.add_argument("--size", type=pair, required=True)
    args = parser.parse_args()
    (rows, columns), (height, width) = args.grid, args.size

    d = h5py.File(args.images, "r")["images"][:rows * columns, :, :, 0]
    if len(d) < rows * columns:
        sys.exit(f"make_digit_mosaic.py: {args.images} holds {len(d)} images, fewer than {rows}x{columns}")
    grid = np.block([[d[r * columns + c] for c in range(columns)] for r in range(rows)])
    if grid.shape[0] < height or grid.shape[1] < width:
        sys.exit(f"make_digit_mosaic.py: the mosaic is {grid.shape[0]}x{grid.shape[1]}, smaller than {height}x{width}")
    Image.fromarray(grid[:height, :width]).save(args.out)


if __name__ == "__main__":
    main()
