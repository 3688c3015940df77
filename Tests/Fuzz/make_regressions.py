#!/usr/bin/env python3
"""Writes the hostile-input regression files of Tests/Fuzz/regressions/ that are built rather than
found by the fuzzer: each one made a reader crash, trap, allocate what a header claimed or leave
HDF5 objects open before the fix named beside it. Every one must now give a clean DataError (or,
for `checkpoint/group-cycle-verifies.h5`, verify without looping).

    python3 Tests/Fuzz/make_regressions.py CHECKPOINT OUT_FOLDER

CHECKPOINT is a real checkpoint of a small model with an EMA codebook (Tests/DataTests/
HostileInputTests.swift writes one with Checkpoint.write and runs this script on it). The
fuzzer-found inputs, committed under Tests/Fuzz/regressions/ as `found-*.h5`, were saved from
scripts/fuzz.sh runs.
"""
import os
import shutil
import struct
import sys

import h5py
import numpy as np


def patch(path, old, new, count=1):
    """Replaces the `count` occurrences of `old` in the file's bytes by `new` (same length)."""
    data = open(path, "rb").read()
    assert data.count(old) == count, (path, old, data.count(old))
    assert len(old) == len(new)
    open(path, "wb").write(data.replace(old, new))


def datasets(out):
    images = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4, 1)

    # ImageDataset left the images dataset open when the file held no images (then HDF5 would
    # serve a later file at the same path from the stale open file).
    with h5py.File(f"{out}/empty-images.h5", "w") as f:
        f.create_dataset("images", shape=(0, 4, 4, 1), dtype=np.uint8)

    # Int(hsize_t) trapped on a dimension of 2^63 or more; H*W*C overflowed Int.
    with h5py.File(f"{out}/dimension-beyond-int.h5", "w") as f:
        f.create_dataset("images", shape=(2**62, 4, 4, 1), dtype=np.uint8, chunks=(1, 4, 4, 1))
    path = f"{out}/dimension-beyond-int.h5"
    patch(path, struct.pack("<Q", 2**62), struct.pack("<Q", 2**63 + 5), count=2)  # shape and maximum shape
    with h5py.File(f"{out}/shape-overflows.h5", "w") as f:
        f.create_dataset("images", shape=(1, 2**31, 2**31, 3), dtype=np.uint8, chunks=(1, 1, 1, 3))
    patch(f"{out}/shape-overflows.h5", struct.pack("<Q", 2**31) * 2, struct.pack("<Q", 2**40) * 2, count=2)

    # A compact dataset whose stored bytes are fewer than its shape needs: libhdf5 1.10 copied past
    # its buffer (heap-buffer-overflow in H5VM_memcpyvv).
    path = f"{out}/compact-shorter-than-shape.h5"
    with h5py.File(path, "w") as f:
        space = h5py.h5s.create_simple(images.shape)
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_layout(h5py.h5d.COMPACT)
        dataset = h5py.h5d.create(f.id, b"images", h5py.h5t.STD_U8LE, space, dcpl=plist)
        dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, images)
    # Layout message version 3, class 0 (compact), size 80, then the data.
    patch(path, bytes([3, 0, 80, 0]) + images.tobytes()[:8], bytes([3, 0, 8, 0]) + images.tobytes()[:8])

    # A contiguous dataset whose stored size disagrees with its shape.
    path = f"{out}/contiguous-shorter-than-shape.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images)
    # Layout message version 3, class 1 (contiguous): address, then size 80.
    data = bytearray(open(path, "rb").read())
    layout = [i for i in range(len(data) - 18) if data[i:i + 2] == b"\x03\x01"
              and data[i + 10:i + 18] == struct.pack("<Q", 80)]
    assert len(layout) == 1, layout
    data[layout[0] + 10:layout[0] + 18] = struct.pack("<Q", 8)
    open(path, "wb").write(bytes(data))

    # Chunks longer than a fixed-size dimension: libhdf5 1.10 copied a whole chunk out of the
    # smaller one it had decompressed (heap-buffer-overflow in H5VM_memcpyvv).
    path = f"{out}/chunk-beyond-shape.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(1, 4, 4, 1), compression="gzip")
    patch(path, struct.pack("<5I", 1, 4, 4, 1, 1), struct.pack("<5I", 1, 4, 1024, 1, 1))

    # A chunk whose recorded size is smaller than a chunk (no compression): libhdf5 1.10 copied a
    # chunk's worth of bytes out of the smaller buffer it read.
    path = f"{out}/chunk-record-too-small.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(5, 4, 4, 1))
    # v1 B-tree key of the one chunk: size 80, filter mask 0, offsets 0.
    patch(path, struct.pack("<II", 80, 0) + bytes(40), struct.pack("<II", 8, 0) + bytes(40))

    # The root group's local heap claiming 2^62 bytes: libhdf5 1.10 allocated it and copied into it
    # before checking it against the file (SEGV or allocation failure in H5HL_protect).
    path = f"{out}/local-heap-too-large.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images)
    data = bytearray(open(path, "rb").read())
    heap = data.index(b"HEAP")
    data[heap + 8:heap + 16] = struct.pack("<Q", 2**62)
    open(path, "wb").write(bytes(data))


