#!/usr/bin/env python3
"""Writes the seed corpus of valid image datasets for the dataset fuzzer (spec/dataset.md), as
h5py writes them: uint8 and float32, one and three channels, with and without labels, chunked with
and without gzip (and shuffle), contiguous, and in the newest file format that HDF5 1.10 reads
(superblock 3, version 2 object headers, version 4 chunk indexes); and files of images of
different sizes (pixels, shapes, offsets) in the same storage variants.

    python3 Tests/Fuzz/make_corpus.py OUT_FOLDER
"""
import os
import sys

import h5py
import numpy as np


def write(path, images, labels=None, libver="earliest", **options):
    with h5py.File(path, "w", libver=libver) as f:
        f.create_dataset("images", data=images, **options)
        if labels is not None:
            f.create_dataset("labels", data=labels)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, size=(5, 4, 4, 1), dtype=np.uint8)
    color = rng.integers(0, 256, size=(3, 4, 4, 3), dtype=np.uint8)
    floats = rng.random(size=(4, 4, 4, 1), dtype=np.float32)
    labels = np.arange(5, dtype=np.int64)

    write(f"{out}/uint8-chunked-gzip-labels.h5", gray, labels, chunks=(2, 4, 4, 1), compression="gzip")
    write(f"{out}/uint8-chunked.h5", gray, chunks=(2, 4, 4, 1))
    write(f"{out}/uint8-contiguous-labels.h5", gray, labels.astype(np.int32))
    write(f"{out}/uint8-rgb-shuffle-gzip-labels.h5", color, np.array([1, 0, 1], dtype=np.uint8),
          chunks=(1, 4, 4, 3), compression="gzip", shuffle=True)
    write(f"{out}/float32-contiguous.h5", floats)
    write(f"{out}/float32-chunked-gzip-labels.h5", floats, labels[:4], chunks=(4, 4, 4, 1), compression="gzip")
    write(f"{out}/uint8-v110-format-labels.h5", gray, labels, libver=("v110", "v110"),
          chunks=(2, 4, 4, 1), compression="gzip")
    write(f"{out}/uint8-v110-format-contiguous.h5", gray, libver=("v110", "v110"))

    # Images of different sizes: pixels, shapes, offsets (and labels).
    sizes = [(5, 7, 3), (4, 4, 3), (9, 3, 3)]
    pixels = rng.integers(0, 256, size=sum(h * w * c for h, w, c in sizes), dtype=np.uint8)
    offsets = np.concatenate([[0], np.cumsum([h * w * c for h, w, c in sizes])]).astype(np.int64)
    for name, chunks, gzip, labels_of_images, libver in (
            ("variable-chunked-labels", (64,), False, np.arange(3), "earliest"),
            ("variable-gzip", (50,), True, None, "earliest"),
            ("variable-contiguous", None, False, None, "earliest"),
            ("variable-v110-format-labels", (128,), True, np.array([2, 0, 1], np.int32), ("v110", "v110"))):
        with h5py.File(f"{out}/{name}.h5", "w", libver=libver) as f:
            f.create_dataset("pixels", data=pixels, chunks=chunks, compression="gzip" if gzip else None)
            f.create_dataset("shapes", data=np.array(sizes, np.int64))
            f.create_dataset("offsets", data=offsets)
            if labels_of_images is not None:
                f.create_dataset("labels", data=labels_of_images)


if __name__ == "__main__":
    main()
