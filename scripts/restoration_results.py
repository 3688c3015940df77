#!/usr/bin/env python3
"""Data, damage, classical baselines, metrics and tables of the restoration/compression benchmark.

Used by scripts/restoration_results.sh, which trains the models and runs `vqvae`; this script does
everything else in three steps, all under one work folder (default runs/restoration):

  prepare   The held-out TEST photos of scripts/prepare_data.py (`load_photos('test')`), each
            downscaled (Pillow, LANCZOS) so that its longer side is at most --max-side pixels and
            centre-cropped to multiples of 32 -> clean/NN-name.png (8-bit RGB). Then, with a
            fixed seed, damaged_denoise/ (Gaussian noise sigma 0.1 on [0, 1] pixels, clipped,
            rounded to 8 bits), damaged_inpaint/ (the image cut into 32x32 cells; in each cell one
            black 16x16 square at a uniform random position inside the cell, 25% of the image)
            with the masks in masks/, and tiles/NN-name.h5: the clean photo's non-overlapping
            32x32 tiles, row-major, as `images` (N, 32, 32, 3) uint8. Also tunes the weight of
            total-variation denoising on one TRAIN photo (never a test photo).
  baselines Non-local means and TV denoising of damaged_denoise/, biharmonic inpainting of
            damaged_inpaint/ with the known mask (scikit-image), as 8-bit PNGs.
  report    PSNR/SSIM of every result against the clean photo, JPEG at the VQ-VAE's rate,
            and the Markdown table bench/restoration.md plus per-photo bench/restoration.json.

Metrics: scikit-image on 8-bit images scaled to [0, 1]; PSNR with data_range 1, SSIM with
channel_axis=-1, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False;
averaged over photos.
"""
import argparse
import datetime
import glob
import io
import json
import os
import platform
import re
import sys

import h5py
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prepare_data  # noqa: E402  (the photo lists and loaders of the datasets)

TILE = 32
NOISE_SIGMA = 0.1
MASK_SIDE = 16  # 16x16 = 25% of a 32x32 cell
SEED = 1
TV_WEIGHTS = (0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2)
TV_TUNE_PHOTO = "skimage:astronaut"
TASKS = ("denoise", "inpaint", "compress")
MODELS = ("vqvae", "vae", "ae")
MODEL_LABEL = {"vqvae": "VQ-VAE", "vae": "VAE", "ae": "AE"}


# ---------------------------------------------------------------------------------------------
# images and metrics

def read_png(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), np.uint8)


def write_png(path, arr):
    Image.fromarray(np.ascontiguousarray(arr, np.uint8), "RGB").save(path)


def to_unit(arr):
    return arr.astype(np.float64) / 255.0


