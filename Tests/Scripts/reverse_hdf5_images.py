"""Writes the `images` of one HDF5 file in reverse order to a new file: the same number, shape and
type of images with other pixels at every position (a stand-in for "another dataset of the same
size").

Usage: reverse_hdf5_images.py SOURCE.h5 DESTINATION.h5
"""
import sys

import h5py

if len(sys.argv) != 3:
    sys.exit(__doc__)
with h5py.File(sys.argv[1], "r") as source, h5py.File(sys.argv[2], "w") as destination:
    destination.create_dataset("images", data=source["images"][()][::-1])