def checkpoints(seed, out):
    def variant(name):
        path = f"{out}/{name}"
        shutil.copy(seed, path)
        return h5py.File(path, "r+")

    # Attributes read as one value were read whole: an array overran the stack variable.
    with variant("attribute-array.h5") as f:
        del f.attrs["format_version"]
        f.attrs.create("format_version", np.ones(4096, dtype=np.int64))
    with variant("string-attribute-array.h5") as f:
        del f.attrs["config"]
        f.attrs.create("config", ["{}", "{}"], dtype=h5py.string_dtype())

    # A tensor header claiming 2^32 float32 values that are not in the file: verification
    # allocated what the header claimed (16 GB).
    with variant("tensor-larger-than-file.h5") as f:
        f.create_dataset("model/extra/weight", shape=(2**20, 2**12), dtype=np.float32,
                         chunks=(256, 1024), fletcher32=True)

    # A tensor whose values were never written reads as zeros: refused instead.
    with variant("tensor-not-written.h5") as f:
        shape = f["model/quantizer/codebook"].shape
        del f["model/quantizer/codebook"]
        f.create_dataset("model/quantizer/codebook", shape=shape, dtype=np.float32, chunks=shape, fletcher32=True)

    # The global heap collection that holds the string attributes (format, config, ...): a free
    # space object of size 0 made libhdf5 1.10 loop forever, an object larger than the collection
    # made it copy overlapping memory, a value whose length differs from its object's size made it
    # allocate the length (up to 4 GB) or copy past it (found by the fuzzer).
    def global_heap(name, change):
        path = f"{out}/{name}"
        shutil.copy(seed, path)
        data = bytearray(open(path, "rb").read())
        start = data.index(b"GCOL")
        size = struct.unpack_from("<Q", data, start + 8)[0]
        position = 16
        objects = []
        while position + 16 <= size:
            index, = struct.unpack_from("<H", data, start + position)
            length, = struct.unpack_from("<Q", data, start + position + 8)
            objects.append((index, start + position + 8))
            position += length if index == 0 else 16 + ((length + 7) & ~7)
        change(data, objects)
        open(path, "wb").write(bytes(data))

    def empty_free_space(data, objects):
        free = [field for index, field in objects if index == 0]
        data[free[0]:free[0] + 8] = struct.pack("<Q", 0)

    def object_too_large(data, objects):
        data[objects[0][1]:objects[0][1] + 8] = struct.pack("<Q", 2**40)

    def object_shorter_than_value(data, objects):
        # Objects are sized in bytes; one byte less than the string an attribute says it holds
        # still fits the collection (objects are padded to 8 bytes).
        field = objects[0][1]
        size, = struct.unpack_from("<Q", data, field)
        data[field:field + 8] = struct.pack("<Q", size - 1)

    global_heap("global-heap-free-space-empty.h5", empty_free_space)
    global_heap("global-heap-value-size-differs.h5", object_shorter_than_value)
    global_heap("global-heap-object-too-large.h5", object_too_large)

    # A nested group's symbol table pointing outside the file: libhdf5 1.10 loaded its B-tree node
    # into a NULL buffer (SEGV in H5F__accum_read under H5Gget_info; found by the fuzzer).
    path = f"{out}/group-symbol-table-outside.h5"
    shutil.copy(seed, path)
    data = bytearray(open(path, "rb").read())
    # Version 1 object header messages: type 0x11 (symbol table), size 16, then B-tree and heap.
    tables = [i for i in range(len(data) - 24) if data[i:i + 4] == b"\x11\x00\x10\x00"]
    assert len(tables) > 1, tables
    data[tables[1] + 8:tables[1] + 16] = b"\xff" * 8
    open(path, "wb").write(bytes(data))

    # The root object header claiming 4 GB: libhdf5 1.10 allocated it while opening the file
    # (found by the fuzzer).
    path = f"{out}/root-object-header-too-large.h5"
    shutil.copy(seed, path)
    data = bytearray(open(path, "rb").read())
    assert data[8] == 0, "superblock version 0 expected"
    root, = struct.unpack_from("<Q", data, 24 + 5 * 8)
    assert data[root] == 1, "version 1 object header expected"
    data[root + 8:root + 12] = struct.pack("<I", 0xF0000000)
    open(path, "wb").write(bytes(data))

    # A group linked into itself: the listing recursed forever.
    with variant("group-cycle-verifies.h5") as f:
        f["model/encoder/loop"] = f["model"]


def main():
    seed, out = sys.argv[1], sys.argv[2]
    os.makedirs(f"{out}/dataset", exist_ok=True)
    os.makedirs(f"{out}/checkpoint", exist_ok=True)
    datasets(f"{out}/dataset")
    checkpoints(seed, f"{out}/checkpoint")


if __name__ == "__main__":
    main()
