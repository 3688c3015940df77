#!/usr/bin/env python3
"""Compares the datasets of two HDF5 files, read with h5py: two checkpoints of runs that must
agree, or two files of reconstructed images.

    python3 Tests/Scripts/compare_hdf5_datasets.py A B [--tolerance T | --absolute-tolerance T]
                                                     [--dataset NAME ...] [--min-datasets N] [--same-position]

  (default)         every dataset is identical: same shape, dtype and values, bit for bit
  --tolerance T     every dataset has the same shape, and max|a - b| / max(max|b|, 1e-12) <= T
  --absolute-tolerance T
                    every dataset has the same shape, and max|a - b| <= T (weights that Adam moves
                    by a bounded step whatever the gradient's size)
  --dataset NAME    compares only the datasets named (repeatable); by default every dataset, and
                    both files must hold the same ones
  --min-datasets N  the files hold at least N datasets (a checkpoint is not an empty file)
  --same-position   checkpoints: the root attributes `step` and `samples_seen` and the
                    `/optimizer` attribute `t` are equal

Prints `identical` (default) or the largest (relative or absolute) difference; exits non-zero
naming the datasets or attributes that differ.
"""
import argparse
import sys

import h5py
import numpy as np


def fail(message):
    sys.exit(f"compare_hdf5_datasets.py: {message}")


def dataset_names(f):
    names = []
    f.visit(lambda n: names.append(n) if isinstance(f[n], h5py.Dataset) else None)
    return names


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--tolerance", type=float)
    parser.add_argument("--absolute-tolerance", type=float)
    parser.add_argument("--dataset", action="append", dest="datasets")
    parser.add_argument("--min-datasets", type=int, default=1)
    parser.add_argument("--same-position", action="store_true")
    args = parser.parse_args()
    if args.tolerance is not None and args.absolute_tolerance is not None:
        fail("give --tolerance or --absolute-tolerance, not both")
    absolute = args.absolute_tolerance is not None
    tolerance = args.absolute_tolerance if absolute else args.tolerance

    a, b = h5py.File(args.a, "r"), h5py.File(args.b, "r")
    if args.datasets:
        names = args.datasets
        for f, path in ((a, args.a), (b, args.b)):
            missing = [n for n in names if n not in f or not isinstance(f[n], h5py.Dataset)]
            if missing:
                fail(f"{path} lacks {missing}")
    else:
        names, others = dataset_names(b), dataset_names(a)
        if sorted(names) != sorted(others):
            fail(f"the files hold different datasets: only in {args.a}: {sorted(set(others) - set(names))}, "
                 f"only in {args.b}: {sorted(set(names) - set(others))}")
    if len(names) < args.min_datasets:
        fail(f"{len(names)} datasets, expected at least {args.min_datasets}: {names}")

    if args.same_position:
        for where, attribute in (("/", "step"), ("/", "samples_seen"), ("/optimizer", "t")):
            x, y = a[where].attrs[attribute], b[where].attrs[attribute]
            if x != y:
                fail(f"{where} attribute {attribute} differs: {x} in {args.a}, {y} in {args.b}")

    differ, worst = [], 0.0
    for n in names:
        x, y = a[n][()], b[n][()]
        if x.shape != y.shape:
            fail(f"{n} has shape {x.shape} in {args.a} but {y.shape} in {args.b}")
        if tolerance is None:
            if x.dtype != y.dtype or not np.array_equal(x, y):
                differ.append(n)
        elif x.size:
            scale = 1.0 if absolute else max(np.abs(y).max(), 1e-12)
            worst = max(worst, float(np.abs(x - y).max() / scale))
    if differ:
        fail(f"{len(differ)} of {len(names)} datasets differ: {differ}")
    kind = "absolute" if absolute else "relative"
    if tolerance is not None and not worst <= tolerance:
        fail(f"largest {kind} difference {worst} is above the tolerance {tolerance}")
    print("identical" if tolerance is None else worst)


if __name__ == "__main__":
    main()
