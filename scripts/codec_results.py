#!/usr/bin/env python3
"""Rate-distortion report of `vqvae compress` against Pillow's codecs on whole photos.

    python3 scripts/codec_results.py --photos DIR --ours RESULTS.tsv --out bench/codec.md
                                     [--figure bench/codec-rd.png] [--example bench/codec-example.png]

DIR holds the held-out photos as 0.png, 1.png, ...; RESULTS.tsv (written by
scripts/codec_results.sh) has one line per compressed photo: model, codebooks Q, photo index,
.vqz path, decoded PNG path, file bytes, encode seconds, decode seconds, codes coded. Pillow's
JPEG (4:2:0 and 4:4:4, optimised Huffman tables), WebP (method 6), JPEG 2000 (rate targets) and
AVIF are swept over their quality settings on the same photos. Every figure is on 8-bit RGB:
PSNR over all channels, MS-SSIM (Wang et al. 2003: 5 scales, Gaussian window sigma 1.5, the
standard weights) averaged over R, G, B. Bits per pixel = file bytes x 8 / pixels.

The comparison at matched sizes interpolates each codec's PSNR on the same photo at our file's
bits per pixel (linear in log bpp) and averages over photos. The BD-rate (Bjontegaard) compares the
curves of means per setting in 0.15-0.6 bpp: log-rate interpolated against PSNR (monotone cubic)
and averaged over the PSNR range both curves cover there; negative = fewer bytes than JPEG.
"""
import argparse
import csv
import io
import os

import numpy as np
from PIL import Image
from scipy.interpolate import PchipInterpolator
from scipy.ndimage import gaussian_filter


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 100.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _ssim_parts(x, y):
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    f = lambda z: gaussian_filter(z, 1.5, truncate=3.5, mode="reflect")
    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return np.mean(lum * cs), np.mean(cs)


