#!/usr/bin/env python3
"""Damages one stored byte of an HDF5 dataset in place, leaving every header intact: the byte at
OFFSET into the dataset's data (its first chunk when chunked) is XORed with MASK, so a
Fletcher-32 checksum over it no longer matches.

    python3 Tests/Scripts/damage_hdf5_dataset.py PATH DATASET --offset OFFSET --xor MASK

The stored bytes are found by h5py (the dataset's offset in the file, or its first chunk's) and
checked against the values h5py reads, so the damage lands in the data and nowhere else. Works on
uncompressed datasets only. Exits non-zero with a message when the data cannot be located.
"""
import argparse
import sys

import h5py
import numpy as np


def fail(message):
    sys.exit(f"damage_hdf5_dataset.py: {message}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("dataset")
    parser.add_argument("--offset", type=int, required=True)
    parser.add_argument("--xor", type=lambda text: int(text, 0), required=True)
    args = parser.parse_args()
    if not 1 <= args.xor <= 255:
        fail(f"--xor {args.xor} must change the byte (1...255)")

    with h5py.File(args.path, "r") as f:
        if args.dataset not in f or not isinstance(f[args.dataset], h5py.Dataset):
            fail(f"{args.path} has no dataset '{args.dataset}'")
        ds = f[args.dataset]
        if ds.compression is not None:
            fail(f"{args.path}: '{args.dataset}' is {ds.compression}-compressed; its stored bytes are not its values")
        if ds.chunks is None:
            start = ds.id.get_offset()
            expected = ds[()].tobytes()
        else:
            start = ds.id.get_chunk_info_by_coord((0,) * ds.ndim).byte_offset
            first = tuple(slice(0, min(c, n)) for c, n in zip(ds.chunks, ds.shape))
            expected = np.ascontiguousarray(ds[first]).tobytes()
    if start is None:
        fail(f"{args.path}: '{args.dataset}' has no stored data")
    if args.offset >= len(expected):
        fail(f"{args.path}: --offset {args.offset} is past the {len(expected)} bytes of '{args.dataset}' found")

    raw = bytearray(open(args.path, "rb").read())
    if bytes(raw[start:start + len(expected)]) != expected:
        fail(f"{args.path}: the bytes at {start} are not the values of '{args.dataset}'")
    raw[start + args.offset] ^= args.xor
    open(args.path, "wb").write(raw)
    print(f"{args.path}: byte {start + args.offset} ({args.dataset} + {args.offset}) XOR {args.xor:#04x}")


if __name__ == "__main__":
    main()
