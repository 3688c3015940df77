#!/usr/bin/env python3
"""Copies a code file of `vqvae encode` and makes the copy claim COUNT images: the `count`
attribute says COUNT, and `/codes` becomes a chunked uint8 dataset of the size COUNT images'
packed codes take (latent_height * latent_width * bits_per_code bits each), never written, so the
file stays small. A decoder that trusted the header would allocate all of it.

    python3 Tests/Scripts/make_oversized_code_file.py CODES_H5 OUT_H5 COUNT

Exits non-zero with a message when CODES_H5 is not a code file.
"""
import shutil
import sys

import h5py


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: make_oversized_code_file.py CODES_H5 OUT_H5 COUNT")
    source, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    shutil.copy(source, out)
    with h5py.File(out, "r+") as f:
        if f.attrs.get("format") not in ("vqvae-codes", b"vqvae-codes") or "codes" not in f:
            sys.exit(f"make_oversized_code_file.py: {source} is not a code file of `vqvae encode`")
        bits = count * int(f.attrs["latent_height"]) * int(f.attrs["latent_width"]) * int(f.attrs["bits_per_code"])
        f.attrs["count"] = count
        del f["codes"]
        f.create_dataset("codes", shape=((bits + 7) // 8,), dtype="uint8", chunks=(1 << 20,))


if __name__ == "__main__":
    main()
