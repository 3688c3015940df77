#!/usr/bin/env python3
"""Writes JPEG files with Pillow for JPEGImageTests, each with the pixels Pillow decodes from it.

Usage: jpeg_pillow_fixtures.py OUT_FOLDER

For every case NAME: OUT_FOLDER/NAME.jpg, OUT_FOLDER/NAME.raw (Pillow's decoded pixels as uint8
[H, W, C], CMYK converted to RGB by Pillow) and an entry in OUT_FOLDER/manifest.json giving
[H, W, C].
"""
import json
import sys

import numpy as np
from PIL import Image

out = sys.argv[1]
rng = np.random.default_rng(7)
y, x = np.mgrid[0:45, 0:61]
smooth = np.stack([(x * 4) % 256, (y * 5) % 256, ((x + y) * 3) % 256], -1).astype(np.uint8)
noisy = np.clip(smooth.astype(int) + rng.integers(-20, 21, smooth.shape), 0, 255).astype(np.uint8)

cases = {
    "gray": (Image.fromarray(noisy[:, :, 0]), dict(quality=90)),
    "rgb-420": (Image.fromarray(noisy), dict(quality=90)),
    "rgb-444": (Image.fromarray(noisy), dict(quality=95, subsampling=0)),
    "progressive": (Image.fromarray(noisy), dict(quality=85, progressive=True)),
    "cmyk": (Image.fromarray(noisy).convert("CMYK"), dict(quality=95)),
    "one-pixel": (Image.fromarray(noisy[:1, :1]), dict(quality=90)),
}
manifest = {}
for name, (image, options) in cases.items():
    path = f"{out}/{name}.jpg"
    image.save(path, **options)
    decoded = Image.open(path)
    decoded = decoded.convert("L" if decoded.mode == "L" else "RGB")
    pixels = np.asarray(decoded)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    pixels.tofile(f"{out}/{name}.raw")
    manifest[name] = list(pixels.shape)
with open(f"{out}/manifest.json", "w") as f:
    json.dump(manifest, f)
