#!/usr/bin/env python3
"""Writes one HDF5 dataset with h5py, as a file from outside this project would hold it: the
input of tests of the dataset reader (shapes, dtypes, filters, damaged and hostile headers).

    python3 Tests/Scripts/make_hdf5_fixture.py PATH --shape N,H,W[,C] [options]

  --key NAME            dataset name (default: images)
  --dtype TYPE          numpy dtype (default: uint8)
  values, zeros unless one of:
    --fill V            every value V
    --random-bytes SEED numpy.random.default_rng(SEED).integers(0, 255, shape, dtype)
    --random-unit SEED  numpy.random.default_rng(SEED).random(shape, dtype) (floats in [0, 1))
  --blank-but-every N   zeroes every image (index 0) except every N-th: batches of mostly blank
                        images, whose latent vectors repeat
  --nan I,J,...         sets the value at that index to NaN (float dtypes)
  --chunks A,B,...      chunk shape (default: h5py's choice, contiguous when no filter is asked)
  --gzip                gzip (deflate) compression
  --fletcher32          Fletcher-32 checksums on every chunk
  --unwritten           only the header: the dataset is created with its shape and --chunks, and
                        no value is written (a file far smaller than its header claims)
  --truncate-half       cuts the finished file to half of its size
  --raw FILE            also writes the values' bytes (C order, native endianness) to FILE

Exits non-zero with a message when the options contradict each other.
"""
import argparse
import os
import sys

import h5py
import numpy as np


def ints(text):
    return tuple(int(part) for part in text.split(",") if part)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--shape", type=ints, required=True)
    parser.add_argument("--key", default="images")
    parser.add_argument("--dtype", default="uint8")
    values = parser.add_mutually_exclusive_group()
    values.add_argument("--fill", type=float)
    values.add_argument("--random-bytes", type=int, metavar="SEED")
    values.add_argument("--random-unit", type=int, metavar="SEED")
    parser.add_argument("--blank-but-every", type=int, metavar="N")
    parser.add_argument("--nan", type=ints)
    parser.add_argument("--chunks", type=ints)
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--fletcher32", action="store_true")
    parser.add_argument("--unwritten", action="store_true")
    parser.add_argument("--truncate-half", action="store_true")
    parser.add_argument("--raw")
    args = parser.parse_args()

    dtype = np.dtype(args.dtype)
    options = {}
    if args.chunks:
        if len(args.chunks) != len(args.shape):
            sys.exit(f"make_hdf5_fixture.py: --chunks {args.chunks} does not match --shape {args.shape}")
        options["chunks"] = args.chunks
    if args.gzip:
        options["compression"] = "gzip"
    if args.fletcher32:
        options["fletcher32"] = True

    if args.unwritten:
        if args.fill is not None or args.random_bytes is not None or args.random_unit is not None or args.nan or args.raw:
            sys.exit("make_hdf5_fixture.py: --unwritten writes no values; drop --fill, --random-*, --nan and --raw")
        if not args.chunks:
            sys.exit("make_hdf5_fixture.py: --unwritten needs --chunks (a contiguous dataset would be allocated)")
        with h5py.File(args.path, "w") as f:
            f.create_dataset(args.key, shape=args.shape, dtype=dtype, **options)
    else:
        if args.random_bytes is not None:
            data = np.random.default_rng(args.random_bytes).integers(0, 255, args.shape, dtype=dtype)
        elif args.random_unit is not None:
            data = np.random.default_rng(args.random_unit).random(args.shape, dtype=dtype)
        elif args.fill is not None:
            data = np.full(args.shape, args.fill, dtype)
        else:
            data = np.zeros(args.shape, dtype)
        if args.blank_but_every:
            keep = np.arange(args.shape[0]) % args.blank_but_every == 0
            data[~keep] = 0
        if args.nan:
            if dtype.kind != "f":
                sys.exit(f"make_hdf5_fixture.py: --nan needs a float dtype, not {dtype}")
            data[args.nan] = np.nan
        with h5py.File(args.path, "w") as f:
            f.create_dataset(args.key, data=data, **options)
        if args.raw:
            with open(args.raw, "wb") as raw:
                raw.write(data.tobytes())

    if args.truncate_half:
        os.truncate(args.path, os.path.getsize(args.path) // 2)


if __name__ == "__main__":
    main()
