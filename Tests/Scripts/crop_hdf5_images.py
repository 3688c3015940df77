#!/usr/bin/env python3
"""Writes, with h5py, the rows TOP..<BOTTOM of the first COUNT images of an HDF5 file's `images`
(N, H, W, C) to a new file: non-square images cut from square ones.

    python3 Tests/Scripts/crop_hdf5_images.py SOURCE_H5 OUT_H5 --count COUNT --rows TOP:BOTTOM

Exits non-zero with a message when the source holds fewer images or rows than asked for.
"""
import argparse
import sys

import h5py


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rows", required=True)
    args = parser.parse_args()
    top, bottom = (int(part) for part in args.rows.split(":"))

    d = h5py.File(args.source, "r")["images"][:args.count]
    if len(d) < args.count or not 0 <= top < bottom <= d.shape[1]:
        sys.exit(f"crop_hdf5_images.py: {args.source} holds images {d.shape}; cannot take {args.count} of rows {top}:{bottom}")
    with h5py.File(args.out, "w") as f:
        f.create_dataset("images", data=d[:, top:bottom, :, :])


if __name__ == "__main__":
    main()
