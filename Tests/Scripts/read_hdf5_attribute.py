#!/usr/bin/env python3
"""Prints one attribute of an HDF5 file as h5py reads it, as JSON (numbers at full precision), for
a test to compare with what it expects.

    python3 Tests/Scripts/read_hdf5_attribute.py PATH OBJECT NAME

OBJECT is a group or dataset (`/` for the root, `/optimizer`, ...). Exits non-zero with a message
when the file, the object or the attribute is missing.
"""
import json
import sys

import h5py
import numpy as np


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: read_hdf5_attribute.py PATH OBJECT NAME")
    path, where, name = sys.argv[1:4]
    with h5py.File(path, "r") as f:
        if where not in f:
            sys.exit(f"read_hdf5_attribute.py: {path} has no object '{where}'")
        if name not in f[where].attrs:
            sys.exit(f"read_hdf5_attribute.py: {path}: '{where}' has no attribute '{name}'")
        value = f[where].attrs[name]
    if isinstance(value, bytes):
        value = value.decode()
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    print(json.dumps(value))


if __name__ == "__main__":
    main()
