#!/usr/bin/env python3
"""Checks that Pillow reads PNG files written by this project as they were meant: each PNG opens
in mode L or RGB and its pixels are, byte for byte, those of PNG + ".raw" (uint8 [H, W, C]).

    python3 Tests/Scripts/check_pngs_with_pillow.py PNG...

Exits non-zero naming the first file that differs.
"""
import sys

import numpy as np
from PIL import Image


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: check_pngs_with_pillow.py PNG...")
    for path in sys.argv[1:]:
        image = Image.open(path)
        if image.mode not in ("L", "RGB"):
            sys.exit(f"check_pngs_with_pillow.py: {path}: Pillow reads mode {image.mode}, expected L or RGB")
        pixels = np.asarray(image).tobytes()
        with open(path + ".raw", "rb") as raw:
            if pixels != raw.read():
                sys.exit(f"check_pngs_with_pillow.py: {path}: Pillow's pixels differ from {path}.raw")


if __name__ == "__main__":
    main()
