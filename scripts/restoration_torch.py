#!/usr/bin/env python3
"""Train the restoration model of `vqvae train` in PyTorch for a wall-clock budget, then restore photos.

    python3 scripts/restoration_torch.py --data data/photos32-train.h5 --model ae --down 1 --residual \\
        --lr 2e-3 --lr-schedule cosine --warmup-steps 100 --lr-decay-steps 1500 --corrupt noise:0.1 \\
        --time-budget 300 --steps 1000000 --restore damaged.png --restore-out restored.png

A reference for comparing with the Swift trainer at equal wall-clock time, never a dependency of the
project (it needs torch, numpy, h5py and Pillow; scikit-image for --clean). What it reproduces:

- the model: scripts/vqvae_torch.py, built from the same flags as `vqvae train` (`--model ae` or
  `vae`, `--residual`, `--detail-layers`, `--skips` with `--skip-weight W|LOW..HIGH` drawn per
  image); PyTorch's default initialisation, which the project follows. The VQ-VAE's quantizer is
  not reproduced here (scripts/bench_pytorch.py has one); `--model vqvae` is refused;
- the data: `images` (N, H, W, C) uint8 or float32 of the --data files, concatenated, normalised as
  `v/255 - 0.5` (float32: `v - 0.5`), reshuffled every epoch (`--no-shuffle`: file order), the tail
  of an epoch that does not fill a global batch dropped;
- the damage: `--corrupt noise:SIGMA` or `noise:LOW..HIGH`: Gaussian noise of standard deviation
  SIGMA (drawn uniformly per image for a range) on pixels in [0, 1], clipped to [0, 1]; or
  `--corrupt holes:COUNT`: 1 to COUNT boxes and brush strokes filled with 0, drawn as
  Corruption.swift's `markHoles` draws them (boxes with sides log-uniform in [1/16, 1/2] of the
  image's; strokes of radius 0.5 + u max(1, min(H, W) / 12) through 1 to 6 segments of
  (0.1 + 0.3 u) min(H, W), here as the set of pixels within the radius of each segment); with
  `--mask-channel` the model reads the mask and keeps the known pixels (scripts/vqvae_torch.py);
  the target is the clean image;
- whole photos (`--data` in the `pixels`/`shapes`/`offsets` layout of docs/formats.md) with
  `--crop S`: `--crops-per-image K` random S x S crops of each image per epoch, uniform over the
  positions inside it, with `--augment flips|dihedral` mirrored or turned;
- the optimiser: Adam or AdamW (`--optimizer`, `--lr`, `--beta1`, `--beta2`, `--adam-eps`,
  `--weight-decay`), the learning-rate schedule of docs/usage.md (`--warmup-steps`, `--lr-schedule
  constant|cosine|step`, `--lr-min`, `--lr-decay-steps` defaulting to `--steps`, `--lr-step-every`,
  `--lr-step-factor`), `--clip-grad-norm`; the loss `mean((x_hat - x)^2)`, or with `--loss charbonnier` `mean(sqrt((x_hat - x)^2 + 1e-6))` (plus the VAE's KL term);
- `--weight-ema D`: the bias-corrected moving average of the weights (WeightAverage.swift), which
  is what is saved and restores, as `vqvae restore` uses a checkpoint's average;
- the budget: `--steps` optimiser steps of `--global-batch-size` images, ending earlier after the
  first step that finds `--time-budget` seconds of training used (every process stops after the
  same step; start-up and data loading are not counted, as in `vqvae train`).

Parallelism: one process with `--threads N` intra-op threads, or `--ddp N` processes (gloo,
DistributedDataParallel, `--threads` each), each taking its `G/N` share of every global batch.

`--restore IN.png... --restore-out OUT.png...` then restores whole photos as `vqvae restore` does by
default: tiles of the training size with a least overlap of a quarter of each side (`--overlap`),
placed as TiledImage.swift places them, edge-replicated where the image is smaller than a tile,
blended with the raised-cosine window and written as `round(clip(v, 0, 1) * 255)`; `--whole` runs
the whole image in one pass instead; `--mask MASK.png` (white = missing, gray level >= 128; with
`--whole`) gives a mask-channel model the holes. `--clean CLEAN.png` prints PSNR and SSIM of the restored image
(scikit-image, as the project's bench/restoration.md measures them). `--out DIR` keeps
`DIR/model.pt` (`state_dict` in scripts/vqvae_torch.py's names and the model config).
"""
import argparse
import json
import math
import os
import sys
import time

