#!/usr/bin/env python3
"""Write the reference values of the image quality metrics for the Swift tests.

Writes Tests/ModelTests/Fixtures/image_metrics.json (or the path given): deterministic pairs
of 8-bit images (gray and RGB, 11x11 to 64x13, noisy, blurred, masked, identical, constant)
and scikit-image's values for them, computed on ``pixels / 255`` in float64:

  mse   skimage.metrics.mean_squared_error
  psnr  skimage.metrics.peak_signal_noise_ratio(..., data_range=1); null when the images
        are identical (skimage returns +inf)
  ssim  skimage.metrics.structural_similarity(..., data_range=1, gaussian_weights=True,
        sigma=1.5, use_sample_covariance=False, channel_axis=-1 for RGB): Wang et al. 2004

Each case stores ``image`` and ``reference`` as base64 of their uint8 bytes in [H, W, C] order.
Needs numpy, scipy and scikit-image. Usage: python3 scripts/make_metric_fixture.py [OUT.json]
"""
import base64
import json
import math
import pathlib
import sys

import numpy as np
import scipy.ndimage
import skimage
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "Tests" / "ModelTests" / "Fixtures" / "image_metrics.json"


def scene(rng, height, width, channels):
    """A smooth image with some edges, uint8 [H, W, C]."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    layers = []
    for c in range(channels):
        fy, fx, phase = rng.uniform(0.05, 0.4), rng.uniform(0.05, 0.4), rng.uniform(0, 2 * math.pi)
        wave = 0.5 + 0.3 * np.sin(fy * y + phase) * np.cos(fx * x)
        edge = 0.2 * ((x + 2 * y + 7 * c) % 23 < 9)
        layers.append(wave + edge)
    image = np.stack(layers, axis=-1)
    return to_uint8(image)


def to_uint8(values):
    return np.clip(np.rint(np.asarray(values) * 255), 0, 255).astype(np.uint8)


def noisy(rng, image, sigma):
    return to_uint8(image / 255 + rng.normal(0, sigma, image.shape))


def blurred(image, sigma):
    return to_uint8(scipy.ndimage.gaussian_filter(image / 255, sigma=(sigma, sigma, 0), mode="nearest"))


def masked(image, top, left, size, value):
    out = image.copy()
    out[top:top + size, left:left + size, :] = value
    return out


def case(name, image, reference):
    assert image.shape == reference.shape and image.dtype == np.uint8 and reference.dtype == np.uint8
    height, width, channels = image.shape
    a = image.astype(np.float64) / 255
    b = reference.astype(np.float64) / 255
    if channels == 1:
        a, b = a[:, :, 0], b[:, :, 0]
        ssim = structural_similarity(b, a, data_range=1, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    else:
        ssim = structural_similarity(b, a, data_range=1, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, channel_axis=-1)
    mse = mean_squared_error(b, a)
    with np.errstate(divide="ignore"):
        psnr = peak_signal_noise_ratio(b, a, data_range=1)
    return {
        "name": name, "height": height, "width": width, "channels": channels,
        "image": base64.b64encode(image.tobytes()).decode(), "reference": base64.b64encode(reference.tobytes()).decode(),
        "mse": float(mse), "psnr": float(psnr) if math.isfinite(psnr) else None, "ssim": float(ssim),
    }


def main():
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    rng = np.random.default_rng(20240611)
    cases = []

    gray32 = scene(rng, 32, 32, 1)
    cases.append(case("gray32-noise", noisy(rng, gray32, 0.05), gray32))
    cases.append(case("gray32-blur", blurred(gray32, 1.0), gray32))
    rgb32 = scene(rng, 32, 32, 3)
    cases.append(case("rgb32-noise", noisy(rng, rgb32, 0.1), rgb32))
    cases.append(case("rgb32-blur", blurred(rgb32, 1.5), rgb32))
    cases.append(case("rgb32-mask", masked(rgb32, 5, 9, 12, 0), rgb32))
    gray37 = scene(rng, 37, 45, 1)
    cases.append(case("gray37x45-noise-blur", noisy(rng, blurred(gray37, 0.8), 0.03), gray37))
    rgb37 = scene(rng, 37, 45, 3)
    cases.append(case("rgb37x45-noise", noisy(rng, rgb37, 0.2), rgb37))
    rgb45 = scene(rng, 45, 37, 3)
    cases.append(case("rgb45x37-blur", blurred(rgb45, 2.0), rgb45))
    gray64 = scene(rng, 64, 13, 1)
    cases.append(case("gray64x13-noise", noisy(rng, gray64, 0.08), gray64))
    gray28 = scene(rng, 28, 28, 1)
    cases.append(case("gray28-mask", masked(gray28, 10, 3, 9, 255), gray28))
    cases.append(case("rgb11-random", rng.integers(0, 256, (11, 11, 3), dtype=np.uint8),
                      rng.integers(0, 256, (11, 11, 3), dtype=np.uint8)))
    rgb16 = scene(rng, 16, 20, 3)
    cases.append(case("rgb16x20-identical", rgb16, rgb16.copy()))
    cases.append(case("gray12x14-constant", np.full((12, 14, 1), 77, np.uint8), np.full((12, 14, 1), 200, np.uint8)))
    cases.append(case("gray12x14-extremes", np.zeros((12, 14, 1), np.uint8), np.full((12, 14, 1), 255, np.uint8)))

    document = {
        "generator": "scripts/make_metric_fixture.py",
        "scikit_image": skimage.__version__,
        "numpy": np.__version__,
        "ssim": {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 1,
                 "K1": 0.01, "K2": 0.03, "win_size": 11},
        "cases": cases,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, separators=(",", ":")) + "\n")
    print(f"{out}: {len(cases)} cases")
    for c in cases:
        print(f"  {c['name']:22s} {c['height']}x{c['width']}x{c['channels']}  mse {c['mse']:.6g}  "
              f"psnr {c['psnr'] if c['psnr'] is None else round(c['psnr'], 4)}  ssim {c['ssim']:.6f}")


if __name__ == "__main__":
    main()
