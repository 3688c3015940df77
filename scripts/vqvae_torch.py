"""The VQ-VAE of spec/model.md as a PyTorch module, with the checkpoint's layer names.

Used by scripts/check_against_pytorch.py, scripts/export_pytorch.py, scripts/bench_pytorch.py and
scripts/restoration_torch.py. `VQVAE(config["model"])` takes the `model` object of a checkpoint's
`config` JSON and builds every option it can hold: the model kind (`vqvae`, `vae`, `ae`),
`residual` (`x_hat = x + dec`), `detail_layers` / `detail_channels` (3x3 layers at full resolution
reading `[x | dec]`, their output added: `x_hat = x + dec + detail([x | dec])`) and `skips`
(`up{i}` reads `dec_i + w * relu(down{D-1-i})`, `w` one weight per image) and `upsampling`
(`transposed`: `up{i}` a 4x4 stride-2 transposed convolution; `resize`: nearest-neighbour
upsampling by 2 and a 3x3 convolution, the checkpoint's `up{i}` tensors being the convolution's)
and `mask_channel` (the model reads a mask `m` `[N, 1, H, W]`, 1 = missing: the image is blanked
to `x (1 - m)`, `down0` reads `[x (1 - m) | m]`, the residual and detail paths read the blanked
image, and the output is `m x_hat + (1 - m) x`); with `hole_fill` `smooth` the missing pixels
hold `smooth_fill`'s membrane instead of 0 (the Swift model's `SmoothFill`), and with `plate` the
membrane with thin plate sweeps on its coarse levels.
`VQVAE.names()` maps
checkpoint names (`encoder/down0`, ..., `detail/conv0`) to its layers.

The quantizer is left to the caller (see export_pytorch.py): `forward(x, quantize=...)` takes a
function from `z` `[N, D, h, w]` to the decoder's input for the VQ-VAE; the autoencoder's decoder
reads `z` itself and the VAE's the mean (evaluation). Tensors are NCHW in normalised space
(`v/255 - 0.5`).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


# The thin plate sweeps per coarse level of the `plate` fill (SmoothFill.platePerLevel).
PLATE_SWEEPS = 32


def neighbour_sum(v):
    """(up + down) + (left + right) with replicated edges, [N, C, H, W] (SmoothFill's order)."""
    p = F.pad(v, (1, 1, 1, 1), mode="replicate")
    return (p[:, :, :-2, 1:-1] + p[:, :, 2:, 1:-1]) + (p[:, :, 1:-1, :-2] + p[:, :, 1:-1, 2:])


def laplacian(v):
    """The 4-neighbour Laplacian with replicated edges, [N, C, H, W]."""
    return neighbour_sum(v) - 4 * v


@torch.no_grad()
def smooth_fill(x, m, iterations=8, plate_sweeps=0):
    """The Swift model's `SmoothFill` for a batch: `x` `[N, C, H, W]`, `m` `[N, 1, H, W]` (1 =
    missing). A pull-push pyramid (each coarser pixel the weight-averaged value of its 2x2 children,
    weight min(1, their sum), until nothing is missing or the level is one pixel; there a pixel of
    weight 0 is 0), then coarsest first: blend `w v + (1 - w) up(coarser)` (bilinear, coordinate
    i / 2 - 1/4, edges clamped) and `iterations` Jacobi sweeps of the 4-neighbour mean (edges
    replicated) where the weight is below 1; with `plate_sweeps` (the `plate` fill), on every level but
    the finest, that many damped sweeps `w v + (1 - w) (u - 0.5 L(L(u)) / 20)` of the thin plate
    equation after them."""
    levels = [(x, (1 - m).clamp(0, 1))]
    while True:
        v, w = levels[-1]
        h, wd = v.shape[2], v.shape[3]
        if (h == 1 and wd == 1) or not bool((w < 1).any()):
            break
        pad = (0, wd % 2, 0, h % 2)
        vw, ww = F.pad(v * w, pad), F.pad(w, pad)
        sums = F.avg_pool2d(vw, 2) * 4
        total = F.avg_pool2d(ww, 2) * 4
        levels.append((torch.where(total > 0, sums / total.clamp_min(1e-30), torch.zeros_like(sums)), total.clamp(max=1)))
    v, w = levels[-1]
    v = torch.where(w > 0, v, torch.zeros_like(v))
    for level in range(len(levels) - 2, -1, -1):
        own, a = levels[level]
        h, wd = own.shape[2], own.shape[3]
        up = F.interpolate(v, scale_factor=2, mode="bilinear", align_corners=False)[:, :, :h, :wd]
        v = a * own + (1 - a) * up
        for _ in range(iterations):
            v = a * own + (1 - a) * (neighbour_sum(v) * 0.25)
        if level > 0:
            for _ in range(plate_sweeps):
                v = a * own + (1 - a) * (v - (0.5 / 20) * laplacian(laplacian(v)))
    return v


class Residual(nn.Module):
    def __init__(self, channels, hidden):
        super().__init__()
        self.conv3x3 = nn.Conv2d(channels, hidden, 3, 1, 1)
        self.conv1x1 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x):
        return x + self.conv1x1(F.relu(self.conv3x3(F.relu(x))))