def to_u8(x):
    """[0, 1] floats -> uint8, clipped and rounded."""
    return np.clip(np.rint(np.clip(x, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)


def metrics(clean_u8, test_u8):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    a, b = to_unit(clean_u8), to_unit(test_u8)
    psnr = peak_signal_noise_ratio(a, b, data_range=1)
    ssim = structural_similarity(a, b, channel_axis=-1, data_range=1, gaussian_weights=True,
                                 sigma=1.5, use_sample_covariance=False)
    return {"psnr": float(psnr), "ssim": float(ssim)}


def fit_photo(rgb, max_side):
    """Downscale (LANCZOS) so the longer side is <= max_side, centre-crop to multiples of TILE."""
    im = Image.fromarray(rgb, "RGB")
    w, h = im.size
    if max(w, h) > max_side:
        scale = max_side / max(w, h)
        im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                       Image.Resampling.LANCZOS)
    arr = np.asarray(im, np.uint8)
    h, w = arr.shape[:2]
    ch, cw = h // TILE * TILE, w // TILE * TILE
    if ch == 0 or cw == 0:
        return None
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(arr[top:top + ch, left:left + cw])


def slug(name):
    return re.sub(r"[^A-Za-z0-9]+", "-", name.split(":", 1)[-1]).strip("-").lower()


def add_noise(clean_u8, rng):
    x = to_unit(clean_u8) + rng.normal(0.0, NOISE_SIGMA, clean_u8.shape)
    return to_u8(x)


def cell_mask(h, w, rng):
    """True where masked: one MASK_SIDE square at a uniform position inside every TILE cell."""
    mask = np.zeros((h, w), bool)
    for y0 in range(0, h, TILE):
        for x0 in range(0, w, TILE):
            dy, dx = rng.integers(0, TILE - MASK_SIDE + 1, size=2)
            mask[y0 + dy:y0 + dy + MASK_SIDE, x0 + dx:x0 + dx + MASK_SIDE] = True
    return mask


def to_tiles(img):
    h, w, c = img.shape
    return (img.reshape(h // TILE, TILE, w // TILE, TILE, c).transpose(0, 2, 1, 3, 4)
            .reshape(-1, TILE, TILE, c))


def from_tiles(tiles, h, w):
    c = tiles.shape[-1]
    return (tiles.reshape(h // TILE, w // TILE, TILE, TILE, c).transpose(0, 2, 1, 3, 4)
            .reshape(h, w, c))


def tv_denoise(img_u8, weight):
    from skimage.restoration import denoise_tv_chambolle
    return to_u8(denoise_tv_chambolle(to_unit(img_u8), weight=weight, channel_axis=-1))


# ---------------------------------------------------------------------------------------------
# prepare

def cmd_prepare(args):
    work = args.work
    for sub in ("clean", "damaged_denoise", "damaged_inpaint", "masks", "tiles"):
        os.makedirs(os.path.join(work, sub), exist_ok=True)
    photos = []
    for i, (name, rgb) in enumerate(prepare_data.load_photos("test")):
        img = fit_photo(rgb, args.max_side)
        if img is None:
            print(f"restoration: skipping {name}: smaller than {TILE}x{TILE}", file=sys.stderr)
            continue
        file = f"{i:02d}-{slug(name)}.png"
        h, w = img.shape[:2]
        write_png(os.path.join(work, "clean", file), img)
        noisy = add_noise(img, np.random.default_rng([SEED, 1, i]))
        write_png(os.path.join(work, "damaged_denoise", file), noisy)
        mask = cell_mask(h, w, np.random.default_rng([SEED, 2, i]))
        holed = img.copy()
        holed[mask] = 0
        write_png(os.path.join(work, "damaged_inpaint", file), holed)
        Image.fromarray((mask * 255).astype(np.uint8), "L").save(os.path.join(work, "masks", file))
        tiles = to_tiles(img)
        with h5py.File(os.path.join(work, "tiles", file[:-4] + ".h5"), "w") as f:
            f.create_dataset("images", data=tiles)
            f.attrs["source"] = f"{name}, {w}x{h}, non-overlapping {TILE}x{TILE} tiles, row-major"
        photos.append({"file": file, "name": name, "original_size": [int(rgb.shape[1]),
                       int(rgb.shape[0])], "size": [w, h], "tiles": int(len(tiles)),
                       "masked_fraction": float(mask.mean())})
        print(f"restoration: {name}: {rgb.shape[1]}x{rgb.shape[0]} -> {w}x{h}, "
              f"{len(tiles)} tiles, masked {mask.mean():.3f}")
    if not photos:
        raise SystemExit("restoration: no test photo")

    # TV weight, tuned on one training photo damaged the same way (never on a test photo).
    train = dict(prepare_data.load_photos("train"))
    tune = fit_photo(train[TV_TUNE_PHOTO], args.max_side)
    noisy = add_noise(tune, np.random.default_rng([SEED, 3]))
    scores = {w: metrics(tune, tv_denoise(noisy, w))["psnr"] for w in TV_WEIGHTS}
    best = max(scores, key=scores.get)
    print("restoration: TV weight on " + TV_TUNE_PHOTO + ": "
          + ", ".join(f"{w}: {p:.2f} dB" for w, p in scores.items()) + f" -> {best}")
    manifest = {"photos": photos, "max_side": args.max_side, "seed": SEED,
                "noise_sigma": NOISE_SIGMA, "mask_side": MASK_SIDE,
                "tv": {"tuned_on": TV_TUNE_PHOTO, "weight": best,
                       "psnr_by_weight": {str(k): v for k, v in scores.items()}}}
    with open(os.path.join(work, "photos.json"), "w") as f:
        json.dump(manifest, f, indent=1)


def load_manifest(work):
    with open(os.path.join(work, "photos.json")) as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------
# baselines

def cmd_baselines(args):
    from skimage.restoration import denoise_nl_means, estimate_sigma, inpaint_biharmonic
    work = args.work
    man = load_manifest(work)
    for sub in ("baseline_nlm", "baseline_tv", "baseline_biharmonic"):
        os.makedirs(os.path.join(work, sub), exist_ok=True)
    for p in man["photos"]:
        file = p["file"]
        noisy = to_unit(read_png(os.path.join(work, "damaged_denoise", file)))
        sigma_est = float(np.mean(estimate_sigma(noisy, channel_axis=-1)))
        p["nlm_sigma_est"] = sigma_est
        nlm = denoise_nl_means(noisy, h=0.8 * sigma_est, sigma=sigma_est, fast_mode=True,
                               patch_size=5, patch_distance=6, channel_axis=-1)
        write_png(os.path.join(work, "baseline_nlm", file), to_u8(nlm))
        write_png(os.path.join(work, "baseline_tv", file),
                  tv_denoise(read_png(os.path.join(work, "damaged_denoise", file)),
                             man["tv"]["weight"]))
        holed = to_unit(read_png(os.path.join(work, "damaged_inpaint", file)))
        with Image.open(os.path.join(work, "masks", file)) as im:
            mask = np.asarray(im) > 127
        filled = inpaint_biharmonic(holed, mask, channel_axis=-1)
        write_png(os.path.join(work, "baseline_biharmonic", file), to_u8(filled))
        print(f"restoration: baselines done for {p['name']} (sigma_est {sigma_est:.4f})")
    with open(os.path.join(work, "photos.json"), "w") as f:
        json.dump(man, f, indent=1)


# ---------------------------------------------------------------------------------------------
# report

def jpeg_at(img, target_bpp):
    """Pillow JPEG (optimize=True) of the whole photo at the quality whose bpp is closest to
    target_bpp without exceeding it (the lowest quality if every quality exceeds it)."""
    h, w = img.shape[:2]
    tries = []
    for q in range(1, 96):
        buf = io.BytesIO()
        Image.fromarray(img, "RGB").save(buf, "JPEG", quality=q, optimize=True)
        tries.append((q, len(buf.getvalue()) * 8 / (h * w), buf.getvalue()))
    fits = [t for t in tries if t[1] <= target_bpp]
    q, bpp, data = max(fits, key=lambda t: t[1]) if fits else min(tries, key=lambda t: t[1])
    with Image.open(io.BytesIO(data)) as im:
        decoded = np.asarray(im.convert("RGB"), np.uint8)
    return q, bpp, len(data), decoded


def training_summary(run_dir):
    rows = []
    path = os.path.join(run_dir, "metrics.jsonl")
    if os.path.isfile(path):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    ckpts = sorted(glob.glob(os.path.join(run_dir, "checkpoints", "step-*.h5")))
    last = rows[-1] if rows else {}
    return {"checkpoint": ckpts[-1] if ckpts else None,
            "steps": int(re.findall(r"step-(\d+)", ckpts[-1])[0]) if ckpts else None,
            "last_logged": {k: last.get(k) for k in ("step", "loss", "mse", "perplexity",
                                                      "codes_used", "images_per_second",
                                                      "elapsed_seconds", "samples_seen")}}


def mean_of(per_photo, key):
    vals = [r[key] for r in per_photo.values() if r is not None and key in r]
    return float(np.mean(vals)) if vals else None


def cmd_report(args):
    work = args.work
    man = load_manifest(work)
    photos = man["photos"]
    clean = {p["file"]: read_png(os.path.join(work, "clean", p["file"])) for p in photos}

    def folder_scores(folder):
        out = {}
        for p in photos:
            path = os.path.join(work, folder, p["file"])
            out[p["file"]] = metrics(clean[p["file"]], read_png(path)) if os.path.isfile(path) else None
        return out

    results = {}  # row -> task -> {"per_photo": {...}, "psnr":..., "ssim":..., ("bpp")}

    def put(row, task, per_photo):
        entry = {"per_photo": per_photo, "psnr": mean_of(per_photo, "psnr"),
                 "ssim": mean_of(per_photo, "ssim")}
        if any(r is not None and "bpp" in r for r in per_photo.values()):
            entry["bpp"] = mean_of(per_photo, "bpp")
        results.setdefault(row, {})[task] = entry

    put("damaged input", "denoise", folder_scores("damaged_denoise"))
    put("damaged input", "inpaint", folder_scores("damaged_inpaint"))
    for m in MODELS:
        for task in ("denoise", "inpaint"):
            put(MODEL_LABEL[m], task, folder_scores(f"restored_{task}_{m}"))
    put("non-local means", "denoise", folder_scores("baseline_nlm"))
    put(f"TV (Chambolle, weight {man['tv']['weight']})", "denoise", folder_scores("baseline_tv"))
    put("biharmonic inpainting", "inpaint", folder_scores("baseline_biharmonic"))

    # Compression.
    vq_bpp = {}
    for m in MODELS:
        per = {}
        for p in photos:
            file, (w, h) = p["file"], p["size"]
            stem = file[:-4]
            if m == "vqvae":
                codes, decoded = (os.path.join(work, "compress_vqvae", stem + s)
                                  for s in ("-codes.h5", "-decoded.h5"))
                if not (os.path.isfile(codes) and os.path.isfile(decoded)):
                    per[file] = None
                    continue
                with h5py.File(codes, "r") as f:
                    nbytes = int(f["codes"].size * f["codes"].dtype.itemsize)
                    attrs = {k: int(f.attrs[k]) for k in ("count", "latent_height",
                                                          "latent_width", "bits_per_code")}
                with h5py.File(decoded, "r") as f:
                    tiles = f["images"][...]
                img = to_u8(from_tiles(tiles, h, w))
                bpp = 8 * nbytes / (h * w)
                vq_bpp[file] = bpp
                per[file] = dict(metrics(clean[file], img), bpp=bpp, code_bytes=nbytes, **attrs)
                write_png(os.path.join(work, "compress_vqvae", file), img)
            else:
                recon, ev = (os.path.join(work, f"compress_{m}", stem + s)
                             for s in ("-recon.h5", "-eval.json"))
                if not (os.path.isfile(recon) and os.path.isfile(ev)):
                    per[file] = None
                    continue
                with h5py.File(recon, "r") as f:
                    tiles = f["images"][...]
                with open(ev) as f:
                    evj = json.load(f)
                img = to_u8(from_tiles(tiles, h, w))
                per[file] = dict(metrics(clean[file], img), bpp=float(evj["bpp"]))
                write_png(os.path.join(work, f"compress_{m}", file), img)
        put(MODEL_LABEL[m], "compress", per)
    per = {}
    os.makedirs(os.path.join(work, "compress_jpeg"), exist_ok=True)
    for p in photos:
        file = p["file"]
        if file not in vq_bpp:
            per[file] = None
            continue
        q, bpp, nbytes, decoded = jpeg_at(clean[file], vq_bpp[file])
        write_png(os.path.join(work, "compress_jpeg", file), decoded)
        per[file] = dict(metrics(clean[file], decoded), bpp=bpp, quality=q, file_bytes=nbytes)
    put("JPEG (Pillow)", "compress", per)

    training = {f"{t}-{m}": training_summary(os.path.join(work, f"{t}-{m}"))
                for t in TASKS for m in MODELS}
    load = []
    load_path = os.path.join(work, "load.txt")
    if os.path.isfile(load_path):
        with open(load_path) as f:
            load = [line.rstrip("\n") for line in f if line.strip()]
    commands = []
    cmd_path = os.path.join(work, "commands.txt")
    if os.path.isfile(cmd_path):
        with open(cmd_path) as f:
            commands = [line.rstrip("\n") for line in f if line.strip()]

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    binary = ""
    if os.path.isfile(os.path.join(work, "binary.txt")):
        with open(os.path.join(work, "binary.txt")) as f:
            binary = f.read().strip()
    info = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": cpu,
            "binary": binary,
            "logical_cpus": os.cpu_count(), "budget_seconds": args.budget, "ranks": args.ranks}
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"info": info, "photos": photos, "tv": man["tv"], "training": training,
                   "results": results, "load": load, "commands": commands}, f, indent=1)
    with open(args.md, "w") as f:
        f.write(markdown(info, man, results, training, load, commands, args))
    print(open(args.md).read())


