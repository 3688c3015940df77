#!/usr/bin/env python3
"""Decodes JPEG files with Pillow for JPEGImageTests: for each PATH, writes PATH.pillow (uint8
[H, W, C] pixels) and prints `PATH MODE H W`.

Usage: jpeg_pillow_read.py PATH...
"""
import sys

import numpy as np
from PIL import Image

for path in sys.argv[1:]:
    image = Image.open(path)
    pixels = np.asarray(image)
    pixels.tofile(path + ".pillow")
    print(path, image.mode, image.height, image.width)