import h5py
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vqvae_torch import VQVAE  # noqa: E402


def value_range(text, what):
    """`X` or `LOW..HIGH` -> (low, high)."""
    parts = text.split("..")
    try:
        low, high = (float(parts[0]), float(parts[-1])) if len(parts) <= 2 else (None, None)
    except ValueError:
        low = high = None
    if low is None or low > high or low < 0:
        raise argparse.ArgumentTypeError(f"{what} must be a value or a range LOW..HIGH with 0 <= LOW <= HIGH (got {text})")
    return low, high


def corrupt_spec(text):
    """`noise:SIGMA`, `noise:LOW..HIGH` -> ("noise", low, high); `holes:COUNT[:0[:SCALE]]` -> ("holes", count, scale)."""
    name, _, arg = text.strip().partition(":")
    if name.lower() == "holes":
        parts = arg.split(":")
        try:
            count, fill, scale = int(parts[0]), float(parts[1]) if len(parts) > 1 else 0.0, float(parts[2]) if len(parts) > 2 else 1.0
        except ValueError:
            count = 0
        if len(parts) <= 3 and 1 <= count <= 64 and fill == 0 and 0 < scale <= 8:
            return ("holes", count, scale)
    if name.lower() != "noise" or "," in arg:
        raise argparse.ArgumentTypeError(f"only --corrupt noise:SIGMA, noise:LOW..HIGH or holes:COUNT[:0[:SCALE]] is reproduced (got {text})")
    return ("noise",) + value_range(arg, "noise:SIGMA")