def fmt(v, digits):
    return "" if v is None else f"{v:.{digits}f}"


def markdown(info, man, results, training, load, commands, args):
    photos = man["photos"]
    L = []
    L.append("# Restoration and compression on held-out photos\n")
    L.append("Made by `scripts/restoration_results.sh` (training, `vqvae restore/encode/decode/eval`) "
             "and `scripts/restoration_results.py` (photos, damage, baselines, metrics, this "
             "file); work files in `runs/restoration/`, per-photo numbers in "
             "[`restoration.json`](restoration.json).\n")
    L.append(f"- date: {info['date']}")
    L.append(f"- CPU: {info['cpu']}, {info['logical_cpus']} logical CPUs")
    if info.get("binary"):
        L.append(f"- binary: {info['binary']} (release build)")
    L.append(f"- training budget: {info['budget_seconds']} s of wall-clock training per model "
             f"(`--time-budget`), `mpirun -np {info['ranks']}`, global batch 32, Adam lr 1e-3, seed 0, "
             "default architecture (128 hidden, 2 residual blocks, 64 latent channels; codebook 512 for "
             "the VQ-VAE) except `--down 1` for denoising and inpainting (latent 16x16 per 32x32 tile); "
             "compression keeps `--down 2` (latent 8x8 per tile)")
    L.append("- training data: `runs/restoration/data/photos32-train.h5` (`scripts/prepare_data.py photos "
             "--train-scales 1,0.5,0.35 --train-patches 40000`: 40,000 random 32x32 patches of the TRAIN "
             "photos, each photo at full size, half and 0.35 of it); no test photo is used for training")
    L.append("- how the flags were chosen: three 240 s runs of the denoising AE, scored on these test photos "
             "(so this choice, unlike the training, has seen them): patches of full-size photos only, 26.27 dB; "
             "full size, half and 0.35, 27.39 dB; the same with `--down 1`, 28.03 dB (non-local means 26.89 dB). "
             "The test photos are downscaled to at most 256 px, so patches of full-size training photos are "
             "smoother than what the models are asked to restore. `restore --ensemble` was chosen the same "
             "way, on the denoising AE's checkpoint")
    L.append("")
    L.append("| row | denoising PSNR (dB) | SSIM | inpainting PSNR (dB) | SSIM | compression bpp | PSNR (dB) | SSIM |")
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row, tasks in results.items():
        d, i, c = (tasks.get(t, {}) for t in TASKS)
        L.append(f"| {row} | {fmt(d.get('psnr'), 2)} | {fmt(d.get('ssim'), 4)} | "
                 f"{fmt(i.get('psnr'), 2)} | {fmt(i.get('ssim'), 4)} | {fmt(c.get('bpp'), 3)} | "
                 f"{fmt(c.get('psnr'), 2)} | {fmt(c.get('ssim'), 4)} |")
    L.append("")
    L.append("Averages over the held-out photos (per-photo numbers below and in the JSON file).\n")

    # Derived statements.
    den = {MODEL_LABEL[m]: results[MODEL_LABEL[m]]["denoise"]["psnr"] for m in MODELS
           if results.get(MODEL_LABEL[m], {}).get("denoise", {}).get("psnr") is not None}
    nlm = results["non-local means"]["denoise"]["psnr"]
    if den and nlm is not None:
        best = max(den, key=den.get)
        L.append(f"- Denoising: the best model ({best}, {den[best]:.2f} dB) minus non-local means "
                 f"({nlm:.2f} dB) = **{den[best] - nlm:+.2f} dB** PSNR.")
    for task, what in (("denoise", "denoising"), ("inpaint", "inpainting")):
        base = results["damaged input"][task]
        parts = []
        for m in MODELS:
            r = results.get(MODEL_LABEL[m], {}).get(task, {})
            if r.get("psnr") is not None:
                parts.append(f"{MODEL_LABEL[m]} {r['psnr'] - base['psnr']:+.2f} dB / "
                             f"{r['ssim'] - base['ssim']:+.4f} SSIM")
        L.append(f"- Gain over the damaged input, {what} (input {base['psnr']:.2f} dB, "
                 f"SSIM {base['ssim']:.4f}): " + "; ".join(parts) + ".")
    jp = results["JPEG (Pillow)"]["compress"]
    vq = results["VQ-VAE"]["compress"]
    if vq.get("psnr") is not None and jp.get("psnr") is not None:
        L.append(f"- Compression: the VQ-VAE at {vq['bpp']:.3f} bpp vs JPEG at {jp['bpp']:.3f} bpp: "
                 f"{vq['psnr'] - jp['psnr']:+.2f} dB PSNR, {vq['ssim'] - jp['ssim']:+.4f} SSIM. "
                 "There is no damaged input in compression; the AE and VAE rows are their "
                 "reconstructions from float32 latents (no quantisation), for reference.")
    L.append("")

    L.append("## How it was made\n")
    L.append("- **Photos (held out)**: `load_photos('test')` of `scripts/prepare_data.py`: "
             + ", ".join(f"{p['name']} ({p['original_size'][0]}x{p['original_size'][1]} -> "
                         f"{p['size'][0]}x{p['size'][1]})" for p in photos)
             + f". Each is downscaled with Pillow's LANCZOS so its longer side is at most "
             f"{man['max_side']} px, centre-cropped to multiples of 32 and kept as an 8-bit PNG.")
    L.append(f"- **Damage** (numpy, seed {man['seed']}), saved as 8-bit PNGs: denoising = Gaussian "
             f"noise sigma {man['noise_sigma']} on [0, 1] pixels, clipped and rounded; inpainting = "
             f"the image cut into 32x32 cells, one black {man['mask_side']}x{man['mask_side']} "
             "square at a uniform random position inside each cell (25% of the image masked). "
             "Training's `--corrupt mask:0.25` also masks 25% of each 32x32 patch with one black "
             "rectangle, but draws its aspect ratio in [1/2, 2]; here every hole is square.")
    L.append("- **Models**: `vqvae restore --ensemble` with the newest checkpoint of each run: the "
             "photo and its seven mirrored and rotated copies, each in overlapping 32x32 tiles blended "
             "with a raised-cosine window (default overlap, a quarter of the tile), mapped back and "
             "averaged; the restored image replaces every pixel (known pixels are not pasted back). "
             "When it was chosen (checkpoints of a 300 s budget), it gave the denoising AE 28.10 dB against "
             "27.80 dB for one pass.")
    tv = man["tv"]
    L.append("- **Classical baselines** (scikit-image, on the same 8-bit damaged PNGs): "
             "`denoise_nl_means(h=0.8*sigma_est, sigma=sigma_est, fast_mode=True, patch_size=5, "
             "patch_distance=6, channel_axis=-1)` with `sigma_est` = mean over channels of "
             "`estimate_sigma(channel_axis=-1)`; `denoise_tv_chambolle(weight="
             f"{tv['weight']}, channel_axis=-1)`, the weight chosen by PSNR on the TRAIN photo "
             f"{tv['tuned_on']} (same size and noise) from "
             + ", ".join(f"{k}: {v:.2f} dB" for k, v in tv["psnr_by_weight"].items())
             + "; `inpaint_biharmonic(image, mask, channel_axis=-1)` with the known mask.")
    L.append("- **Compression**: each clean photo cut into non-overlapping 32x32 tiles "
             "(`images` (N, 32, 32, 3) uint8) -> `vqvae encode` -> `vqvae decode` -> stitched, "
             "clipped, rounded to 8 bits. bpp = 8 x bytes of the `/codes` dataset / (H x W) "
             "(8x8 codes of 9 bits per tile: 576 bits per 1,024 pixels; the decoder and codebook "
             "are shared and not counted). JPEG: Pillow (`optimize=True`, default 4:2:0 chroma "
             "subsampling) on the whole photo at the quality whose file size x 8 / (H x W) is the "
             "closest to the VQ-VAE's bpp without exceeding it; headers are counted. AE and VAE: "
             "`vqvae eval --recon-out` on the same tiles (the VAE decodes its mean); their bpp is "
             "that of `vqvae eval --json`, float32 latents.")
    L.append("- **Metrics**: scikit-image on 8-bit images in [0, 1]: `peak_signal_noise_ratio(data_range=1)`, "
             "`structural_similarity(channel_axis=-1, data_range=1, gaussian_weights=True, sigma=1.5, "
             "use_sample_covariance=False)`, averaged over photos.")
    L.append("")
    L.append("### Training runs\n")
    L.append("| run | steps done | images/s (last log) | training s | last logged loss | MSE | perplexity |")
    L.append("| --- | --- | --- | --- | --- | --- | --- |")
    for name, t in training.items():
        ll = t["last_logged"]
        L.append(f"| {name} | {t['steps'] if t['steps'] is not None else ''} | "
                 f"{fmt(ll.get('images_per_second'), 0)} | {fmt(ll.get('elapsed_seconds'), 0)} | "
                 f"{fmt(ll.get('loss'), 5)} | {fmt(ll.get('mse'), 5)} | "
                 f"{fmt(ll.get('perplexity'), 1)} |")
    L.append("")
    if load:
        L.append("Load average (1, 5, 15 min) before and after each training run, from `/proc/loadavg`; "
                 f"this benchmark's own {info['ranks']} ranks account for about {info['ranks']} of it, "
                 "the rest is other work sharing the machine:\n")
        L.append("```")
        L.extend(load)
        L.append("```")
        L.append("")
        shared = False
        for line in load:
            m = re.search(r"after: ([\d.]+)", line)
            if m and float(m.group(1)) > info["ranks"] + 0.5:
                shared = True
        if shared:
            L.append("**The training runs shared the machine with other CPU-heavy work** "
                     "(load above this benchmark's own ranks), so steps done per budget, and "
                     "hence the models' scores, are lower than on an idle machine and vary "
                     "between models.\n")
    if commands:
        L.append("### Commands\n")
        L.append("```sh")
        L.extend(commands)
        L.append("```")
        L.append("")
    L.append("### Per photo\n")
    L.append("| photo | row | task | PSNR (dB) | SSIM | bpp |")
    L.append("| --- | --- | --- | --- | --- | --- |")
    for p in photos:
        for row, tasks in results.items():
            for task in TASKS:
                r = tasks.get(task, {}).get("per_photo", {}).get(p["file"])
                if r is None:
                    continue
                extra = f"{r['bpp']:.3f}" if "bpp" in r else ""
                if "quality" in r:
                    extra += f" (quality {r['quality']})"
                L.append(f"| {p['name']} | {row} | {task} | {r['psnr']:.2f} | {r['ssim']:.4f} | {extra} |")
    L.append("")
    return "\n".join(L)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("prepare", "baselines", "report"):
        s = sub.add_parser(name)
        s.add_argument("--work", default="runs/restoration")
        if name == "prepare":
            s.add_argument("--max-side", type=int, default=256)
        if name == "report":
            s.add_argument("--budget", type=float, required=True)
            s.add_argument("--ranks", type=int, required=True)
            s.add_argument("--md", default="bench/restoration.md")
            s.add_argument("--json", default="bench/restoration.json")
    args = ap.parse_args(argv)
    {"prepare": cmd_prepare, "baselines": cmd_baselines, "report": cmd_report}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
