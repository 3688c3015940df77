#!/usr/bin/env python3
"""Writes PNG files in every mode the PNG reader must handle, with Pillow (and, for the modes Pillow
cannot write, a minimal PNG encoder below), and what the documented reading rules give for each.

    python3 Tests/Scripts/make_png_fixtures.py OUT_FOLDER

For each case NAME it writes `NAME.png`, `NAME.expected` (the uint8 [H, W, C] pixels) and, for
some, the same image converted (`gray8.rgb`: gray repeated into RGB; `rgb8.luma`: Pillow's
convert('L'); `gray_alpha.white`, `rgba8.black`: alpha composited onto white or black), plus
`manifest.json` with each case's [H, W, C]. Modes: 1-, 4-, 8- and 16-bit gray, gray with alpha
(8 and 16 bits), RGB and RGBA (8 and 16 bits), palettes (with tRNS transparency, 4 bits),
Adam7 interlacing and a gAMA chunk. Checks on the way that the files really are in the modes
named (IHDR's bit depth and colour type); fails with an AssertionError naming the case if not.
"""
import json
import struct
import sys
import zlib

import numpy as np
from PIL import Image

if len(sys.argv) != 2:
    sys.exit("usage: make_png_fixtures.py OUT_FOLDER")
out = sys.argv[1]
rng = np.random.default_rng(2024)
manifest = {}

def save(name, expected, extra=None):
    expected = np.ascontiguousarray(expected, dtype=np.uint8)
    if expected.ndim == 2:
        expected = expected[:, :, None]
    with open(f"{out}/{name}.expected", "wb") as f:
        f.write(expected.tobytes())
    manifest[name] = list(expected.shape)
    for suffix, array in (extra or {}).items():
        array = np.ascontiguousarray(array, dtype=np.uint8)
        with open(f"{out}/{name}.{suffix}", "wb") as f:
            f.write(array.tobytes())

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

def raw_png(path, array, bit_depth, color_type, interlace=False, extra=b""):
    """A minimal PNG encoder (filter 0), with Adam7 interlacing on request."""
    h, w = array.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    def scanlines(a):
        return b"".join(b"\x00" + np.ascontiguousarray(row, dtype=dtype).tobytes() for row in a)
    if interlace:
        passes = [(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1)]
        data = b"".join(scanlines(array[y0::dy, x0::dx]) for y0, x0, dy, dx in passes
                        if array[y0::dy, x0::dx].size)
    else:
        data = scanlines(array)
    header = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + extra + chunk(b"IDAT", zlib.compress(data))
                + chunk(b"IEND", b""))

def from16(v):
    return np.floor(v.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)

def composite(color, alpha, background):
    c, a = color.astype(np.int64), alpha.astype(np.int64)[..., None]
    return (c * a + background * (255 - a) + 127) // 255

gray = rng.integers(0, 256, (13, 7), dtype=np.uint8)
Image.fromarray(gray, "L").save(f"{out}/gray8.png")
save("gray8", gray, {"rgb": np.repeat(gray[:, :, None], 3, axis=2)})

la = rng.integers(0, 256, (6, 9, 2), dtype=np.uint8)
Image.fromarray(la, "LA").save(f"{out}/gray_alpha.png")
save("gray_alpha", la[:, :, 0], {"white": composite(la[:, :, :1], la[:, :, 1], 255)})

rgb = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
im = Image.fromarray(rgb, "RGB")
im.save(f"{out}/rgb8.png")
save("rgb8", rgb, {"luma": np.asarray(im.convert("L"))})

rgba = rng.integers(0, 256, (10, 5, 4), dtype=np.uint8)
rgba[0, :, 3] = 0
rgba[1, :, 3] = 255
im = Image.fromarray(rgba, "RGBA")
im.save(f"{out}/rgba8.png")
save("rgba8", np.asarray(im.convert("RGB")), {"black": composite(rgba[:, :, :3], rgba[:, :, 3], 0)})

palette = rng.integers(0, 256, 256 * 3, dtype=np.uint8)
indices = rng.integers(0, 256, (8, 12), dtype=np.uint8)
indices[0, :2] = [3, 4]  # index 3 is the transparent one below
im = Image.fromarray(indices, "P")
im.putpalette(palette.tolist())
im.save(f"{out}/palette.png")
save("palette", np.asarray(im.convert("RGB")))

im.info["transparency"] = 3
im.save(f"{out}/palette_transparent.png", transparency=3)
save("palette_transparent", np.asarray(Image.open(f"{out}/palette_transparent.png").convert("RGBA"))[:, :, :3])

small = Image.fromarray(rng.integers(0, 16, (7, 6), dtype=np.uint8), "P")
small.putpalette(rng.integers(0, 256, 16 * 3, dtype=np.uint8).tolist())
small.save(f"{out}/palette4.png", bits=4)
save("palette4", np.asarray(Image.open(f"{out}/palette4.png").convert("RGB")))

bits = rng.integers(0, 2, (5, 19), dtype=np.uint8).astype(bool)
Image.fromarray(bits).save(f"{out}/gray1.png")
save("gray1", np.asarray(Image.open(f"{out}/gray1.png").convert("L")))

gray16 = rng.integers(0, 65536, (7, 8), dtype=np.uint16)
gray16[0, :4] = [0, 128, 129, 65535]
Image.fromarray(gray16).save(f"{out}/gray16.png")
assert Image.open(f"{out}/gray16.png").mode == "I;16"
save("gray16", from16(gray16))

rgb16 = rng.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
raw_png(f"{out}/rgb16.png", rgb16, 16, 2)
save("rgb16", from16(rgb16))

rgba16 = rng.integers(0, 65536, (5, 4, 4), dtype=np.uint16)
rgba16[0, :, 3] = 0
raw_png(f"{out}/rgba16.png", rgba16, 16, 6)
save("rgba16", from16(rgba16[:, :, :3]))

gray_alpha16 = rng.integers(0, 65536, (4, 6, 2), dtype=np.uint16)
raw_png(f"{out}/gray_alpha16.png", gray_alpha16, 16, 4)
save("gray_alpha16", from16(gray_alpha16[:, :, 0]))

interlaced = rng.integers(0, 256, (17, 10, 3), dtype=np.uint8)
raw_png(f"{out}/rgb8_interlaced.png", interlaced, 8, 2, interlace=True)
assert (np.asarray(Image.open(f"{out}/rgb8_interlaced.png")) == interlaced).all()
save("rgb8_interlaced", interlaced)

# gAMA 1/2.2 (what many editors write) is taken as sRGB: the stored values are kept.
raw_png(f"{out}/gray8_gamma.png", gray, 8, 0, extra=chunk(b"gAMA", struct.pack(">I", 45455)))
save("gray8_gamma", gray)

# IHDR's bit depth and colour type: the files really are in the modes named.
for name, depth, kind in [("gray1", 1, 0), ("palette4", 4, 3), ("palette", 8, 3), ("gray16", 16, 0),
                          ("gray_alpha", 8, 4), ("rgba16", 16, 6), ("gray_alpha16", 16, 4)]:
    header = open(f"{out}/{name}.png", "rb").read(26)
    assert (header[24], header[25]) == (depth, kind), (name, header[24], header[25])
assert b"tRNS" in open(f"{out}/palette_transparent.png", "rb").read()
assert (indices == 3).any()

with open(f"{out}/manifest.json", "w") as f:
    json.dump(manifest, f)