def mark_holes(height, width, most, rng, scale=1.0):
    """[H, W] float32, 1 where a hole is: Corruption.swift's markHoles (sizes times `scale`), drawn
    with numpy."""
    marks = np.zeros((height, width), np.float32)
    shortest = float(min(height, width))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)

    def side(length):
        f = math.exp(math.log(1 / 16) + (math.log(0.5) - math.log(1 / 16)) * rng.random())
        return min(max(int(round(scale * f * length)), 1), length)
    for _ in range(1 + rng.integers(most)):
        if rng.random() < 0.5:
            rows, columns = side(height), side(width)
            top, left = rng.integers(height - rows + 1), rng.integers(width - columns + 1)
            marks[top:top + rows, left:left + columns] = 1
            continue
        radius = 0.5 + rng.random() * max(1.0, scale * shortest / 12)
        y, x = rng.random() * height, rng.random() * width
        for _ in range(1 + rng.integers(6)):
            angle, length = 2 * math.pi * rng.random(), scale * (0.1 + 0.3 * rng.random()) * shortest
            end_y = min(max(y + length * math.sin(angle), 0.0), height - 1.0)
            end_x = min(max(x + length * math.cos(angle), 0.0), width - 1.0)
            dy, dx = end_y - y, end_x - x
            t = np.clip(((ys - y) * dy + (xs - x) * dx) / max(dy * dy + dx * dx, 1e-12), 0, 1)
            marks[(ys - y - t * dy) ** 2 + (xs - x - t * dx) ** 2 <= radius * radius] = 1
            y, x = end_y, end_x
    return marks


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", help="HDF5 files with `images`, concatenated in order")
    ap.add_argument("--images-key", default="images")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--time-budget", type=float, default=0, help="seconds of training (0: none)")
    ap.add_argument("--global-batch-size", type=int, default=32)
    ap.add_argument("--optimizer", choices=["adam", "adamw"], default="adam")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.999)
    ap.add_argument("--adam-eps", type=float, default=1e-8)
    ap.add_argument("--weight-decay", type=float, default=None, help="default 0 (adam), 0.01 (adamw)")
    ap.add_argument("--warmup-steps", type=int, default=0)
    ap.add_argument("--lr-schedule", choices=["constant", "cosine", "step"], default="constant")
    ap.add_argument("--lr-min", type=float, default=0)
    ap.add_argument("--lr-decay-steps", type=int, default=None, help="cosine: default --steps")
    ap.add_argument("--lr-step-every", type=int, default=0)
    ap.add_argument("--lr-step-factor", type=float, default=0.1)
    ap.add_argument("--clip-grad-norm", type=float, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-shuffle", action="store_true")
    ap.add_argument("--corrupt", type=corrupt_spec, default=None, metavar="noise:SIGMA|holes:COUNT[:0[:SCALE]]")
    ap.add_argument("--crop", type=int, default=None, help="whole-photo data: train on random SxS crops")
    ap.add_argument("--crops-per-image", type=int, default=1)
    ap.add_argument("--augment", choices=["none", "flips", "dihedral"], default="none")
    ap.add_argument("--mask-channel", action="store_true", help="the model reads the mask of the holes")
    ap.add_argument("--hole-fill", choices=["zero", "smooth", "plate"], default="zero",
                    help="with --mask-channel: the missing pixels blanked, or filled smoothly (vqvae_torch.smooth_fill; plate: with thin plate sweeps)")
    ap.add_argument("--weight-ema", type=float, default=0, help="keep and save the weights' moving average (0: none)")
    ap.add_argument("--model", choices=["vqvae", "vae", "ae"], default="vqvae")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--res-hidden", type=int, default=32)
    ap.add_argument("--res-blocks", type=int, default=2)
    ap.add_argument("--down", type=int, default=2)
    ap.add_argument("--code-dim", type=int, default=64)
    ap.add_argument("--kl-weight", type=float, default=0.001)
    ap.add_argument("--loss", choices=["mse", "charbonnier"], default="mse",
                    help="the reconstruction term: mse, or charbonnier mean(sqrt(d^2 + 1e-6)) as `vqvae train --loss`")
    ap.add_argument("--residual", action="store_true")
    ap.add_argument("--detail-layers", type=int, default=0)
    ap.add_argument("--detail-channels", type=int, default=32)
    ap.add_argument("--skips", action="store_true")
    ap.add_argument("--skip-weight", type=lambda t: value_range(t, "--skip-weight"), default=(1.0, 1.0))
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads per process (default: the CPUs / processes)")
    ap.add_argument("--ddp", type=int, default=1, help="processes (DistributedDataParallel over gloo)")
    ap.add_argument("--out", help="folder for model.pt")
    ap.add_argument("--checkpoint", help="no training: restore with this `vqvae train` checkpoint (checks the tiling "
                    "against `vqvae restore`)")
    ap.add_argument("--restore", nargs="+", help="PNG (or JPEG) photos to restore after training")
    ap.add_argument("--restore-out", nargs="+", help="where the restored PNGs go, one per --restore")
    ap.add_argument("--overlap", type=int, default=None, help="least tile overlap (default: a quarter of each side)")
    ap.add_argument("--whole", action="store_true", help="restore the whole image in one pass instead of tiles")
    ap.add_argument("--batch", type=int, default=32, help="tiles per pass when restoring")
    ap.add_argument("--clean", nargs="+", help="the clean photos: print PSNR and SSIM of the restored ones")
    ap.add_argument("--mask", nargs="+", help="restore: PNGs whose white pixels are missing, one per --restore "
                    "(mask-channel models, --whole)")
    args = ap.parse_args(argv)
    if args.model == "vqvae" and not args.checkpoint:
        ap.error("--model vqvae: the quantizer is not reproduced here; use --model ae or vae")
    if args.checkpoint:
        if not args.restore:
            ap.error("--checkpoint needs --restore and --restore-out")
        return args
    if not args.data:
        ap.error("--data is required")
    if args.global_batch_size % args.ddp:
        ap.error(f"--ddp {args.ddp} must divide --global-batch-size {args.global_batch_size}")
    if args.detail_layers and not args.residual:
        ap.error("--detail-layers needs --residual")
    if args.mask_channel and (not args.corrupt or args.corrupt[0] != "holes"):
        ap.error("--mask-channel needs --corrupt holes:COUNT")
    if args.hole_fill != "zero" and not args.mask_channel:
        ap.error(f"--hole-fill {args.hole_fill} fills the pixels a mask marks missing; it needs --mask-channel")
    if args.mask_channel and args.model != "ae":
        ap.error("--mask-channel is reproduced for --model ae only")
    if args.mask and not args.whole:
        ap.error("--mask needs --whole")
    if not 0 <= args.weight_ema < 1:
        ap.error("--weight-ema must be in [0, 1)")
    if (args.restore is None) != (args.restore_out is None):
        ap.error("--restore and --restore-out go together")
    for flag in ("restore_out", "mask", "clean"):
        given = getattr(args, flag)
        if given is not None and len(given) != len(args.restore or []):
            ap.error(f"--{flag.replace('_', '-')} needs one file per --restore photo")
    if args.lr_schedule == "step" and args.lr_step_every <= 0:
        ap.error("--lr-schedule step needs --lr-step-every")
    if args.weight_decay is None:
        args.weight_decay = 0.01 if args.optimizer == "adamw" else 0.0
    if args.lr_decay_steps is None:
        args.lr_decay_steps = args.steps
    if args.threads is None:
        args.threads = max(1, (os.cpu_count() or 1) // args.ddp)
    return args


def learning_rate(args, completed):
    """The rate of the step taken after `completed` steps (LearningRateSchedule.swift)."""
    c = max(completed, 0)
    if args.lr_schedule == "constant":
        r = args.lr
    elif args.lr_schedule == "cosine":
        span = max(args.lr_decay_steps - args.warmup_steps, 1)
        p = min(max((c - args.warmup_steps) / span, 0.0), 1.0)
        r = args.lr_min + (args.lr - args.lr_min) * 0.5 * (1 + math.cos(math.pi * p))
    else:
        r = args.lr * args.lr_step_factor ** (c // max(args.lr_step_every, 1))
    if c < args.warmup_steps:
        r *= (c + 1) / args.warmup_steps
    return float(np.float32(r))


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


class WholePhotos:
    """A `pixels`/`shapes`/`offsets` dataset (docs/formats.md) read whole into memory; `crops(indices,
    size, rng, augment)` -> uint8 [n, S, S, C] random crops of those images."""

    def __init__(self, path):
        with h5py.File(path, "r") as f:
            self.pixels, self.shapes, self.offsets = f["pixels"][()], f["shapes"][()], f["offsets"][()]
        if self.pixels.dtype != np.uint8:
            raise SystemExit("restoration_torch.py: whole-photo data must be uint8")

    def __len__(self):
        return len(self.shapes)

    def image(self, i):
        h, w, c = (int(v) for v in self.shapes[i])
        return self.pixels[int(self.offsets[i]):int(self.offsets[i]) + h * w * c].reshape(h, w, c)

    def crops(self, indices, size, rng, augment):
        out = []
        for i in indices:
            img = self.image(i)
            h, w = img.shape[:2]
            if min(h, w) < size:
                raise SystemExit(f"restoration_torch.py: image {i} ({h}x{w}) is smaller than --crop {size}")
            top, left = rng.integers(h - size + 1), rng.integers(w - size + 1)
            crop = img[top:top + size, left:left + size]
            t = rng.integers(8) if augment == "dihedral" else (4 * rng.integers(2) if augment == "flips" else 0)
            crop = np.rot90(crop, t % 4)
            if t >= 4:
                crop = crop[:, ::-1]
            out.append(np.ascontiguousarray(crop))
        return np.stack(out)


def is_whole(path):
    with h5py.File(path, "r") as f:
        return "pixels" in f and "shapes" in f and "offsets" in f


def load_images(paths, key):
    arrays = []
    for path in paths:
        with h5py.File(path, "r") as f:
            arrays.append(f[key][()])
    if len({a.dtype for a in arrays}) != 1 or len({a.shape[1:] for a in arrays}) != 1:
        raise SystemExit("restoration_torch.py: the --data files differ in dtype or image shape")
    images = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    if images.ndim != 4 or images.dtype not in (np.uint8, np.float32):
        raise SystemExit(f"restoration_torch.py: `{key}` must be (N, H, W, C) uint8 or float32, got {images.shape} {images.dtype}")
    return images


def model_config(args, shape):
    """The model's config for training samples of `shape` (N, H, W, C)."""
    return {"model": args.model, "height": shape[1], "width": shape[2], "channels": shape[3],
            "mask_channel": args.mask_channel, "hole_fill": args.hole_fill,
            "hidden": args.hidden, "residual_hidden": args.res_hidden, "residual_blocks": args.res_blocks,
            "downsamplings": args.down, "code_dimension": args.code_dim, "kl_weight": args.kl_weight,
            "residual": args.residual, "detail_layers": args.detail_layers, "detail_channels": args.detail_channels,
            "skips": args.skips, "skip_weight_low": args.skip_weight[0], "skip_weight_high": args.skip_weight[1]}


class Trained(torch.nn.Module):
    """The training forward: skip weights per image, the VAE's reparameterised sample and KL."""

    def __init__(self, net, kl_weight, loss="mse"):
        super().__init__()
        self.net, self.kl_weight, self.loss = net, kl_weight, loss

    def forward(self, damaged, clean, weights, mask=None):
        net = self.net
        kl = None
        if net.mask_channel:
            # (an autoencoder: its forward is the training forward)
            x_hat = net(damaged, weight=weights, mask=mask)
        else:
            z, kept = net.encode(damaged, keep=True)
            if net.kind == "vae":
                mean, logvar = z.chunk(2, 1)
                q = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
                kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum() / clean.numel()
            else:
                q = z
            x_hat = net.head(damaged, net.decode(q, kept, weights))
        mse = F.mse_loss(x_hat, clean)
        fit = torch.sqrt((x_hat - clean) ** 2 + 1e-6).mean() if self.loss == "charbonnier" else mse
        return fit if kl is None else fit + self.kl_weight * kl, mse


def train(rank, world, args, result_queue=None):
    torch.set_num_threads(args.threads)
    if world > 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        dist.init_process_group("gloo", rank=rank, world_size=world)
    whole = WholePhotos(args.data[0]) if is_whole(args.data[0]) else None
    if whole is not None:
        if len(args.data) != 1 or not args.crop:
            raise SystemExit("restoration_torch.py: whole-photo data is one --data file, with --crop")
        images = None
        shape = (len(whole) * args.crops_per_image, args.crop, args.crop, int(whole.shapes[0][2]))
    else:
        images = load_images(args.data, args.images_key)
        shape = images.shape
    n, G = shape[0], args.global_batch_size
    crop_random = np.random.default_rng([args.seed, 7, rank])
    mask_random = np.random.default_rng([args.seed, 8, rank])
    if n < G:
        raise SystemExit(f"restoration_torch.py: {n} images cannot fill a global batch of {G}")
    share = G // world
    torch.manual_seed(args.seed)  # the same initial weights in every process
    net = VQVAE(model_config(args, shape))
    trained = Trained(net, args.kl_weight, args.loss)
    model = torch.nn.parallel.DistributedDataParallel(trained) if world > 1 else trained
    Adam = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam
    optimizer = Adam(net.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), eps=args.adam_eps,
                     weight_decay=args.weight_decay)
    average = [p.detach().clone() for p in net.parameters()] if args.weight_ema else None
    order_random = np.random.default_rng(args.seed)               # the same order in every process
    noise_random = torch.Generator().manual_seed(args.seed * 1000003 + rank + 1)
    per_epoch = n // G
    scale, offset = (1 / 255.0, 0.5) if images is None or images.dtype == np.uint8 else (1.0, 0.5)
    order, epoch = None, -1
    log = rank == 0
    if log:
        params = sum(p.numel() for p in net.parameters())
        print(f"pytorch {torch.__version__}: {world} process(es) x {args.threads} thread(s), {params} parameters, "
              f"{n} images {shape[1]}x{shape[2]}x{shape[3]}, global batch {G}", flush=True)
    losses, done = [], 0
    if log:
        print(f"load average before training: {loadavg()}", flush=True)
    start = time.monotonic()
    window_start, window_steps = start, 0
    for step in range(args.steps):
        if step // per_epoch != epoch:
            epoch = step // per_epoch
            order = np.arange(n) if args.no_shuffle else order_random.permutation(n)
        first = (step % per_epoch) * G + rank * share
        index = np.sort(order[first:first + share])
        batch = whole.crops(index // args.crops_per_image, args.crop, crop_random, args.augment) if whole is not None \
            else images[index]
        clean = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
        clean = clean * scale
        mask = None
        if args.corrupt and args.corrupt[0] == "holes":
            mask = torch.from_numpy(np.stack([mark_holes(clean.shape[2], clean.shape[3], args.corrupt[1], mask_random, args.corrupt[2])
                                              for _ in range(share)]))[:, None]
            damaged = clean * (1 - mask) - offset       # holes filled with 0
        elif args.corrupt:
            _, low, high = args.corrupt
            sigma = low + (high - low) * torch.rand(share, 1, 1, 1, generator=noise_random) if high > low \
                else torch.full((share, 1, 1, 1), low)
            damaged = (clean + sigma * torch.randn(clean.shape, generator=noise_random)).clamp_(0, 1) - offset
        else:
            damaged = None
        clean = clean - offset
        if damaged is None:
            damaged = clean
        low, high = args.skip_weight
        weights = low + (high - low) * torch.rand(share, generator=noise_random) if high > low else low
        lr = learning_rate(args, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss, mse = model(damaged, clean, weights, mask)
        loss.backward()
        if args.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip_grad_norm)
        optimizer.step()
        done = step + 1
        if average is not None:
            # WeightAverage.swift: a += (1 - d) / (1 - d^t) (p - a), the t-th update.
            w = (1 - args.weight_ema) / (1 - args.weight_ema ** done)
            with torch.no_grad():
                for a, p in zip(average, net.parameters()):
                    a.add_(p.detach() - a, alpha=w)
        window_steps += 1
        losses.append(loss.item())
        stop = args.time_budget > 0 and time.monotonic() - start >= args.time_budget
        if world > 1:
            flag = torch.tensor([1.0 if stop else 0.0])
            dist.all_reduce(flag)
            stop = flag.item() > 0
        if log and (done % args.log_every == 0 or stop or done == args.steps):
            now = time.monotonic()
            # The last step's loss, as `vqvae train` logs it, and the mean since the last line.
            print(f"step {done}: loss {losses[-1]:.5f} (mean {np.mean(losses[-window_steps:]):.5f}) lr {lr:.3g} "
                  f"{window_steps * G / (now - window_start):.0f} img/s", flush=True)
            window_start, window_steps = now, 0
        if stop:
            break
    elapsed = time.monotonic() - start
    if world > 1:
        dist.destroy_process_group()
    if average is not None:
        with torch.no_grad():
            for a, p in zip(average, net.parameters()):
                p.copy_(a)
    if log:
        print(f"done: {done} steps in {elapsed:.1f} s ({done * G / elapsed:.0f} img/s); final loss "
              f"{losses[-1]:.5f}; load average {loadavg()}", flush=True)
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            names = {layer: name for name, layer in net.names().items()}
            state = {f"{names[layer]}/{part}": getattr(layer, part).detach().clone()
                     for layer in net.names().values() for part in ("weight", "bias")}
            torch.save({"checkpoint_state": state, "state_dict": net.state_dict(), "config": {"model": model_config(args, shape)},
                        "step": done, "seconds": elapsed}, os.path.join(args.out, "model.pt"))
        if result_queue is not None:
            # numpy arrays travel by value (torch tensors would go through shared memory that ends with this process)
            result_queue.put({k: v.detach().numpy().copy() for k, v in net.state_dict().items()})
    return net, done, elapsed


# Tiles, as Sources/Model/TiledImage.swift.

def tile_origins(length, tile, overlap):
    """One tile at 0 when length <= tile; else n = ceil((L - T) / (T - o)) + 1 at floor(i (L - T) / (n - 1))."""
    if length <= tile:
        return [0]
    stride, span = tile - overlap, length - tile
    count = (span + stride - 1) // stride + 1
    return [i * span // (count - 1) for i in range(count)]


def tile_window(tile):
    """v(i) = 0.5 - 0.5 cos(2 pi (i + 0.5) / T), computed in double and rounded to float."""
    i = np.arange(tile, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2 * np.pi * (i + 0.5) / tile)).astype(np.float32)


def process_tiled(image, tile_h, tile_w, overlap_h, overlap_w, batch, run):
    """`image` [H, W, C] float32 -> the blended [H, W, C_out] of `run` ([n, Th, Tw, C] -> [n, Th, Tw, C_out])."""
    height, width, channels = image.shape
    rows, cols = tile_origins(height, tile_h, overlap_h), tile_origins(width, tile_w, overlap_w)
    origins = [(top, left) for top in rows for left in cols]
    row_window, col_window = tile_window(tile_h), tile_window(tile_w)
    output, weight_sums = None, np.zeros((height, width), np.float32)
    for start in range(0, len(origins), batch):
        chunk = origins[start:start + batch]
        tiles = np.empty((len(chunk), tile_h, tile_w, channels), np.float32)
        for k, (top, left) in enumerate(chunk):
            ys = np.minimum(np.arange(top, top + tile_h), height - 1)   # edge replication
            xs = np.minimum(np.arange(left, left + tile_w), width - 1)
            tiles[k] = image[ys][:, xs]
        results = run(tiles)
        if output is None:
            output = np.zeros((height, width, results.shape[-1]), np.float32)
        for k, (top, left) in enumerate(chunk):
            h, w = min(tile_h, height - top), min(tile_w, width - left)
            window = row_window[:h, None] * col_window[None, :w]
            weight_sums[top:top + h, left:left + w] += window
            output[top:top + h, left:left + w] += window[:, :, None] * results[k, :h, :w]
    return output * (np.float32(1) / weight_sums)[:, :, None]


def to_bytes(unit):
    """round(clip(v, 0, 1) * 255), halves away from zero as Swift's rounded()."""
    v = np.clip(np.nan_to_num(unit.astype(np.float32), nan=0.0), 0, 1) * np.float32(255)
    return np.floor(v + np.float32(0.5)).astype(np.uint8)


def restore(net, args, tile_h, tile_w):
    """Every --restore photo; with --clean, prints the mean PSNR and SSIM over them."""
    scores = [restore_one(net, args, tile_h, tile_w, photo, out, (args.mask or [None] * len(args.restore))[k],
                          (args.clean or [None] * len(args.restore))[k])
              for k, (photo, out) in enumerate(zip(args.restore, args.restore_out))]
    if args.clean and len(scores) > 1:
        print("mean over %d photos: restored PSNR %.2f dB SSIM %.4f" % (len(scores), np.mean([v[0] for v in scores]),
                                                                       np.mean([v[1] for v in scores])), flush=True)
    return scores


def restore_one(net, args, tile_h, tile_w, source, destination, mask_path, clean_path):
    from PIL import Image
    photo = Image.open(source)
    channels = net.up[-1].out_channels
    photo = photo.convert("RGB" if channels == 3 else "L")
    pixels = np.asarray(photo, np.float32) / np.float32(255)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    normalised = pixels - np.float32(0.5)
    net.eval()

    mask = None
    if mask_path:
        m = np.asarray(Image.open(mask_path).convert("L"))
        if m.shape != pixels.shape[:2]:
            raise SystemExit(f"restoration_torch.py: --mask {mask_path} is {m.shape[1]}x{m.shape[0]}, the photo "
                             f"{pixels.shape[1]}x{pixels.shape[0]}")
        mask = torch.from_numpy((m >= 128).astype(np.float32))[None, None]

    def run(tiles):
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(tiles.transpose(0, 3, 1, 2)))
            return (net(x, mask=mask) if net.mask_channel else net(x)).permute(0, 2, 3, 1).numpy()

    start = time.monotonic()
    if args.whole:
        out = run(normalised[None])[0]
    else:
        overlap_h = args.overlap if args.overlap is not None else tile_h // 4
        overlap_w = args.overlap if args.overlap is not None else tile_w // 4
        out = process_tiled(normalised, tile_h, tile_w, overlap_h, overlap_w, args.batch, run)
    restored = to_bytes(out + np.float32(0.5))
    Image.fromarray(restored[:, :, 0] if channels == 1 else restored).save(destination)
    how = "whole" if args.whole else f"tiles of {tile_h}x{tile_w}"
    print(f"restored {source} ({pixels.shape[1]}x{pixels.shape[0]}) into {destination} in "
          f"{time.monotonic() - start:.2f} s ({how})", flush=True)
    if clean_path:
        from skimage.metrics import peak_signal_noise_ratio, structural_similarity
        clean = np.asarray(Image.open(clean_path).convert("RGB" if channels == 3 else "L"), np.float64) / 255
        mine, damaged = restored.astype(np.float64) / 255, pixels.astype(np.float64)
        if clean.ndim == 2:
            clean, mine, damaged = clean[:, :, None], mine, damaged
        mine = mine.reshape(clean.shape)
        damaged = damaged.reshape(clean.shape)

        def score(a):
            return (peak_signal_noise_ratio(clean, a, data_range=1),
                    structural_similarity(clean, a, channel_axis=-1, data_range=1, gaussian_weights=True,
                                          sigma=1.5, use_sample_covariance=False))
        print("input PSNR %.2f dB SSIM %.4f; restored PSNR %.2f dB SSIM %.4f" % (*score(damaged), *score(mine)),
              flush=True)
        return score(mine)
    return None


def ddp_worker(rank, world, args, port, queue):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    train(rank, world, args, queue if rank == 0 else None)


def main():
    args = parse_args()
    if args.checkpoint:
        with h5py.File(args.checkpoint, "r") as f:
            m = json.loads(f.attrs["config"])["model"]
            net = VQVAE(m)
            if net.kind == "vqvae":
                raise SystemExit("restoration_torch.py: --checkpoint takes AE and VAE checkpoints (no quantizer here)")
            with torch.no_grad():
                for name, layer in net.names().items():
                    layer.weight.copy_(torch.from_numpy(f[f"model/{name}/weight"][()]))
                    layer.bias.copy_(torch.from_numpy(f[f"model/{name}/bias"][()]))
        torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
        restore(net, args, m["height"], m["width"])
        return 0
    if is_whole(args.data[0]):
        with h5py.File(args.data[0], "r") as f:
            images_shape = (0, args.crop, args.crop, int(f["shapes"][0][2]))
    else:
        with h5py.File(args.data[0], "r") as f:
            images_shape = f[args.images_key].shape
    if args.ddp > 1:
        import socket
        import torch.multiprocessing as mp
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ctx = mp.get_context("spawn")
        queue = ctx.SimpleQueue()
        processes = [ctx.Process(target=ddp_worker, args=(r, args.ddp, args, port, queue)) for r in range(args.ddp)]
        for p in processes:
            p.start()
        while queue.empty() and all(p.is_alive() for p in processes):
            time.sleep(0.2)
        state = None if queue.empty() else queue.get()
        for p in processes:
            p.join()
        if state is None or any(p.exitcode for p in processes):
            return 1
        net = VQVAE(model_config(args, images_shape))
        net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    else:
        net, _, _ = train(0, 1, args)
    if args.restore:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        restore(net, args, images_shape[1], images_shape[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
