#!/usr/bin/env python3
"""Photos, damage, classical baselines, metrics, tables and pictures of the restoration benchmark.

Used by scripts/restoration_results.sh, which trains the models and runs `vqvae restore`; this
script does everything else, in three steps, all under one work folder (default runs/restoration):

  prepare   The held-out TEST photos of scripts/prepare_data.py (`load_photos('test')`) at their
            own size, centre-cropped only to multiples of 8 -> clean/NN-name.png (8-bit RGB). Then,
            with numpy and a fixed seed, one damaged copy per task in damaged/TASK/NN-name.png
            (8-bit PNGs, so every method restores the same file) and, for the inpainting tasks, the
            mask in masks/TASK/NN-name.png (white = missing):
              denoise-S        Gaussian noise of sigma S (0.05, 0.1, 0.2) on [0, 1] pixels,
                               clipped, rounded to 8 bits;
              inpaint-cells    the photo cut into 32x32 cells, one 16x16 hole (filled with 0) at a
                               uniform random position inside each cell (25%);
              inpaint-strokes  free-form brush strokes (random thick polylines) and a few boxes,
                               filled with 0, until a coverage drawn in [0.12, 0.22] is reached;
              deblur           Gaussian blur sigma 2 with the kernel of the trainer's
                               `--corrupt blur:2` (normalised Gaussian, radius ceil(3 sigma),
                               replicated edges, separable, rows then columns), rounded to 8 bits.
            Also chooses the one free setting of Telea inpainting (radius), Wiener deconvolution
            (balance) and Richardson-Lucy (iterations) by PSNR on a TRAIN photo damaged the same
            way (never on a test photo).
  baselines Classical methods on the damaged PNGs -> baseline/TASK/METHOD/NN-name.png, with the
            seconds each took in baseline/times.json: non-local means and BM3D (denoising),
            biharmonic and Telea inpainting with the true mask, Wiener and Richardson-Lucy with the
            known PSF (deblurring).
  report    PSNR, SSIM and per-channel mean shift of every result against the clean photo
            (damaged input, baselines, and the models' restored/RECIPE/TASK/NN-name.png written by
            the shell script), the Markdown tables bench/restoration.md, all numbers in
            bench/restoration.json, and one side-by-side picture per task in bench/pictures/.

Metrics: scikit-image on 8-bit images scaled to [0, 1]; PSNR with data_range 1, SSIM with
channel_axis=-1, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False;
mean shift = restored mean minus clean mean per channel, in 8-bit units; averaged over photos.
"""
import argparse
import datetime
import glob
import json
import math
import os
import platform
import re
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prepare_data  # noqa: E402  (the photo lists and loaders of the datasets)

MULTIPLE = 8          # photos are centre-cropped to multiples of this, nothing more
SEED = 1
CELL, HOLE = 32, 16   # inpaint-cells: one HOLE x HOLE hole per CELL x CELL cell
STROKE_COVERAGE = (0.12, 0.22)
BLUR_SIGMA = 2.0
TUNE_PHOTO = "skimage:astronaut"  # a TRAIN photo: the baselines' settings are chosen on it

# Tasks: name -> (kind, parameter). Order is the order of the tables.
TASKS = {
    "denoise-0.05": ("denoise", 0.05),
    "denoise-0.1": ("denoise", 0.1),
    "denoise-0.2": ("denoise", 0.2),
    "inpaint-cells": ("inpaint", "cells"),
    "inpaint-strokes": ("inpaint", "strokes"),
    "deblur": ("deblur", BLUR_SIGMA),
}
METHODS = {  # kind -> classical methods
    "denoise": ("nlm", "bm3d"),
    "inpaint": ("biharmonic", "telea"),
    "deblur": ("wiener", "richardson-lucy"),
}
METHOD_LABEL = {"nlm": "non-local means", "bm3d": "BM3D", "biharmonic": "biharmonic",
                "telea": "Telea (OpenCV)", "wiener": "Wiener", "richardson-lucy": "Richardson-Lucy"}
TELEA_RADII = (1, 2, 3, 5, 7, 10, 15, 20, 30)
WIENER_BALANCES = (0.00001, 0.00003, 0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
RL_ITERATIONS = (5, 10, 20, 30, 50, 80, 120, 200)


# ---------------------------------------------------------------------------------------------
# images and metrics

def read_png(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), np.uint8)


def read_mask(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127


def write_png(path, arr):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.ascontiguousarray(arr, np.uint8), "RGB").save(path)


def write_mask(path, mask):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray((mask * 255).astype(np.uint8), "L").save(path)


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
    shift = (test_u8.astype(np.float64).mean(axis=(0, 1))
             - clean_u8.astype(np.float64).mean(axis=(0, 1)))
    return {"psnr": float(psnr), "ssim": float(ssim), "shift": [float(s) for s in shift],
            "worst_shift": float(np.max(np.abs(shift)))}


def crop_to_multiple(rgb):
    h, w = rgb.shape[:2]
    ch, cw = h // MULTIPLE * MULTIPLE, w // MULTIPLE * MULTIPLE
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(rgb[top:top + ch, left:left + cw])


def slug(name):
    return re.sub(r"[^A-Za-z0-9]+", "-", name.split(":", 1)[-1]).strip("-").lower()


# ---------------------------------------------------------------------------------------------
# damage

def add_noise(clean_u8, sigma, rng):
    return to_u8(to_unit(clean_u8) + rng.normal(0.0, sigma, clean_u8.shape))