class VQVAE(nn.Module):
    def __init__(self, m):
        super().__init__()
        h, down, c = m["hidden"], m["downsamplings"], m["channels"]
        self.kind = m.get("model", "vqvae")
        self.residual = bool(m.get("residual", False))
        self.skips = bool(m.get("skips", False))
        self.mask_channel = bool(m.get("mask_channel", False))
        self.hole_fill = m.get("hole_fill", "zero")
        # The skip weight of evaluation and restoration (the top of the training range), as the
        # Swift model's `fidelity`.
        self.fidelity = float(m.get("skip_weight_high", 1.0))
        detail_layers, detail_channels = int(m.get("detail_layers", 0)), int(m.get("detail_channels", 32))
        if detail_layers and not self.residual:
            raise ValueError("detail layers need a residual model")
        latent = 2 * m["code_dimension"] if self.kind == "vae" else m["code_dimension"]
        self.down = nn.ModuleList(
            nn.Conv2d((c + self.mask_channel) if i == 0 else h >> (down - i), h >> (down - 1 - i), 4, 2, 1)
            for i in range(down))
        self.enc_conv = nn.Conv2d(h, h, 3, 1, 1)
        self.enc_res = nn.ModuleList(Residual(h, m["residual_hidden"]) for _ in range(m["residual_blocks"]))
        self.pre_quant = nn.Conv2d(h, latent, 1)
        self.dec_conv = nn.Conv2d(m["code_dimension"], h, 3, 1, 1)
        self.dec_res = nn.ModuleList(Residual(h, m["residual_hidden"]) for _ in range(m["residual_blocks"]))
        upsampling = m.get("upsampling", "transposed")
        if upsampling not in ("transposed", "resize"):
            raise ValueError(f"unknown upsampling {upsampling!r}")

        def up(cin, cout):
            if upsampling == "resize":
                return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1))
            return nn.ConvTranspose2d(cin, cout, 4, 2, 1)
        self.up = nn.ModuleList(up(h >> i, c if i == down - 1 else h >> (i + 1)) for i in range(down))
        self.detail = nn.ModuleList(
            nn.Conv2d(2 * c if i == 0 else detail_channels, c if i == detail_layers - 1 else detail_channels, 3, 1, 1)
            for i in range(detail_layers))

    def names(self):
        """Checkpoint name -> module."""
        out = {f"encoder/down{i}": l for i, l in enumerate(self.down)}
        out["encoder/conv"] = self.enc_conv
        for j, r in enumerate(self.enc_res):
            out[f"encoder/res{j}/conv3x3"], out[f"encoder/res{j}/conv1x1"] = r.conv3x3, r.conv1x1
        out["pre_quant"] = self.pre_quant
        out["decoder/conv"] = self.dec_conv
        for j, r in enumerate(self.dec_res):
            out[f"decoder/res{j}/conv3x3"], out[f"decoder/res{j}/conv1x1"] = r.conv3x3, r.conv1x1
        out.update({f"decoder/up{i}": l[1] if isinstance(l, nn.Sequential) else l for i, l in enumerate(self.up)})
        out.update({f"detail/conv{i}": l for i, l in enumerate(self.detail)})
        return out

    def encode(self, x, keep=False):
        """`z` (`pre_quant`'s output); with `keep`, also the list of `relu(down{i})` for the skips."""
        kept = []
        for layer in self.down:
            x = F.relu(layer(x))
            kept.append(x)
        x = self.enc_conv(x)
        for r in self.enc_res:
            x = r(x)
        z = self.pre_quant(F.relu(x))
        return (z, kept) if keep else z

    def decode(self, q, kept=None, weight=None):
        """The decoder from `q`. With skips, `kept` (from `encode(x, keep=True)`) and `weight` (a
        number or one per image, default `fidelity`): `up{i}` reads `dec_i + w * kept[D-1-i]`.
        Without `kept` (codes alone) the skips are left out, as `w = 0`."""
        x = self.dec_conv(q)
        for r in self.dec_res:
            x = r(x)
        x = F.relu(x)
        use_skips = self.skips and kept is not None
        if use_skips:
            w = self.fidelity if weight is None else weight
            if torch.is_tensor(w) and w.dim() == 1:
                w = w.to(x.dtype).view(-1, 1, 1, 1)
        for i, layer in enumerate(self.up):
            if use_skips:
                x = x + w * kept[len(self.up) - 1 - i]
            x = layer(x)
            if i < len(self.up) - 1:
                x = F.relu(x)
        return x

    def head(self, x, dec):
        """The output from the model's input `x` and the decoder's output: `dec`, or for residual
        models `x + dec (+ detail([x | dec]))`."""
        if not self.residual:
            return dec
        out = x + dec
        if len(self.detail):
            y = torch.cat([x, dec], 1)
            for i, layer in enumerate(self.detail):
                y = layer(y)
                if i < len(self.detail) - 1:
                    y = F.relu(y)
            out = out + y
        return out

    def forward(self, x, quantize=None, weight=None, mask=None):
        """`x_hat` for images `x` `[N, C, H, W]`. The VQ-VAE needs `quantize(z)` (e.g. the
        straight-through nearest codebook rows); the VAE decodes its mean; the autoencoder `z`.
        With the mask channel, `mask` `[N, 1, H, W]` (1 = missing; None: nothing missing)."""
        if self.mask_channel:
            original = x
            m = torch.zeros_like(x[:, :1]) if mask is None else mask
            if self.hole_fill == "zero":
                x = x * (1 - m)
            else:
                x = smooth_fill(x, m, plate_sweeps=PLATE_SWEEPS if self.hole_fill == "plate" else 0)
            z, kept = self.encode(torch.cat([x, m], 1), keep=True)
        else:
            z, kept = self.encode(x, keep=True)
        if self.kind == "vqvae":
            if quantize is None:
                raise ValueError("the VQ-VAE's forward needs quantize(z)")
            q = quantize(z)
        elif self.kind == "vae":
            q = z[:, :z.shape[1] // 2]
        else:
            q = z
        out = self.head(x, self.decode(q, kept, weight))
        return m * out + (1 - m) * original if self.mask_channel else out
