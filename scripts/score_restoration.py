#!/usr/bin/env python3
"""Scores one restored photo against its clean original, beside scikit-image's non-local means
run on the same damaged photo: PSNR, SSIM and each channel's mean shift (8-bit units).

    python3 scripts/score_restoration.py --clean flower.png --damaged damaged.png \\
        --restored restored.png [--nlm-out nlm.png]

Non-local means: h = 0.8 sigma_est, fast mode, 5x5 patches, patch distance 6, sigma_est the mean
over channels of scikit-image's estimate_sigma (as in bench/restoration.md)."""
import argparse
import sys

try:
    import numpy as np
    from PIL import Image
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    from skimage.restoration import denoise_nl_means, estimate_sigma
    import pywt  # noqa: F401  (estimate_sigma needs PyWavelets)
except ImportError as error:
    sys.exit(f"score_restoration.py: {error}; install numpy, pillow, scikit-image and PyWavelets")


def load(path):
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB")).astype(np.float64) / 255
    except (OSError, ValueError) as error:
        sys.exit(f"score_restoration.py: cannot read {path}: {error}")


def scores(clean, image):
    psnr = peak_signal_noise_ratio(clean, image, data_range=1)
    ssim = structural_similarity(clean, image, channel_axis=-1, data_range=1, gaussian_weights=True,
                                 sigma=1.5, use_sample_covariance=False)
    shift = (image.mean(axis=(0, 1)) - clean.mean(axis=(0, 1))) * 255
    return psnr, ssim, shift


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clean", required=True)
    ap.add_argument("--damaged", required=True)
    ap.add_argument("--restored", required=True)
    ap.add_argument("--nlm-out", help="write the non-local means result here")
    args = ap.parse_args()
    clean, damaged, restored = load(args.clean), load(args.damaged), load(args.restored)
    for name, image in (("damaged", damaged), ("restored", restored)):
        if image.shape != clean.shape:
            sys.exit(f"score_restoration.py: the {name} photo is {image.shape[1]}x{image.shape[0]}, "
                     f"the clean one {clean.shape[1]}x{clean.shape[0]}")
    sigma = float(np.mean(estimate_sigma(damaged, channel_axis=-1)))
    nlm = denoise_nl_means(damaged, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5,
                           patch_distance=6, channel_axis=-1)
    nlm = np.round(np.clip(nlm, 0, 1) * 255) / 255
    if args.nlm_out:
        Image.fromarray((nlm * 255).astype(np.uint8)).save(args.nlm_out)
    print(f"{'':16} {'PSNR (dB)':>9} {'SSIM':>7}  mean shift R / G / B (of 255)")
    rows = (("damaged", damaged), ("non-local means", nlm), ("this model", restored))
    results = {}
    for name, image in rows:
        psnr, ssim, shift = scores(clean, image)
        results[name] = psnr
        print(f"{name:16} {psnr:9.2f} {ssim:7.4f}  {shift[0]:+.1f} / {shift[1]:+.1f} / {shift[2]:+.1f}")
    gain = results["this model"] - results["non-local means"]
    print(f"this model minus non-local means: {gain:+.2f} dB")


if __name__ == "__main__":
    main()