def cell_mask(h, w, rng):
    """True where missing: one HOLE square at a uniform position inside every CELL cell. A cell
    cut by the right or bottom edge gets a hole of half its sides instead (25% of it too)."""
    mask = np.zeros((h, w), bool)
    for y0 in range(0, h, CELL):
        for x0 in range(0, w, CELL):
            ch, cw = min(CELL, h - y0), min(CELL, w - x0)
            sh = HOLE if ch == CELL else max(1, ch // 2)
            sw = HOLE if cw == CELL else max(1, cw // 2)
            dy = rng.integers(0, ch - sh + 1)
            dx = rng.integers(0, cw - sw + 1)
            mask[y0 + dy:y0 + dy + sh, x0 + dx:x0 + dx + sw] = True
    return mask


def stroke_mask(h, w, rng):
    """True where missing: 1 to 3 boxes, then free-form brush strokes (polylines of 2 to 6
    segments with round joints and ends, a random walk of directions) until the coverage reaches
    a target drawn uniformly in STROKE_COVERAGE."""
    from PIL import ImageDraw
    target = rng.uniform(*STROKE_COVERAGE)
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    short = min(h, w)
    for _ in range(int(rng.integers(1, 4))):
        bh = int(h * rng.uniform(1 / 16, 1 / 6))
        bw = int(w * rng.uniform(1 / 16, 1 / 6))
        y, x = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
        draw.rectangle([x, y, x + bw - 1, y + bh - 1], fill=255)
    for _ in range(400):
        if (np.asarray(im) > 127).mean() >= target:
            break
        width = int(rng.integers(max(3, short // 60), max(4, short // 16) + 1))
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        angle = rng.uniform(0, 2 * math.pi)
        points = [(x, y)]
        for _ in range(int(rng.integers(2, 7))):
            angle += rng.uniform(-1.2, 1.2)
            length = rng.uniform(0.05, 0.2) * max(h, w)
            x = float(np.clip(x + length * math.cos(angle), 0, w - 1))
            y = float(np.clip(y + length * math.sin(angle), 0, h - 1))
            points.append((x, y))
        draw.line(points, fill=255, width=width, joint="curve")
        r = width / 2
        for px, py in (points[0], points[-1]):
            draw.ellipse([px - r, py - r, px + r, py + r], fill=255)
    return np.asarray(im) > 127


def blur_kernel(sigma):
    """The trainer's kernel (Sources/Data/Corruption.swift, fillHalfKernel): w[k] =
    exp(-k^2 / (2 sigma^2)) for |k| <= ceil(3 sigma), divided by their sum, as float32."""
    radius = int(math.ceil(3 * sigma))
    if radius == 0:
        return np.ones(1, np.float32)
    tail = sum(math.exp(-k * k / (2 * sigma * sigma)) for k in range(1, radius + 1))
    half = [math.exp(-k * k / (2 * sigma * sigma)) / (1 + 2 * tail) for k in range(radius + 1)]
    return np.asarray(half[:0:-1] + half, np.float32)


def blur(clean_u8, sigma):
    """Separable blur with replicated edges, rows then columns, in float32 like the trainer."""
    from scipy.ndimage import convolve1d
    k = blur_kernel(sigma)
    x = clean_u8.astype(np.float32) / 255
    x = convolve1d(x, k, axis=1, mode="nearest")
    x = convolve1d(x, k, axis=0, mode="nearest")
    return to_u8(x)


def psf(sigma):
    k = blur_kernel(sigma).astype(np.float64)
    return np.outer(k, k)


def damage(task, clean_u8, rng):
    """-> (damaged uint8 image, mask or None)."""
    kind, param = TASKS[task]
    h, w = clean_u8.shape[:2]
    if kind == "denoise":
        return add_noise(clean_u8, param, rng), None
    if kind == "inpaint":
        mask = cell_mask(h, w, rng) if param == "cells" else stroke_mask(h, w, rng)
        holed = clean_u8.copy()
        holed[mask] = 0
        return holed, mask
    return blur(clean_u8, param), None


# ---------------------------------------------------------------------------------------------
# classical methods

def run_method(method, damaged_u8, mask, task, settings):
    """One classical method on one damaged 8-bit image -> uint8 result."""
    kind, param = TASKS[task]
    if method == "nlm":
        from skimage.restoration import denoise_nl_means, estimate_sigma
        x = to_unit(damaged_u8)
        sigma_est = float(np.mean(estimate_sigma(x, channel_axis=-1)))
        return to_u8(denoise_nl_means(x, h=0.8 * sigma_est, sigma=sigma_est, fast_mode=True,
                                      patch_size=5, patch_distance=6, channel_axis=-1))
    if method == "bm3d":
        import bm3d
        return to_u8(bm3d.bm3d_rgb(to_unit(damaged_u8), param))
    if method == "biharmonic":
        from skimage.restoration import inpaint_biharmonic
        return to_u8(inpaint_biharmonic(to_unit(damaged_u8), mask, channel_axis=-1))
    if method == "telea":
        import cv2
        radius = settings["telea_radius"][task]
        bgr = np.ascontiguousarray(damaged_u8[:, :, ::-1])
        out = cv2.inpaint(bgr, mask.astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)
        return np.ascontiguousarray(out[:, :, ::-1])
    if method in ("wiener", "richardson-lucy"):
        return deconvolve(method, damaged_u8, param, settings["wiener_balance"] if method == "wiener"
                          else settings["rl_iterations"])
    raise ValueError(method)


def deconvolve(method, blurred_u8, sigma, setting):
    """Wiener (skimage.restoration.wiener, balance = setting) or Richardson-Lucy
    (skimage.restoration.richardson_lucy, num_iter = setting) with the known PSF, channel by
    channel, on the image padded by 3 kernel radii of replicated edges (the blur's own edge rule;
    without it the FFT's wrap-around and RL's zero padding ring at the borders), then cropped."""
    from skimage.restoration import richardson_lucy, wiener
    p = psf(sigma)
    pad = 3 * (p.shape[0] // 2)
    x = np.pad(to_unit(blurred_u8), ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = np.empty_like(x)
    for c in range(x.shape[2]):
        if method == "wiener":
            out[:, :, c] = wiener(x[:, :, c], p, balance=setting, clip=False)
        else:
            out[:, :, c] = richardson_lucy(x[:, :, c], p, num_iter=setting, clip=False)
    return to_u8(out[pad:-pad, pad:-pad])


def tune(train_photo):
    """Telea radius (per inpainting task), Wiener balance and RL iterations by PSNR on one TRAIN
    photo damaged like the test photos (its own seed)."""
    img = crop_to_multiple(train_photo)
    out = {"photo": TUNE_PHOTO, "size": [int(img.shape[1]), int(img.shape[0])]}
    telea, telea_scores = {}, {}
    for n, task in enumerate(("inpaint-cells", "inpaint-strokes")):
        holed, mask = damage(task, img, np.random.default_rng([SEED, 99, n]))
        scores = {r: metrics(img, run_method("telea", holed, mask, task,
                                              {"telea_radius": {task: r}}))["psnr"]
                  for r in TELEA_RADII}
        telea[task] = max(scores, key=scores.get)
        telea_scores[task] = {str(k): v for k, v in scores.items()}
    blurred = blur(img, BLUR_SIGMA)
    wiener_scores = {b: metrics(img, deconvolve("wiener", blurred, BLUR_SIGMA, b))["psnr"]
                     for b in WIENER_BALANCES}
    rl_scores = {n: metrics(img, deconvolve("richardson-lucy", blurred, BLUR_SIGMA, n))["psnr"]
                 for n in RL_ITERATIONS}
    out.update({"telea_radius": telea, "telea_psnr": telea_scores,
                "wiener_balance": max(wiener_scores, key=wiener_scores.get),
                "wiener_psnr": {str(k): v for k, v in wiener_scores.items()},
                "rl_iterations": max(rl_scores, key=rl_scores.get),
                "rl_psnr": {str(k): v for k, v in rl_scores.items()}})
    return out


# ---------------------------------------------------------------------------------------------
# prepare

def cmd_prepare(args):
    work = args.work
    photos = []
    train_names = {n for n, _ in prepare_data.load_photos("train")}
    for i, (name, rgb) in enumerate(prepare_data.load_photos("test")):
        if name in train_names:
            raise SystemExit(f"restoration: {name} is in both splits")
        img = crop_to_multiple(rgb)
        file = f"{i:02d}-{slug(name)}.png"
        h, w = img.shape[:2]
        write_png(os.path.join(work, "clean", file), img)
        entry = {"file": file, "name": name, "original_size": [int(rgb.shape[1]), int(rgb.shape[0])],
                 "size": [w, h], "masked_fraction": {}}
        for t, task in enumerate(TASKS):
            damaged, mask = damage(task, img, np.random.default_rng([SEED, t, i]))
            write_png(os.path.join(work, "damaged", task, file), damaged)
            if mask is not None:
                write_mask(os.path.join(work, "masks", task, file), mask)
                entry["masked_fraction"][task] = float(mask.mean())
        photos.append(entry)
        print(f"restoration: {name}: {rgb.shape[1]}x{rgb.shape[0]} -> {w}x{h}, masked "
              + ", ".join(f"{k} {v:.3f}" for k, v in entry["masked_fraction"].items()))
    if len(photos) < 6:
        print(f"restoration: warning: only {len(photos)} test photos (is opencv-doc installed?)",
              file=sys.stderr)
    t0 = time.perf_counter()
    settings = tune(dict(prepare_data.load_photos("train"))[TUNE_PHOTO])
    print(f"restoration: settings chosen on {TUNE_PHOTO} in {time.perf_counter() - t0:.1f} s: "
          f"Telea radius {settings['telea_radius']}, Wiener balance {settings['wiener_balance']}, "
          f"RL iterations {settings['rl_iterations']}")
    print("restoration: PSNR by setting: " + json.dumps({k: v for k, v in settings.items()
                                                          if k.endswith("_psnr")}))
    manifest = {"photos": photos, "seed": SEED, "multiple": MULTIPLE, "cell": CELL, "hole": HOLE,
                "stroke_coverage": list(STROKE_COVERAGE), "blur_sigma": BLUR_SIGMA,
                "blur_kernel": [float(v) for v in blur_kernel(BLUR_SIGMA)],
                "tasks": {k: list(v) for k, v in TASKS.items()}, "settings": settings}
    with open(os.path.join(work, "photos.json"), "w") as f:
        json.dump(manifest, f, indent=1)


def load_manifest(work):
    with open(os.path.join(work, "photos.json")) as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------
# baselines

def library_versions():
    out = {}
    for mod, name in (("skimage", "scikit-image"), ("cv2", "opencv-python-headless"),
                      ("bm3d", "bm3d"), ("numpy", "numpy"), ("scipy", "scipy")):
        try:
            from importlib.metadata import version
            out[name] = version(name)
        except Exception:
            try:
                out[name] = __import__(mod).__version__
            except Exception:
                out[name] = None
    return out


def cmd_baselines(args):
    work = args.work
    man = load_manifest(work)
    settings = man["settings"]
    times_path = os.path.join(work, "baseline", "times.json")
    times = {}
    if os.path.isfile(times_path):
        with open(times_path) as f:
            times = json.load(f)
    only = set(args.methods.split(",")) if args.methods else None
    for task, (kind, _) in TASKS.items():
        for method in METHODS[kind]:
            if only and method not in only:
                continue
            for p in man["photos"]:
                file = p["file"]
                out = os.path.join(work, "baseline", task, method, file)
                key = f"{task}/{method}/{file}"
                if args.resume and os.path.isfile(out) and key in times:
                    continue
                damaged = read_png(os.path.join(work, "damaged", task, file))
                mask_path = os.path.join(work, "masks", task, file)
                mask = read_mask(mask_path) if os.path.isfile(mask_path) else None
                t0 = time.perf_counter()
                result = run_method(method, damaged, mask, task, settings)
                times[key] = time.perf_counter() - t0
                write_png(out, result)
                print(f"restoration: {task} {method} {p['name']}: {times[key]:.1f} s", flush=True)
                with open(times_path + ".tmp", "w") as f:
                    json.dump(times, f, indent=1)
                os.replace(times_path + ".tmp", times_path)
    with open(os.path.join(work, "baseline", "versions.json"), "w") as f:
        json.dump(library_versions(), f, indent=1)


# ---------------------------------------------------------------------------------------------
# blur check

def cmd_blurcheck(args):
    """Damages the first clean photo with the trainer's own `--corrupt blur:2` (`vqvae restore
    --corrupt blur:2 --damaged-out`, with an untrained checkpoint: only the damaged copy matters)
    and compares it with this script's deblur input -> blurcheck.json."""
    import subprocess
    import h5py
    work = args.work
    man = load_manifest(work)
    file = man["photos"][0]["file"]
    folder = os.path.join(work, "blurcheck")
    os.makedirs(folder, exist_ok=True)
    data = os.path.join(folder, "tiny.h5")
    with h5py.File(data, "w") as f:
        f.create_dataset("images", data=np.random.default_rng(0).integers(0, 256, (32, 32, 32, 3),
                                                                           dtype=np.uint8))
    run = os.path.join(folder, "run")
    subprocess.run(["rm", "-rf", run], check=True)
    subprocess.run([args.bin, "train", "--data", data, "--out", run, "--steps", "0", "--model", "ae",
                    "--down", "1"], check=True, stdout=subprocess.DEVNULL)
    ckpt = sorted(glob.glob(os.path.join(run, "checkpoints", "step-*.h5")))[-1]
    damaged_out = os.path.join(folder, "damaged.png")
    subprocess.run([args.bin, "restore", "--checkpoint", ckpt, "--input",
                    os.path.join(work, "clean", file), "--out", os.path.join(folder, "restored.png"),
                    "--corrupt", f"blur:{man['blur_sigma']:g}", "--damaged-out", damaged_out,
                    "--force"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ours = read_png(os.path.join(work, "damaged", "deblur", file)).astype(int)
    theirs = read_png(damaged_out).astype(int)
    diff = np.abs(ours - theirs)
    out = {"photo": man["photos"][0]["name"], "values": int(diff.size),
           "values_differing": int((diff > 0).sum()), "max_difference": int(diff.max())}
    with open(os.path.join(work, "blurcheck.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"restoration: blur check on {out['photo']}: {out['values_differing']} of {out['values']} "
          f"8-bit values differ from the trainer's blur:{man['blur_sigma']:g}, by at most "
          f"{out['max_difference']}")


# ---------------------------------------------------------------------------------------------
# report

def training_summary(run_dir):
    rows = []
    path = os.path.join(run_dir, "metrics.jsonl")
    if os.path.isfile(path):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    ckpts = sorted(glob.glob(os.path.join(run_dir, "checkpoints", "step-*.h5")))
    last = next((r for r in reversed(rows) if "loss" in r), {})
    return {"checkpoint": ckpts[-1] if ckpts else None,
            "steps": int(re.findall(r"step-(\d+)", ckpts[-1])[0]) if ckpts else None,
            "last_logged": {k: last.get(k) for k in ("step", "loss", "mse", "perplexity",
                                                      "images_per_second", "elapsed_seconds")}}


def load_recipes(work):
    """recipes.tsv written by the shell script: name, tasks, data, train flags, restore flags,
    budget."""
    path = os.path.join(work, "recipes.tsv")
    out = []
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                name, tasks, data, flags, rflags, budget = line.rstrip("\n").split("\t")
                out.append({"name": name, "tasks": tasks.split(","), "data": data,
                            "train_flags": flags, "restore_flags": rflags,
                            "budget": float(budget)})
    return out


def read_times(path):
    out = {}
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    file, seconds = line.split("\t")
                    out[file] = float(seconds)
    return out


def summarise(per_photo):
    vals = [r for r in per_photo.values() if r is not None]
    if not vals:
        return None
    out = {"psnr": float(np.mean([r["psnr"] for r in vals])),
           "ssim": float(np.mean([r["ssim"] for r in vals])),
           "shift": [float(np.mean([r["shift"][c] for r in vals])) for c in range(3)],
           "worst_shift": float(max(r["worst_shift"] for r in vals)),
           "photos": len(vals), "per_photo": per_photo}
    secs = [r["seconds"] for r in vals if r.get("seconds") is not None]
    out["seconds"] = float(np.mean(secs)) if secs else None
    return out


def cmd_report(args):
    work = args.work
    man = load_manifest(work)
    photos = man["photos"]
    clean = {p["file"]: read_png(os.path.join(work, "clean", p["file"])) for p in photos}
    times = {}
    if os.path.isfile(os.path.join(work, "baseline", "times.json")):
        with open(os.path.join(work, "baseline", "times.json")) as f:
            times = json.load(f)
    recipes = load_recipes(work)

    def scores(folder, seconds=None):
        out = {}
        for p in photos:
            path = os.path.join(folder, p["file"])
            if os.path.isfile(path):
                out[p["file"]] = metrics(clean[p["file"]], read_png(path))
                out[p["file"]]["seconds"] = (seconds or {}).get(p["file"])
            else:
                out[p["file"]] = None
        return out

    results = {}  # task -> [ {row, kind, ...summary} ]
    for task, (kind, _) in TASKS.items():
        rows = []
        s = summarise(scores(os.path.join(work, "damaged", task)))
        if s:
            rows.append(dict(row="damaged input", type="input", **s))
        for method in METHODS[kind]:
            secs = {p["file"]: times.get(f"{task}/{method}/{p['file']}") for p in photos}
            s = summarise(scores(os.path.join(work, "baseline", task, method), secs))
            if s:
                label = METHOD_LABEL[method]
                rows.append(dict(row=label, type="classical", method=method, **s))
        for r in recipes:
            if task not in r["tasks"]:
                continue
            folder = os.path.join(work, "restored", r["name"], task)
            s = summarise(scores(folder, read_times(os.path.join(folder, "times.tsv"))))
            if s:
                rows.append(dict(row=f"{r['name']} ({r['budget']:g} s)", type="model",
                                 recipe=r["name"], budget=r["budget"], **s))
        results[task] = rows

    training = {r["name"]: training_summary(os.path.join(work, "train", r["name"])) for r in recipes}
    load = {}
    if os.path.isfile(os.path.join(work, "load.txt")):
        with open(os.path.join(work, "load.txt")) as f:
            for line in f:
                if ": " in line:
                    k, v = line.rstrip("\n").split(": ", 1)
                    load[k] = v
    carry_over(args.json, recipes, results, training, load)
    commands = []
    if os.path.isfile(os.path.join(work, "commands.txt")):
        with open(os.path.join(work, "commands.txt")) as f:
            commands = [line.rstrip("\n") for line in f if line.strip()]
    versions = {}
    if os.path.isfile(os.path.join(work, "baseline", "versions.json")):
        with open(os.path.join(work, "baseline", "versions.json")) as f:
            versions = json.load(f)
    phases = []
    if os.path.isfile(os.path.join(work, "phases.txt")):
        with open(os.path.join(work, "phases.txt")) as f:
            phases = [line.rstrip("\n").split("\t") for line in f if "\t" in line]
    blurcheck = None
    if os.path.isfile(os.path.join(work, "blurcheck.json")):
        with open(os.path.join(work, "blurcheck.json")) as f:
            blurcheck = json.load(f)
    binary = ""
    if os.path.isfile(os.path.join(work, "binary.txt")):
        with open(os.path.join(work, "binary.txt")) as f:
            binary = f.read().strip()
    info = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu_description(), "logical_cpus": os.cpu_count(), "binary": binary,
            "ranks": args.ranks, "python": platform.python_version(), "libraries": versions,
            "script_seconds": args.script_seconds,
            "phases": {k: float(v) for k, v in phases}, "blurcheck": blurcheck}
    # A task whose model rows were all carried over keeps its earlier picture (which shows them).
    previous_pictures = {}
    if os.path.isfile(args.json):
        with open(args.json) as f:
            previous_pictures = json.load(f).get("pictures", {})
    keep = {task for task, rows in results.items()
            if any(r["type"] == "model" for r in rows) and all(r.get("carried") for r in rows if r["type"] == "model")
            and task in previous_pictures and os.path.isfile(previous_pictures[task]["file"])}
    pictures = make_pictures(work, man, {t: r for t, r in results.items() if t not in keep},
                             args.pictures, args.picture_photo)
    pictures.update({task: dict(previous_pictures[task], carried=True) for task in keep})
    pictures = {task: pictures[task] for task in results if task in pictures}
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"info": info, "photos": photos, "settings": man["settings"],
                   "recipes": recipes, "training": training, "load": load,
                   "results": results, "pictures": pictures, "commands": commands}, f, indent=1)
    with open(args.md, "w") as f:
        f.write(markdown(info, man, results, recipes, training, load, commands, pictures, args))
    print(f"restoration: wrote {args.md}, {args.json} and {len(pictures)} pictures")


def carry_over(previous_json, recipes, results, training, load):
    """Keeps the model rows of the previous report (`previous_json`) whose recipes this work folder
    has no results for, so that re-running some recipes (on another day or machine) does not drop
    the others. Each kept row says where it was measured ("carried": date and CPU); its recipe,
    training summary and load come along. The photos and damage are the same files (a fixed seed),
    and the report's classical rows are recomputed, so the carried rows stay comparable."""
    if not os.path.isfile(previous_json):
        return
    with open(previous_json) as f:
        previous = json.load(f)
    here = {r["name"] for r in recipes if any(
        row.get("recipe") == r["name"] for rows in results.values() for row in rows)}
    origin = {"date": previous.get("info", {}).get("date", "")[:10], "cpu": previous.get("info", {}).get("cpu", "")}
    kept = set()
    for task, rows in previous.get("results", {}).items():
        for row in rows:
            if row.get("type") != "model" or row.get("recipe") in here or task not in results:
                continue
            row = dict(row)
            if "carried" not in row:
                row["carried"] = origin
                row["row"] = f"{row['row']} [{origin['date']}, {short_cpu(origin['cpu'])}]"
            results[task].append(row)
            kept.add(row["recipe"])
    names = {r["name"] for r in recipes}
    for r in previous.get("recipes", []):
        if r["name"] in kept and r["name"] not in names:
            recipes.append(dict(r, carried=r.get("carried", origin)))
    for name in kept:
        if name in previous.get("training", {}) and not training.get(name, {}).get("steps"):
            training[name] = previous["training"][name]
        if name in previous.get("load", {}) and name not in load:
            load[name] = previous["load"][name]


def short_cpu(cpu):
    """'AMD EPYC (family 26, model 2)' -> 'family 26 model 2', the part that tells machines apart."""
    m = re.search(r"family (\d+), model (\d+)", cpu)
    return f"family {m.group(1)} model {m.group(2)}" if m else cpu


def cpu_description():
    fields = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if ":" in line:
                k, v = (s.strip() for s in line.split(":", 1))
                fields.setdefault(k, v)
    return (f"{fields.get('model name', platform.processor())} (family {fields.get('cpu family', '?')}, "
            f"model {fields.get('model', '?')})")


# ---------------------------------------------------------------------------------------------
# pictures

def label_strip(text, width, height=22):
    from PIL import ImageDraw, ImageFont
    im = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:
        font = ImageFont.load_default()
    draw.text((4, 3), text, fill=(0, 0, 0), font=font)
    return np.asarray(im)


def make_pictures(work, man, results, folder, photo_index):
    """One PNG per task: clean | damaged | best classical | each model, on one photo, cropped to
    at most 320x320 pixels around the photo's centre (no rescaling, so the damage stays visible)."""
    photos = man["photos"]
    if not photos:
        return {}
    p = photos[min(photo_index, len(photos) - 1)]
    file = p["file"]
    w, h = p["size"]
    cw, ch = min(320, w), min(320, h)
    top, left = (h - ch) // 2, (w - cw) // 2
    os.makedirs(folder, exist_ok=True)
    made = {}
    for task, rows in results.items():
        panels = [("clean", os.path.join(work, "clean", file)),
                  ("damaged", os.path.join(work, "damaged", task, file))]
        classical = [r for r in rows if r["type"] == "classical"]
        if classical:
            best = max(classical, key=lambda r: r["psnr"])
            panels.append((f"{best['row']} (best classical)",
                           os.path.join(work, "baseline", task, best["method"], file)))
        for r in rows:
            if r["type"] == "model":
                panels.append((r["row"], os.path.join(work, "restored", r["recipe"], task, file)))
        columns = []
        for label, path in panels:
            if not os.path.isfile(path):
                continue
            img = read_png(path)[top:top + ch, left:left + cw]
            if label == "clean":
                text = f"clean ({p['name']})"
            else:
                res = metrics(read_png(os.path.join(work, "clean", file))[top:top + ch, left:left + cw], img)
                text = f"{label}: {res['psnr']:.2f} dB"
            col = np.concatenate([label_strip(text[:60], cw), img], axis=0)
            columns.append(col)
            columns.append(np.full((col.shape[0], 4, 3), 255, np.uint8))
        picture = np.concatenate(columns[:-1], axis=1)
        path = os.path.join(folder, f"restoration-{task}.png")
        Image.fromarray(picture).save(path, optimize=True)
        made[task] = {"file": path, "photo": p["name"], "crop": [left, top, cw, ch],
                      "panels": [label for label, q in panels if os.path.isfile(q)],
                      "bytes": os.path.getsize(path)}
    return made


# ---------------------------------------------------------------------------------------------
# Markdown

def fmt(v, digits):
    return "" if v is None else f"{v:.{digits}f}"


def shift_text(s):
    return "/".join(f"{v:+.2f}" for v in s)


TASK_TITLE = {
    "denoise-0.05": "Denoising, Gaussian sigma 0.05",
    "denoise-0.1": "Denoising, Gaussian sigma 0.1",
    "denoise-0.2": "Denoising, Gaussian sigma 0.2",
    "inpaint-cells": "Inpainting, a 16x16 hole in every 32x32 cell (25%)",
    "inpaint-strokes": "Inpainting, free-form strokes and boxes",
    "deblur": "Deblurring, Gaussian blur sigma 2",
}


def markdown(info, man, results, recipes, training, load, commands, pictures, args):
    photos = man["photos"]
    st = man["settings"]
    budgets = sorted({r["budget"] for r in recipes})
    # A short budget of this run is a trial; rows kept from earlier runs show their own budget.
    short = sorted({r["budget"] for r in recipes if r["budget"] < 1800 and not r.get("carried")})
    L = []
    L.append("# Restoration of whole held-out photos\n")
    L.append("Made by `scripts/restoration_results.sh` (training, `vqvae restore`) and "
             "`scripts/restoration_results.py` (photos, damage, classical baselines, metrics, "
             "pictures, this file); work files in `runs/restoration/`, every number per photo in "
             "[`restoration.json`](restoration.json). The same models trained by PyTorch for the "
             "same wall-clock time (the trainer's speed as quality): [restoration-torch.md]"
             "(restoration-torch.md); a 12-megapixel photo's time and memory: [large-photo.md]"
             "(large-photo.md). Compression has a benchmark of its own: [codec.md](codec.md).\n")
    L.append(f"- date: {info['date']}")
    L.append(f"- CPU: {info['cpu']}, {info['logical_cpus']} logical CPUs, shared with other work")
    if info.get("binary"):
        L.append(f"- binary: {info['binary']} (release build)")
    if info.get("libraries"):
        L.append("- Python " + info["python"] + "; " + ", ".join(
            f"{k} {v}" for k, v in info["libraries"].items() if v))
    if info.get("phases"):
        ph = info["phases"]
        rest = sum(v for k, v in ph.items() if not k.startswith("training:"))
        L.append("- wall-clock time of the script's parts (the last run of each): "
                 + ", ".join(f"{k} {v:.0f} s" for k, v in ph.items())
                 + f"; everything but training: {rest:.0f} s ({rest / 60:.1f} min), plus about a "
                 "minute for the report itself")
    if recipes:
        L.append(f"- models: trained for a fixed wall-clock budget each ({', '.join(f'{b:g} s' for b in budgets)}; "
                 f"`--time-budget`), `mpirun -np {info['ranks']}`; recipes and commands below")
    carried = sorted({(r["carried"]["date"], short_cpu(r["carried"]["cpu"])) for r in recipes if r.get("carried")})
    if carried:
        L.append("- rows marked [date, CPU] were measured by an earlier run of this script on that machine ("
                 + "; ".join(f"{d}, {c}" for d, c in carried) + ") and kept from the previous report: "
                 "the same photos and damage, their pictures not redrawn")
        if any(d < "2026-12-05" for d, _ in carried):
            L.append("- denoising rows measured before 2026-12-05 are the models' own output: `vqvae restore` "
                     "had no `--noise-consistency` then (it matches the restoration's local means to the "
                     "noisy input's; on by default for denoisers since; `-raw` rows show a model without it)")
    if short:
        L.append(f"\n**The model rows come from a short trial ({', '.join(f'{b:g} s' for b in short)} "
                 "of training per model) that checks the script end to end; they are not the "
                 "models' results and are to be re-run with the full budget (`BUDGET=1800`, the "
                 "default).**")
    L.append("")
    L.append("Each table: averages over the held-out photos. PSNR and SSIM against the clean photo; "
             "mean shift = restored mean minus clean mean per channel in 8-bit units (R/G/B, averaged "
             "over photos), worst = the largest |shift| of any channel of any photo; seconds = "
             "wall-clock time per photo (classical: the call alone; models: the whole `vqvae "
             "restore` process, loading the checkpoint included).\n")
    for task, rows in results.items():
        L.append(f"### {TASK_TITLE.get(task, task)} (`{task}`)\n")
        L.append("| method | PSNR (dB) | SSIM | mean shift R/G/B | worst shift | s per photo |")
        L.append("| --- | --- | --- | --- | --- | --- |")
        for r in rows:
            n = "" if r["photos"] == len(photos) else f" ({r['photos']} of {len(photos)} photos)"
            L.append(f"| {r['row']}{n} | {r['psnr']:.2f} | {r['ssim']:.4f} | {shift_text(r['shift'])} "
                     f"| {r['worst_shift']:.2f} | {fmt(r.get('seconds'), 1)} |")
        if task in pictures:
            pic = pictures[task]
            L.append(f"\n![{task}](pictures/{os.path.basename(pic['file'])}) "
                     f"`pictures/{os.path.basename(pic['file'])}`: {pic['photo']}, a "
                     f"{pic['crop'][2]}x{pic['crop'][3]} crop at ({pic['crop'][0]}, {pic['crop'][1]}), "
                     "pixels unscaled: " + " | ".join(pic["panels"]) + " (each labelled with the "
                     "PSNR of its crop)")
        L.append("")

    L.append("## How it was made\n")
    L.append("- **Photos (held out, whole)**: `load_photos('test')` of `scripts/prepare_data.py`, none of "
             "which is in `load_photos('train')` (checked): "
             + ", ".join(f"{p['name']} ({p['original_size'][0]}x{p['original_size'][1]}"
                         + ("" if p['size'] == p['original_size'] else f" -> {p['size'][0]}x{p['size'][1]}")
                         + ")" for p in photos)
             + f". Each at its own size, centre-cropped only to multiples of {man['multiple']} "
             "(a photo already a multiple of it is unchanged), 8-bit RGB PNG. No extra photos: "
             "the other opencv-doc and scikit-image pictures not in the train list are drawings, "
             "renders, grey, medical or near-duplicates of train photos.")
    L.append(f"- **Damage** (numpy, seed {man['seed']}; each photo and task its own stream), saved "
             "as 8-bit PNGs, so every method restores the same file: denoising = Gaussian noise "
             "of sigma 0.05, 0.1 or 0.2 on [0, 1] pixels, clipped and rounded; inpaint-cells = "
             f"the photo cut into {man['cell']}x{man['cell']} cells, one {man['hole']}x{man['hole']} "
             "hole filled with 0 at a uniform random position inside each cell (a cell cut by the "
             "right or bottom edge gets a hole of half its sides, also 25% of it); inpaint-strokes = 1 to 3 boxes "
             "(each side 1/16 to 1/6 of the photo's) and free-form brush strokes (polylines of 2 "
             "to 6 segments, each 5-20% of the longer side, widths from 1/60 to 1/16 of the shorter "
             "side, round joints and ends) filled with 0, drawn until the coverage reaches a target "
             f"uniform in [{man['stroke_coverage'][0]}, {man['stroke_coverage'][1]}]; the masks "
             "(white = missing) go to every inpainting method; deblur = Gaussian blur sigma "
             f"{man['blur_sigma']:g} with the kernel of the trainer's `--corrupt blur:2` "
             "(`Sources/Data/Corruption.swift`: normalised Gaussian, radius ceil(3 sigma) = 6, "
             "separable, rows then columns, replicated edges, float32), rounded to 8 bits"
             + (f" (checked: `vqvae restore --corrupt blur:2 --damaged-out` on {info['blurcheck']['photo']} "
                f"gives {info['blurcheck']['values_differing']} of {info['blurcheck']['values']:,} 8-bit "
                f"values different, by at most {info['blurcheck']['max_difference']})"
                if info.get("blurcheck") else "") + ".")
    cov = {t: [p["masked_fraction"].get(t) for p in photos] for t in ("inpaint-cells", "inpaint-strokes")}
    L.append("- **Masked fraction** per photo: " + "; ".join(
        f"{t}: " + ", ".join(f"{v:.3f}" for v in vals if v is not None) for t, vals in cov.items()) + ".")
    L.append(f"- **Classical baselines**, on the same damaged PNGs, with settings chosen on the "
             f"TRAIN photo {st['photo']} ({st['size'][0]}x{st['size'][1]}, damaged the same way "
             "with its own seed), never on a test photo:")
    L.append("  - non-local means (scikit-image, as before): `denoise_nl_means(h=0.8*sigma_est, "
             "sigma=sigma_est, fast_mode=True, patch_size=5, patch_distance=6, channel_axis=-1)`, "
             "`sigma_est` = mean over channels of `estimate_sigma(channel_axis=-1)`;")
    L.append("  - BM3D: PyPI `bm3d`, `bm3d.bm3d_rgb(noisy, sigma)` at the TRUE sigma, default profile;")
    L.append("  - biharmonic: `skimage.restoration.inpaint_biharmonic(image, mask, channel_axis=-1)`;")
    L.append("  - Telea: `cv2.inpaint(image, mask, radius, cv2.INPAINT_TELEA)` (opencv-python-headless), "
             "radius " + ", ".join(f"{t}: {r}" for t, r in st["telea_radius"].items()) + " (PSNR on "
             + st["photo"] + ": " + "; ".join(f"{t}: " + ", ".join(f"{k}: {v:.2f}" for k, v in s.items())
                                              for t, s in st["telea_psnr"].items()) + ");")
    L.append(f"  - Wiener: `skimage.restoration.wiener(channel, psf, balance={st['wiener_balance']}, clip=False)` "
             "per channel with the known 13x13 PSF (outer product of the kernel), balance by PSNR from "
             + ", ".join(f"{k}: {v:.2f}" for k, v in st["wiener_psnr"].items()) + ";")
    L.append(f"  - Richardson-Lucy: `skimage.restoration.richardson_lucy(channel, psf, "
             f"num_iter={st['rl_iterations']}, clip=False)` per channel, iterations by PSNR from "
             + ", ".join(f"{k}: {v:.2f}" for k, v in st["rl_psnr"].items()) + ";")
    L.append("  - both deconvolutions run on the photo padded by 18 pixels (3 kernel radii) of "
             "replicated edges, the blur's own edge rule, and are cropped back (without it, the "
             "FFT's wrap-around and RL's zero padding ring at the borders); every result is "
             "clipped to [0, 1] and rounded to 8 bits.")
    L.append("- **Metrics**: scikit-image on 8-bit images in [0, 1]: `peak_signal_noise_ratio(data_range=1)`, "
             "`structural_similarity(channel_axis=-1, data_range=1, gaussian_weights=True, sigma=1.5, "
             "use_sample_covariance=False)`; mean shift as above. The noisy inputs' own mean shift "
             "comes from clipping the noise at 0 and 1 (dark and bright pixels can only move "
             "inwards); a denoiser that keeps it has not added a colour cast of its own.")
    if recipes:
        L.append("- **Models**: each recipe is trained under `mpirun` for its wall-clock budget, then "
                 "`vqvae restore` restores every damaged photo of the tasks it is evaluated on, one "
                 "process per photo, with the newest checkpoint; inpainting gets `--mask MASK.png` "
                 "(the known pixels are kept, the holes filled as in the model's training). The "
                 "restored image replaces every pixel otherwise. A denoiser's restoration gets `restore`'s "
                 "default noise consistency (`--noise-consistency auto`: local means matched to the noisy "
                 "input's under clipped Gaussian noise of the sigma estimated from the photo) unless its "
                 "restore flags say `off`.")
        L.append("")
        L.append("| recipe | evaluated on | training data | `vqvae train` flags | `vqvae restore` flags | budget s |")
        L.append("| --- | --- | --- | --- | --- | --- |")
        for r in recipes:
            where = f" [{r['carried']['date']}, {short_cpu(r['carried']['cpu'])}]" if r.get("carried") else ""
            L.append(f"| {r['name']}{where} | {', '.join(r['tasks'])} | `{r['data']}` | `{r['train_flags']}` | "
                     f"`{r['restore_flags'] or '-'}` | {r['budget']:g} |")
        L.append("")
        L.append("| recipe | steps done | images/s (last log) | training s | last logged loss | load before / after |")
        L.append("| --- | --- | --- | --- | --- | --- |")
        for name, t in training.items():
            ll = t["last_logged"]
            L.append(f"| {name} | {t['steps'] if t['steps'] is not None else ''} | "
                     f"{fmt(ll.get('images_per_second'), 0)} | {fmt(ll.get('elapsed_seconds'), 0)} | "
                     f"{fmt(ll.get('loss'), 5)} | {load.get(name, '')} |")
        L.append("")
        L.append("Training data `patches` = `runs/restoration/data/photos32-train.h5` "
                 "(`scripts/prepare_data.py photos --train-scales 1,0.5,0.35 --train-patches 40000`: "
                 "random 32x32 patches of the TRAIN photos at full size, half and 0.35 of it); "
                 "`=NAME`: no training of its own, the model trained by recipe NAME (its flags "
                 "repeated) restores with other flags, such as `--ensemble` (the image and its "
                 "seven mirrored and rotated copies restored, mapped back and averaged). Load = "
                 "`/proc/loadavg` (1, 5, 15 min) before and after the run; the benchmark's own ranks "
                 "account for about " + str(info["ranks"]) + " of it."
                 + (" **Other work shared the CPUs** (load well above that), so fewer steps were "
                    "done in each budget, and every time in this file is longer, than on an idle "
                    "machine." if any(float(v.split()[0]) > info["ranks"] + 1
                                      for v in load.values() if v.split()) else "") + "\n")
    if commands:
        L.append("### Commands\n")
        L.append("```sh")
        L.extend(commands)
        L.append("```")
        L.append("")
    L.append("### Per photo\n")
    L.append("| photo | task | method | PSNR (dB) | SSIM | mean shift R/G/B | s |")
    L.append("| --- | --- | --- | --- | --- | --- | --- |")
    for p in photos:
        for task, rows in results.items():
            for r in rows:
                q = r["per_photo"].get(p["file"])
                if q is None:
                    continue
                L.append(f"| {p['name']} | {task} | {r['row']} | {q['psnr']:.2f} | {q['ssim']:.4f} | "
                         f"{shift_text(q['shift'])} | {fmt(q.get('seconds'), 1)} |")
    L.append("")
    return "\n".join(L)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("prepare", "baselines", "blurcheck", "report"):
        s = sub.add_parser(name)
        s.add_argument("--work", default="runs/restoration")
        if name == "blurcheck":
            s.add_argument("--bin", default=".build/release/vqvae")
        if name == "baselines":
            s.add_argument("--methods", default="", help="comma-separated subset (default all)")
            s.add_argument("--resume", action="store_true",
                           help="keep results already in baseline/ (with their time)")
        if name == "report":
            s.add_argument("--ranks", type=int, required=True)
            s.add_argument("--script-seconds", type=float, default=None)
            s.add_argument("--md", default="bench/restoration.md")
            s.add_argument("--json", default="bench/restoration.json")
            s.add_argument("--pictures", default="bench/pictures")
            s.add_argument("--picture-photo", type=int, default=0,
                           help="index of the test photo shown in the pictures (0: the flower)")
    args = ap.parse_args(argv)
    {"prepare": cmd_prepare, "baselines": cmd_baselines, "blurcheck": cmd_blurcheck,
     "report": cmd_report}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
