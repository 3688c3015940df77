#!/usr/bin/env python3
"""Check one training step of `vqvae train`, or a checkpoint's forward pass, against PyTorch.

    vqvae train --data D.h5 --out RUN --no-shuffle --codebook-init sonnet --steps 0 ...   # initial weights
    vqvae train --data D.h5 --out RUN2 --no-shuffle --codebook-init sonnet --steps 1 ...  # same flags, one step
    python3 scripts/check_against_pytorch.py --data D.h5 \
        --initial RUN/checkpoints/step-00000000.h5 --after RUN2/checkpoints/step-00000001.h5

The script rebuilds the model of spec/model.md in PyTorch from the initial checkpoint, trains it one
step on the first global batch (images 0..G-1, as --no-shuffle takes them), and compares with the
checkpoint written after step 1: gradients (recovered from Adam's first moment, m = (1 - beta1) g,
after any --clip-grad-norm, which torch.nn.utils.clip_grad_norm_ applies here too), Adam's second
moment, the parameters after the update (torch.optim.Adam, or torch.optim.AdamW with --optimizer
adamw, at the step-1 rate of the learning-rate schedule), the codebook and its EMA statistics.
Dead-code restart has no PyTorch counterpart: train with --codebook-init sonnet (or
--dead-code-threshold 0). It prints
the largest relative difference per tensor (|a - b| / max|b|) and exits non-zero above --tolerance.

The forward pass of any checkpoint (every model kind, --residual, --detail-layers, --skips) is
checked against `vqvae eval --recon-out` on clean images:

    vqvae eval --checkpoint C.h5 --data D.h5 --limit 64 --recon-out recon.h5
    python3 scripts/check_against_pytorch.py --data D.h5 --checkpoint C.h5 --recon recon.h5

It loads the checkpoint into scripts/vqvae_torch.py's module (skips at the model's evaluation
weight, the top of its --skip-weight range; the VQ-VAE with the nearest codebook rows), runs the
same images and prints the largest absolute difference in [0, 1] pixels (--forward-tolerance, 1e-5).

The quantizer of the step is the library's own (PyPI `vector-quantize-pytorch`, in the same
optional environment), given the checkpoint's state: `VectorQuantize` for the codebook quantizers
(codebook, EMA counts and sums, and with `--codebook-dim` its `project_in`/`project_out` layers;
`use_cosine_sim` for `--quantizer cosine`, `rotation_trick` for `--rotation-trick`, straight through
otherwise; its commitment loss and its own EMA update in the forward pass), `FSQ` for `--quantizer
fsq`. The codes it picks feed the same decoder, so the step's gradients, the EMA state after the
library's update and the forward pass compare as above. With `--codebook grad` the library picks
the codes and passes the gradient, and the codebook loss `mean((sg(z) - E[k])^2)` is added here: the
library's learnable codebook weighs the codebook's pull by the commitment weight instead
(`--quantizer-source formulas` checks every case against the formulas written out in this script).

PyTorch is an optional tool for this check only, never a dependency of the project.
"""
import argparse
import json
import sys

import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vqvae_torch import VQVAE  # noqa: E402


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def load_images(path, key, count):
    """The first `count` images of `path` in normalised NCHW float32."""
    with h5py.File(path, "r") as d:
        raw = d[key][:count]
    x = torch.from_numpy(raw).float()
    x = (x / 255 - 0.5) if raw.dtype == np.uint8 else (x - 0.5)
    return x.permute(0, 3, 1, 2).contiguous()


def load_model(f, weights="trained"):
    """The checkpoint `f`'s model in scripts/vqvae_torch.py, and its codebook (None without one):
    with weights "ema", the moving average of the parameters (`train --weight-ema`)."""
    model = VQVAE(json.loads(f.attrs["config"])["model"])
    group = "weight_ema" if weights == "ema" else "model"
    with torch.no_grad():
        for name, layer in model.names().items():
            layer.weight.copy_(torch.from_numpy(f[f"{group}/{name}/weight"][()]))
            layer.bias.copy_(torch.from_numpy(f[f"{group}/{name}/bias"][()]))
    codebook = torch.from_numpy(f["model/quantizer/codebook"][()]) if "model/quantizer/codebook" in f else None
    return model, codebook