def ms_ssim(a, b):
    weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    values = []
    for c in range(a.shape[2]):
        x, y = a[..., c].astype(np.float64), b[..., c].astype(np.float64)
        mcs = []
        for scale in range(5):
            s, cs = _ssim_parts(x, y)
            if scale < 4:
                mcs.append(max(cs, 1e-12))
                h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
                x = x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
                y = y[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
            else:
                mcs.append(max(s, 1e-12))
        values.append(np.prod(np.array(mcs) ** weights))
    return float(np.mean(values))


def encode(image, codec, setting):
    buffer = io.BytesIO()
    if codec == "JPEG 4:2:0":
        image.save(buffer, "JPEG", quality=setting, subsampling=2, optimize=True)
    elif codec == "JPEG 4:4:4":
        image.save(buffer, "JPEG", quality=setting, subsampling=0, optimize=True)
    elif codec == "WebP":
        image.save(buffer, "WEBP", quality=setting, method=6)
    elif codec == "JPEG 2000":
        image.save(buffer, "JPEG2000", quality_mode="rates", quality_layers=[24.0 / setting], irreversible=True)
    elif codec == "AVIF":
        image.save(buffer, "AVIF", quality=setting)
    data = buffer.getvalue()
    return len(data), np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


SETTINGS = {
    "JPEG 4:2:0": list(range(2, 96, 3)),
    "JPEG 4:4:4": list(range(2, 96, 3)),
    "WebP": list(range(0, 101, 4)),
    "JPEG 2000": [0.04, 0.06, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.3, 1.6, 2.0],
    "AVIF": list(range(0, 101, 5)),
}


def interpolate(bpp, values, at):
    order = np.argsort(bpp)
    return float(np.interp(np.log(at), np.log(np.asarray(bpp)[order]), np.asarray(values)[order]))


def curve_range(bpp, quality, low, high):
    """The PSNR a curve reaches at `low` and `high` bpp (clipped to its own range)."""
    return interpolate(bpp, quality, max(low, min(bpp))), interpolate(bpp, quality, min(high, max(bpp)))


def bd_rate(ref, test, low=0.15, high=0.6):
    (rb, rq), (tb, tq) = ref, test
    r0, r1 = curve_range(rb, rq, low, high)
    t0, t1 = curve_range(tb, tq, low, high)
    lo, hi = max(r0, t0), min(r1, t1)
    if not hi > lo:
        return None, (lo, hi)

    def log_rate(b, q):
        order = np.argsort(q)
        q, b = np.asarray(q)[order], np.log(np.asarray(b)[order])
        keep = np.concatenate([[True], np.diff(q) > 1e-9])
        return PchipInterpolator(q[keep], b[keep])
    grid = np.linspace(lo, hi, 200)
    diff = np.mean(log_rate(tb, tq)(grid) - log_rate(rb, rq)(grid))
    return 100 * (np.exp(diff) - 1), (lo, hi)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", required=True)
    ap.add_argument("--ours", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--figure")
    ap.add_argument("--example")
    ap.add_argument("--cpu", default="")
    ap.add_argument("--notes", default="")
    ap.add_argument("--envelope", default="", help="comma-separated models whose points make our curve (default: every model)")
    args = ap.parse_args()

    count = len([n for n in os.listdir(args.photos) if n.endswith(".png") and n[:-4].isdigit()])
    originals = [np.asarray(Image.open(os.path.join(args.photos, f"{i}.png")).convert("RGB")) for i in range(count)]
    pixels = [o.shape[0] * o.shape[1] for o in originals]

    # Ours: one point per (model, Q) and photo.
    ours = {}
    with open(args.ours) as f:
        for row in csv.reader(f, delimiter="\t"):
            model, q, i, vqz, png, size, enc, dec, codes = row
            i = int(i)
            decoded = np.asarray(Image.open(png).convert("RGB"))
            point = dict(bpp=int(size) * 8 / pixels[i], psnr=psnr(originals[i], decoded), msssim=ms_ssim(originals[i], decoded),
                         encode=float(enc), decode=float(dec), bytes=int(size), codes=int(codes), pixels=pixels[i])
            ours.setdefault((model, int(q)), {})[i] = point

    # Pillow's codecs: a curve per codec and photo.
    curves = {}
    for codec, settings in SETTINGS.items():
        per_photo = []
        for i, original in enumerate(originals):
            image = Image.fromarray(original)
            points = []
            for s in settings:
                size, decoded = encode(image, codec, s)
                points.append((size * 8 / pixels[i], psnr(original, decoded), ms_ssim(original, decoded)))
            per_photo.append(points)
        curves[codec] = per_photo

    def mean_curve(codec, metric):
        index = 1 if metric == "psnr" else 2
        per = np.array([[p[0] for p in photo] for photo in curves[codec]]), np.array([[p[index] for p in photo] for photo in curves[codec]])
        return list(per[0].mean(axis=0)), list(per[1].mean(axis=0))

    lines = []
    lines.append("| ours: model, codebooks (-rd: lambda) | bpp | PSNR (dB) | MS-SSIM | " + " | ".join(f"{c} PSNR" for c in SETTINGS) + " | bits per code (of 9) |")
    lines.append("| --- | --- | --- | --- | " + " | ".join("---" for _ in SETTINGS) + " | --- |")
    our_points = []
    for (model, q), photos in sorted(ours.items()):
        bpp = np.mean([p["bpp"] for p in photos.values()])
        p_ = np.mean([p["psnr"] for p in photos.values()])
        m_ = np.mean([p["msssim"] for p in photos.values()])
        matched = []
        for codec in SETTINGS:
            matched.append(np.mean([interpolate([x[0] for x in curves[codec][i]], [x[1] for x in curves[codec][i]], photos[i]["bpp"])
                                    for i in photos]))
        bits = sum((p["bytes"] - 46) * 8 for p in photos.values()) / sum(p["codes"] for p in photos.values())
        our_points.append((bpp, p_, m_, model, q))
        lines.append(f"| {model}, {q} | {bpp:.3f} | {p_:.2f} | {m_:.4f} | " + " | ".join(f"{v:.2f}" for v in matched) + f" | {bits:.2f} |")

    # Our curve: the upper envelope of every (model, Q) point, or of --envelope's models' points.
    our_points.sort()
    chosen = set(filter(None, args.envelope.split(",")))
    envelope = []
    for point in our_points:
        if chosen and point[3] not in chosen:
            continue
        if not envelope or point[1] > envelope[-1][1]:
            envelope.append(point)
    ob, op = [p[0] for p in envelope], [p[1] for p in envelope]
    om = [p[2] for p in envelope]
    bd = ["| codec | BD-rate of ours, PSNR (0.15-0.6 bpp) | common PSNR range | BD-rate, MS-SSIM | its PSNR at 0.25 bpp | ours at 0.25 bpp |",
          "| --- | --- | --- | --- | --- | --- |"]
    ours_at = interpolate(ob, op, 0.25) if min(ob) <= 0.25 <= max(ob) else float("nan")
    for codec in SETTINGS:
        rb, rq = mean_curve(codec, "psnr")
        value, (lo, hi) = bd_rate((rb, rq), (ob, op))
        mb, mq = mean_curve(codec, "msssim")
        mvalue, _ = bd_rate((mb, mq), (ob, om))
        span = f"{lo:.2f}-{hi:.2f} dB" if value is not None else f"none: ours reaches {max(op):.2f} dB, it starts at {lo:.2f}"
        bd.append(f"| {codec} | {'n/a' if value is None else f'{value:+.1f}%'} | {span} | "
                  f"{'n/a' if mvalue is None else f'{mvalue:+.1f}%'} | {interpolate(rb, rq, 0.25):.2f} | {ours_at:.2f} |")

    # Per-position levels (<model>-rd, one row per lambda) and refined codes (<model>-refine,
    # <model>-rd-refine) against the same model's uniform --levels with the encoder's codes: on
    # each photo, the point's PSNR minus the uniform curve's at the same bpp (linear in log bpp
    # between its points; photos where the point lies outside it are left out).
    own = []
    names = {n for n, _ in ours}
    variants = ("-rd", "-refine", "-rd-refine")
    bases = [n for n in names if not any(n.endswith(v) for v in variants)]
    for model in sorted(n for n in bases if any(n + v in names for v in variants)):
        for (m, lam), photos in sorted(ours.items(), key=lambda item: (variants.index(item[0][0][len(model):])
                                                                        if item[0][0][len(model):] in variants else -1, item[0])):
            if m not in {model + v for v in variants}:
                continue
            gains = []
            for i, point in sorted(photos.items()):
                uniform = sorted((p[i]["bpp"], p[i]["psnr"]) for (n, _), p in ours.items() if n == model and i in p)
                if uniform and uniform[0][0] <= point["bpp"] <= uniform[-1][0]:
                    gains.append(point["psnr"] - interpolate([b for b, _ in uniform], [q for _, q in uniform], point["bpp"]))
            if gains:
                own.append(f"| {m}, {lam} | {np.mean([p['bpp'] for p in photos.values()]):.3f} | {np.mean(gains):+.2f} | "
                           + ", ".join(f"{g:+.2f}" for g in gains) + " |")

    times = []
    for (model, q), photos in sorted(ours.items()):
        mp = sum(p["pixels"] for p in photos.values()) / 1e6
        times.append(f"| {model}, {q} | {sum(p['encode'] for p in photos.values()) / mp:.2f} | {sum(p['decode'] for p in photos.values()) / mp:.2f} |")

    with open(args.out, "w") as f:
        f.write("# Compression: rate and distortion on whole photos\n\n")
        f.write(f"{args.notes}\n\n" if args.notes else "")
        f.write(f"Machine: {args.cpu}. {count} held-out photos (`photos-test-whole.h5`), each at its own size, 8-bit RGB. "
                "Our rows are the means over the photos of each model at each number of codebooks; every codec's PSNR "
                "beside them is at the same bits per pixel on the same photo (interpolated in log bpp), so each row "
                "compares equal file sizes. Bits per code: the stream's bits per coded code (header and checksum "
                "excluded), against ceil(log2 512) = 9 without a prior.\n\n")
        f.write("\n".join(lines) + "\n\n")
        if own:
            f.write("Each position its own number of codebooks (`compress --lambda`, rows -rd) and codes chosen for the "
                    "decoded image (`compress --refine`, rows -refine) against every position the same (`--levels`) with "
                    "the encoder's codes, same model and prior: on each photo, the PSNR of the file minus that of the uniform "
                    "files' curve at the same bits per pixel (linear in log bpp between them; a photo whose file lies "
                    "outside that curve's range is left out):\n\n"
                    "| rows | mean bpp | mean PSNR gain (dB) | photo by photo |\n| --- | --- | --- | --- |\n"
                    + "\n".join(own) + "\n\n")
        f.write("Bjontegaard delta rate of our curve (the upper envelope of the rows above"
                + (f" of {', '.join(sorted(chosen))}" if chosen else "") + ") against each codec's curve of "
                "mean bpp and quality per setting, over the part of 0.15-0.6 bpp both curves cover (negative: fewer bytes "
                "than the codec for the same quality):\n\n")
        f.write("\n".join(bd) + "\n\n")
        f.write("Seconds per megapixel, one process, one BLAS thread, model loading excluded (`compress` and `decompress` report them):\n\n")
        f.write("| model, codebooks | encode | decode |\n| --- | --- | --- |\n" + "\n".join(times) + "\n")
        if args.figure:
            f.write(f"\n![rate-distortion curves]({os.path.basename(args.figure)})\n")
        if args.example:
            point = min(envelope, key=lambda p: abs(p[0] - 0.25))
            f.write(f"\nThe top-left quarter of photo 0 (the flower): the original, ours ({point[3]} at {point[4]} codebook(s)), "
                    "and JPEG 4:2:0 and WebP at the largest quality whose file is no larger than ours:\n\n"
                    f"![photo 0: original, ours, JPEG 4:2:0 and WebP at the same size]({os.path.basename(args.example)})\n")

    if args.figure:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for codec in SETTINGS:
            for ax, metric in zip(axes, ["psnr", "msssim"]):
                b, q = mean_curve(codec, metric)
                keep = [k for k, x in enumerate(b) if x <= 1.5]
                ax.plot([b[k] for k in keep], [q[k] for k in keep], label=codec, lw=1)
        for ax, index, label in zip(axes, [1, 2], ["PSNR (dB)", "MS-SSIM"]):
            colours = ["black", "tab:brown", "tab:gray", "tab:olive", "tab:pink", "tab:cyan", "tab:purple", "tab:green"]
            for k, model in enumerate(sorted({p[3] for p in our_points})):
                points = sorted(p for p in our_points if p[3] == model)
                ax.plot([p[0] for p in points], [p[index] for p in points], "o-" if "-rd" in model else "s--",
                        color=colours[k % len(colours)], ms=4, lw=1.5, label=f"ours: {model}")
            ax.set_xlabel("bits per pixel")
            ax.set_ylabel(label)
            ax.set_xlim(0, 1.5)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"{count} whole held-out photos, means per setting")
        fig.tight_layout()
        fig.savefig(args.figure, dpi=110)

    if args.example:
        # Photo 0: original | ours at the point of our curve (the envelope) closest to 0.25 bpp on
        # average | JPEG 4:2:0 and WebP at no more bytes than ours on this photo.
        best_point = min(envelope, key=lambda p: abs(p[0] - 0.25))
        key = (best_point[3], best_point[4])
        rows = list(csv.reader(open(args.ours), delimiter="\t"))
        png = next(r[4] for r in rows if (r[0], int(r[1]), int(r[2])) == (key[0], key[1], 0))
        original = originals[0]
        target = ours[key][0]["bytes"]
        panels = [original, np.asarray(Image.open(png).convert("RGB"))]
        for codec in ["JPEG 4:2:0", "WebP"]:
            best = None
            for s in SETTINGS[codec]:
                size, decoded = encode(Image.fromarray(original), codec, s)
                if size <= target and (best is None or size > best[0]):
                    best = (size, decoded)
            panels.append(best[1] if best else np.zeros_like(original))
        h, w = original.shape[:2]
        crop = [p[: h // 2, : w // 2] for p in panels]
        Image.fromarray(np.concatenate(crop, axis=1)).save(args.example)


if __name__ == "__main__":
    main()
