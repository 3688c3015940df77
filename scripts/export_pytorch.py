#!/usr/bin/env python3
"""Turn a vqvae checkpoint (spec/checkpoint.md) into a PyTorch file.

    python3 scripts/export_pytorch.py runs/a/checkpoints/step-00002000.h5 model.pt

writes `torch.save({"state_dict": ..., "codebook": ..., "ema_count": ..., "ema_sum": ..., "config": ...,
"step": ...})` (`codebook` None for the autoencoder and the VAE). `state_dict` loads into
`scripts/vqvae_torch.py`'s `VQVAE(config["model"])`, which builds every architecture option
(residual output, detail layers, skips):

    import torch, sys; sys.path.insert(0, "scripts"); from vqvae_torch import VQVAE
    saved = torch.load("model.pt")
    model = VQVAE(saved["config"]["model"]); model.load_state_dict(saved["state_dict"])

With `--optimizer`, Adam's moments are added as `adam_m` / `adam_v` (same keys as `state_dict`) with
`adam_t`. A checkpoint of a run with `--weight-ema` adds `weight_ema`, the moving average of the
parameters with the keys of `state_dict` (what `vqvae eval` and `restore` use by default). A run with
`--codebook-dim` adds `projections`: `project_in.weight` `[d, D]`, `project_in.bias`, `project_out.weight`
`[D, d]` and `project_out.bias`, the state of two `nn.Linear` layers (`vector_quantize_pytorch`'s
`VectorQuantize(codebook_dim=d)` holds the same two), applied to each latent vector before and after
the codebook. Needs h5py and torch (an optional dependency, not needed to train); `--help` needs neither.
"""
import argparse
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("output")
    ap.add_argument("--optimizer", action="store_true", help="also export Adam's moments")
    args = ap.parse_args()
    # Imported only for a real export, so that --help works without them.
    try:
        import h5py
        import torch
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from vqvae_torch import VQVAE
    except ImportError as error:
        print(f"export_pytorch.py: {error.name or error} is not installed; the export needs h5py and torch "
              "(e.g. python3 -m venv /opt/torchenv && /opt/torchenv/bin/pip install torch h5py numpy)", file=sys.stderr)
        return 1
    try:
        f = h5py.File(args.checkpoint, "r")
        if f.attrs.get("format") != "vqvae-checkpoint":
            raise ValueError("not a vqvae checkpoint")
        config = json.loads(f.attrs["config"])
        model = VQVAE(config["model"])
        state, moments = {}, {"adam_m": {}, "adam_v": {}}
        module_names = {layer: prefix for prefix, layer in model.named_modules()}
        for name, layer in model.names().items():
            for part in ("weight", "bias"):
                key = f"{module_names[layer]}.{part}"
                state[key] = torch.from_numpy(f[f"model/{name}/{part}"][()])
                if args.optimizer:
                    for group in moments:
                        moments[group][key] = torch.from_numpy(f[f"optimizer/{group}/{name}/{part}"][()])
        model.load_state_dict(state)  # checks names and shapes
        # `train --weight-ema`: the moving average of the parameters, keyed like `state_dict`.
        average = {key: torch.from_numpy(f[f"weight_ema/{name}/{part}"][()])
                   for name, layer in model.names().items() for part in ("weight", "bias")
                   for key in [f"{module_names[layer]}.{part}"]} if "weight_ema" in f else None
        # The autoencoder and the VAE have no codebook: "codebook" is None for them.
        codebook = f["model/quantizer/codebook"][()] if "model/quantizer/codebook" in f else None
        out = {"state_dict": state, "codebook": None if codebook is None else torch.from_numpy(codebook),
               "config": config, "step": int(f.attrs["step"])}
        if average is not None:
            out["weight_ema"] = average
        for extra in ("ema_count", "ema_sum"):
            if f"model/quantizer/{extra}" in f:
                out[extra] = torch.from_numpy(f[f"model/quantizer/{extra}"][()])
        # --codebook-dim: the projections around the codebook, as nn.Linear state (weight [out, in]).
        if "model/quantizer/project_in/weight" in f:
            out["projections"] = {f"{name}.{part}": torch.from_numpy(f[f"model/quantizer/{name}/{part}"][()].reshape(
                                      f[f"model/quantizer/{name}/{part}"].shape[:2] if part == "weight" else (-1,)))
                                  for name in ("project_in", "project_out") for part in ("weight", "bias")}
        if args.optimizer:
            out.update(moments)
            out["adam_t"] = int(f["optimizer"].attrs["t"])
    except (OSError, KeyError, ValueError) as error:
        print(f"export_pytorch.py: {args.checkpoint}: {error}", file=sys.stderr)
        return 1
    torch.save(out, args.output)
    print(f"{args.output}: {len(state)} tensors, codebook {'none' if codebook is None else tuple(codebook.shape)}, step {out['step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