def finite_scalar(levels):
    """z [N, D, h, w] -> vector_quantize_pytorch.FSQ's q (straight-through), same layout, and the codes."""
    from vector_quantize_pytorch import FSQ
    fsq = FSQ(levels=list(levels))

    def quantize(z, with_codes=False):
        flat = z.permute(0, 2, 3, 1).reshape(1, -1, z.shape[1])
        q, codes = fsq(flat)
        q = q.reshape(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        return (q, codes.reshape(-1)) if with_codes else q
    return quantize


def level_name(level, name):
    """A quantizer tensor's name below quantizer/: level 0's `NAME`, the others' `level{l}/NAME`."""
    return name if level == 0 else f"level{level}/{name}"


def library_layers(vq):
    """The library quantizer's VectorQuantize layers, one per residual level."""
    return list(vq.layers) if hasattr(vq, "layers") else [vq]


def library_quantizer(m, state, training):
    """vector_quantize_pytorch.VectorQuantize (ResidualVQ with --codebooks N) for the model config
    `m`, holding the checkpoint's quantizer `state` (a dict of arrays named as below
    /model/quantizer), in train or eval mode."""
    from vector_quantize_pytorch import ResidualVQ, VectorQuantize
    D, K, L = m["code_dimension"], m["codes"], m.get("codebooks", 1)
    d = m.get("codebook_dimension", 0) or D
    grad = m["codebook"] == "grad"
    kwargs = dict(codebook_size=K, codebook_dim=d, decay=m["decay"], eps=m["ema_epsilon"], commitment_weight=m["commitment"],
                  use_cosine_sim=m.get("quantizer") == "cosine", rotation_trick=bool(m.get("rotation_trick")), kmeans_init=False,
                  threshold_ema_dead_code=0, ema_update=not grad, learnable_codebook=False, sync_codebook=False)
    vq = ResidualVQ(dim=D, num_quantizers=L, **kwargs) if L > 1 else VectorQuantize(dim=D, channel_last=True, **kwargs)
    vq.train(training)
    with torch.no_grad():
        for level, layer in enumerate(library_layers(vq)):
            book = layer._codebook
            book.embed.copy_(torch.from_numpy(state[level_name(level, "codebook")])[None])
            if not grad:
                book.cluster_size.copy_(torch.from_numpy(state[level_name(level, "ema_count")])[None])
                book.embed_avg.copy_(torch.from_numpy(state[level_name(level, "ema_sum")])[None])
            book.initted.fill_(True)
        for name in ("project_in", "project_out"):
            linear = [x for x in getattr(vq, name).modules() if isinstance(x, torch.nn.Linear)]
            if d == D:
                assert not linear, f"{name} without --codebook-dim"
                continue
            linear[0].weight.copy_(torch.from_numpy(state[f"{name}/weight"]).reshape(linear[0].weight.shape))
            linear[0].bias.copy_(torch.from_numpy(state[f"{name}/bias"]))
    return vq


def quantizer_state(f, group="model"):
    """The arrays below /{group}/quantizer of checkpoint `f`, by their names below it."""
    out = {}
    if f"{group}/quantizer" in f:
        f[f"{group}/quantizer"].visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def library_nearest(vq):
    """z [N, D, h, w] -> the library quantizer's q in evaluation, same layout."""
    def quantize(z):
        flat = z.permute(0, 2, 3, 1).reshape(1, -1, z.shape[1])
        q = vq(flat)[0]
        return q.reshape(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
    return quantize


def nearest_rows(codebook):
    """z [N, D, h, w] -> the nearest codebook rows, same layout (the VQ-VAE's q in evaluation)."""
    def quantize(z):
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        dist = (codebook ** 2).sum(1)[None, :] - 2 * flat @ codebook.t()
        q = codebook[dist.argmin(1)]
        return q.reshape(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
    return quantize


def check_forward(args):
    with h5py.File(args.recon, "r") as r:
        recon = r["images"][()]
        weights = r.attrs.get("weights", "trained")  # the weights `vqvae eval` used
    with h5py.File(args.checkpoint, "r") as f:
        model, codebook = load_model(f, weights)
        key = json.loads(f.attrs["config"])["data"].get("images_key", "images")
    x = load_images(args.data, key, recon.shape[0])
    config = json.loads(h5py.File(args.checkpoint, "r").attrs["config"])["model"]
    if config.get("quantizer") == "fsq":
        quantize = finite_scalar(config["levels"])
    elif codebook is None:
        quantize = None
    else:
        with h5py.File(args.checkpoint, "r") as f:
            state = quantizer_state(f, "weight_ema" if weights == "ema" and "weight_ema/quantizer/project_in/weight" in f else "model")
        quantize = library_nearest(library_quantizer(config, state, training=False))
    with torch.no_grad():
        out = model(x, quantize=quantize)
    mine = (out + 0.5).permute(0, 2, 3, 1).numpy()
    diff = float(np.abs(mine.astype(np.float64) - recon).max())
    m = model
    print(f"forward of {args.checkpoint} ({m.kind}, down {len(m.down)}, residual {m.residual}, detail layers "
          f"{len(m.detail)}, skips {m.skips} at w {m.fidelity:g}) on {recon.shape[0]} images: largest |pytorch - "
          f"vqvae eval| {diff:.2e} in [0, 1] pixels (tolerance {args.forward_tolerance:.0e}; values "
          f"{recon.min():.3f}..{recon.max():.3f})")
    return 0 if diff <= args.forward_tolerance else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--initial")
    ap.add_argument("--after")
    ap.add_argument("--checkpoint", help="with --recon: the checkpoint `vqvae eval` ran")
    ap.add_argument("--recon", help="`vqvae eval --recon-out` file: check the forward pass instead of a step")
    ap.add_argument("--forward-tolerance", type=float, default=1e-5)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    # Parameters after Adam: where |g| is near eps (1e-8), the update lr * g / (|g| + eps) moves by
    # up to lr / eps = 3e4 times an absolute difference in g, so rounding differences of 1e-9 in a
    # gradient (1e-6 relative) show as about 1e-4 of the tensor's largest value.
    ap.add_argument("--parameter-tolerance", type=float, default=1e-3)
    ap.add_argument("--quantizer-source", choices=["library", "formulas"], default="library",
                    help="the step's codebook quantizer: vector_quantize_pytorch.VectorQuantize (default) or the formulas of this script")
    args = ap.parse_args()
    torch.set_default_dtype(torch.float32)
    if args.recon:
        if not args.checkpoint:
            ap.error("--recon needs --checkpoint")
        return check_forward(args)
    if not (args.initial and args.after):
        ap.error("give --initial and --after (a training step) or --checkpoint and --recon (a forward pass)")

    f0, f1 = h5py.File(args.initial, "r"), h5py.File(args.after, "r")
    cfg = json.loads(f1.attrs["config"])
    m, opt, data = cfg["model"], cfg["optimizer"], cfg["data"]
    G = data["global_batch_size"]
    assert not data["shuffle"], "train with --no-shuffle so step 1 uses images 0..G-1"
    if (cfg.get("codebook") or {}).get("dead_code_threshold", 0) > 0:
        sys.exit("check_against_pytorch.py: the run re-seeds dead codes, which PyTorch does not; "
                 "train with --codebook-init sonnet (or --dead-code-threshold 0)")
    if m.get("skips") and m.get("skip_weight_low", 1) != m.get("skip_weight_high", 1):
        sys.exit("check_against_pytorch.py: the run draws a skip weight per image, which this script does not "
                 "reproduce; train with one --skip-weight value")
    if m.get("model", "vqvae") != "vqvae":
        sys.exit("check_against_pytorch.py: the training-step check is for the VQ-VAE; use --recon for other kinds")
    # The step-1 rate: the schedule's rate after 0 completed steps is the warmup's first one.
    lr = opt["lr"] / opt["warmup_steps"] if opt.get("warmup_steps", 0) > 0 else opt["lr"]
    clip = opt.get("clip_grad_norm", 0) or 0
    with h5py.File(args.data, "r") as d:
        raw = d[data.get("images_key", "images")][:G]
    x = torch.from_numpy(raw).float()
    x = (x / 255 - 0.5) if raw.dtype == np.uint8 else (x - 0.5)
    x = x.permute(0, 3, 1, 2).contiguous()

    model = VQVAE(m)
    layers = model.names()
    with torch.no_grad():
        for name, layer in layers.items():
            layer.weight.copy_(torch.from_numpy(f0[f"model/{name}/weight"][()]))
            layer.bias.copy_(torch.from_numpy(f0[f"model/{name}/bias"][()]))
    fsq = finite_scalar(m["levels"]) if m.get("quantizer") == "fsq" else None
    grad_codebook = m["codebook"] == "grad" and fsq is None
    levels = 1 if fsq else m.get("codebooks", 1)
    codebooks = [] if fsq else [torch.from_numpy(f0["model/quantizer/" + level_name(l, "codebook")][()]).clone() for l in range(levels)]
    codebook = codebooks[0] if codebooks else None
    projection = (m.get("codebook_dimension", 0) or m["code_dimension"]) != m["code_dimension"]
    library = None
    if not fsq and (args.quantizer_source == "library" or projection or levels > 1):
        library = library_quantizer(m, quantizer_state(f0), training=True)
    # The projections of --codebook-dim live in the library's quantizer: checked beside the layers.
    projections = {}
    if library is not None and projection:
        for name in ("project_in", "project_out"):
            projections["quantizer/" + name] = [x for x in getattr(library, name).modules() if isinstance(x, torch.nn.Linear)][0]
    params = [p for l in list(layers.values()) + list(projections.values()) for p in (l.weight, l.bias)]
    if grad_codebook:
        for book in codebooks:
            book.requires_grad_(True)
            params.append(book)
    optimizer = torch.optim.AdamW if opt.get("name", "adam") == "adamw" else torch.optim.Adam
    adam = optimizer(params, lr=lr, betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"],
                     weight_decay=opt["weight_decay"], foreach=False)

    # Forward.
    z, kept = model.encode(x, keep=True)                  # [N, D, h, w]
    flat = z.permute(0, 2, 3, 1).reshape(-1, m["code_dimension"])
    cosine = m.get("quantizer") == "cosine"
    if cosine:
        # vector_quantize_pytorch's CosineSimCodebook: l2norm (F.normalize, eps 1e-6) before everything.
        flat = F.normalize(flat, p=2, dim=-1, eps=1e-6)
    if fsq:
        q_st, idx = fsq(z, with_codes=True)
        commit = torch.zeros(())
    elif library is not None:
        # The library's forward: codes, straight-through or rotated q, its weighted commitment
        # loss, and (EMA codebook) its EMA update.
        q_flat, idx, weighted_commit = library(z.permute(0, 2, 3, 1).reshape(1, -1, m["code_dimension"]))
        idx = idx.reshape(-1, levels)  # ResidualVQ: [P, L]
        # ResidualVQ returns each level's weighted commitment; ours is their sum.
        commit = weighted_commit.sum() / m["commitment"] if m["commitment"] else torch.zeros(())
        q_st = q_flat.reshape(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        if grad_codebook:
            # The codebook term: the library's codes, each codebook's own gradient, on its
            # level's residual (in the codebook's space with --codebook-dim).
            residual = (projections["quantizer/project_in"](flat) if projection else flat).detach()
            codebook_term = torch.zeros(())
            for level, book in enumerate(codebooks):
                q = book[idx[:, level]]
                codebook_term = codebook_term + ((residual - q) ** 2).mean()
                residual = residual - q.detach()
        idx = idx.reshape(-1)
    else:
        dist = (codebook.detach() ** 2).sum(1)[None, :] - 2 * flat.detach() @ codebook.detach().t()
        idx = dist.argmin(1)
        q = codebook[idx]
        commit = ((flat - q.detach()) ** 2).mean()
        if m.get("rotation_trick"):
            from vector_quantize_pytorch.vector_quantize_pytorch import rotate_to
            # The value is q to rounding; the model feeds q itself and rotates only the gradient.
            rotated = rotate_to(flat, q.detach())
            q_st = rotated + (q - rotated).detach()
        else:
            q_st = flat + (q - flat).detach()
        q_st = q_st.reshape(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
    x_hat = model.head(x, model.decode(q_st, kept, m.get("skip_weight_low", 1.0)))
    mse = ((x_hat - x) ** 2).mean()
    # --loss charbonnier: mean(sqrt(d^2 + eps^2)), eps = 1e-3.
    fit = torch.sqrt((x_hat - x) ** 2 + 1e-6).mean() if m.get("loss", "mse") == "charbonnier" else mse
    loss = fit + m["commitment"] * commit
    if grad_codebook:
        loss = loss + (codebook_term if library is not None else ((flat.detach() - q) ** 2).mean())
    adam.zero_grad()
    loss.backward()
    if clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, clip, foreach=False)
        print(f"gradient norm {norm.item():.6f}, clipped to {clip}")
    print(f"pytorch step 1 ({'vector_quantize_pytorch.' + type(library).__name__ if library is not None else 'FSQ' if fsq else 'formulas'}): "
          f"loss {loss.item():.6f} mse {mse.item():.6f} commit {commit.item():.6f} codes used {len(idx.unique())}")

    worst = 0.0
    report = []
    b1 = opt["beta1"]
    def stored(name, part, group):
        value = f1[f"{group}/{name}/{part}"][()]
        return value.reshape(value.shape[:2]) if name in projections and part == "weight" else value
    everything = {**layers, **projections}
    for name, layer in everything.items():
        for part in ("weight", "bias"):
            g = getattr(layer, part).grad.numpy()
            report.append((f"grad {name}/{part}", rel(stored(name, part, "optimizer/adam_m") / (1 - b1), g)))
    if grad_codebook:
        for level, book in enumerate(codebooks):
            name = "quantizer/" + level_name(level, "codebook")
            report.append((f"grad {name}", rel(f1[f"optimizer/adam_m/{name}"][()] / (1 - b1), book.grad.numpy())))
    adam.step()
    for name, layer in everything.items():
        for part in ("weight", "bias"):
            p = getattr(layer, part).detach().numpy()
            report.append((f"param {name}/{part}", rel(stored(name, part, "model"), p)))
            v = adam.state[getattr(layer, part)]["exp_avg_sq"].numpy()
            report.append((f"adam_v {name}/{part}", rel(stored(name, part, "optimizer/adam_v"), v)))
    if fsq:
        pass  # no codebook
    elif grad_codebook:
        for level, book in enumerate(codebooks):
            name = "quantizer/" + level_name(level, "codebook")
            report.append((name, rel(f1["model/" + name][()], book.detach().numpy())))
    elif library is not None:
        # Every level after the library's own EMA update (level 0's state below).
        for level, layer in enumerate(library_layers(library)[1:], start=1):
            for name, value in (("ema_count", layer._codebook.cluster_size[0]), ("ema_sum", layer._codebook.embed_avg[0]),
                                ("codebook", layer._codebook.embed[0])):
                full = "quantizer/" + level_name(level, name)
                report.append((full, rel(f1["model/" + full][()], value.numpy())))
        book = library_layers(library)[0]._codebook  # after the library's own EMA update
        # Both started from the same counts: N1 - N1' = (1 - decay) (n - n'), so the codes that
        # differ are sum |n - n'| / 2 (over every level).
        moved = sum(np.abs(f1["model/quantizer/" + level_name(l, "ema_count")][()].astype(np.float64)
                           - layer._codebook.cluster_size[0].numpy()).sum()
                    for l, layer in enumerate(library_layers(library))) / (1 - m["decay"]) / 2
        # How many vectors sit within float rounding of a boundary between two codes: the gap
        # between their two nearest codes' squared distances (in float64) below 1e-6 of the
        # squared norms that float32's distance |v|^2 - 2 v.e + |e|^2 cancels.
        with torch.no_grad():
            v = z.detach().permute(0, 2, 3, 1).reshape(-1, m["code_dimension"]).double()
            if projection:
                linear = projections["quantizer/project_in"]
                v = v @ linear.weight.detach().double().t() + linear.bias.detach().double()
            if cosine:
                v = F.normalize(v, p=2, dim=-1, eps=1e-6)
            book0 = torch.from_numpy(f0["model/quantizer/codebook"][()]).double()
            dist = ((v[:, None, :] - book0[None]) ** 2).sum(-1)
            two = dist.topk(2, dim=1, largest=False).values
            scale = (v ** 2).sum(1) + (book0 ** 2).sum(1).max()
            ties = int(((two[:, 1] - two[:, 0]) < 1e-6 * scale).sum())
        if levels > 1:
            # Residual VQ: later levels' residuals that are (nearly) zero, where a code sits exactly
            # on a vector: their direction is rounding, which the rotation trick's |q| / |r| scales.
            with torch.no_grad():
                r = v.clone()
                tiny = 0
                for level in range(levels - 1):
                    rows = torch.from_numpy(f0["model/quantizer/" + level_name(level, "codebook")][()]).double()
                    r = r - rows[idx.reshape(-1, levels)[:, level]]
                    tiny += int((r.norm(dim=1) < 1e-5 * v.norm(dim=1).clamp(min=1e-12)).sum())
            print(f"residual vectors below 1e-5 of their latent's norm at levels 1..{levels - 1}: {tiny}")
        print(f"vectors whose code differs from the library's choice: {moved:.0f} of {idx.numel()}; "
              f"vectors within rounding of a boundary between two codes: {ties}")
        report.append(("ema_count", rel(f1["model/quantizer/ema_count"][()], book.cluster_size[0].numpy())))
        report.append(("ema_sum", rel(f1["model/quantizer/ema_sum"][()], book.embed_avg[0].numpy())))
        report.append(("codebook", rel(f1["model/quantizer/codebook"][()], book.embed[0].numpy())))
    else:
        with torch.no_grad():
            K = m["codes"]
            onehot = F.one_hot(idx, K).float()
            n = onehot.sum(0)
            s = onehot.t() @ flat
            g, eps = m["decay"], m["ema_epsilon"]
            N = torch.from_numpy(f0["model/quantizer/ema_count"][()]) * g + (1 - g) * n
            M = torch.from_numpy(f0["model/quantizer/ema_sum"][()]) * g + (1 - g) * s
            total = N.sum()
            smoothed = (N + eps) / (total + K * eps) * total
            E = M / smoothed[:, None]
            if cosine:
                E = F.normalize(E, p=2, dim=-1, eps=1e-6)
        report.append(("ema_count", rel(f1["model/quantizer/ema_count"][()], N.numpy())))
        report.append(("ema_sum", rel(f1["model/quantizer/ema_sum"][()], M.numpy())))
        report.append(("codebook", rel(f1["model/quantizer/codebook"][()], E.numpy())))
    worst_parameter = 0.0
    for name, r in report:
        if name.startswith("param "):
            worst_parameter = max(worst_parameter, r)
        else:
            worst = max(worst, r)
        print(f"  {r:.2e}  {name}")
    print(f"largest relative difference {worst:.2e} over {len(report)} tensors except the updated parameters "
          f"(tolerance {args.tolerance:.0e}); parameters after Adam {worst_parameter:.2e} "
          f"(tolerance {args.parameter_tolerance:.0e})")
    return 0 if worst <= args.tolerance and worst_parameter <= args.parameter_tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
