"""The VQ-VAE of spec/model.md as a PyTorch module, with the checkpoint's layer names.

Used by scripts/check_against_pytorch.py and scripts/export_pytorch.py. `VQVAE(config["model"])`
takes the `model` object of a checkpoint's `config` JSON; `VQVAE.names()` maps checkpoint names
(`encoder/down0`, ...) to its layers. The quantizer is left to the caller (see export_pytorch.py).
"""
import torch.nn as nn
import torch.nn.functional as F


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
        self.down = nn.ModuleList(
            nn.Conv2d(c if i == 0 else h >> (down - i), h >> (down - 1 - i), 4, 2, 1) for i in range(down))
        self.enc_conv = nn.Conv2d(h, h, 3, 1, 1)
        self.enc_res = nn.ModuleList(Residual(h, m["residual_hidden"]) for _ in range(m["residual_blocks"]))
        self.pre_quant = nn.Conv2d(h, m["code_dimension"], 1)
        self.dec_conv = nn.Conv2d(m["code_dimension"], h, 3, 1, 1)
        self.dec_res = nn.ModuleList(Residual(h, m["residual_hidden"]) for _ in range(m["residual_blocks"]))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(h >> i, c if i == down - 1 else h >> (i + 1), 4, 2, 1) for i in range(down))

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
        out.update({f"decoder/up{i}": l for i, l in enumerate(self.up)})
        return out

    def encode(self, x):
        for layer in self.down:
            x = F.relu(layer(x))
        x = self.enc_conv(x)
        for r in self.enc_res:
            x = r(x)
        return self.pre_quant(F.relu(x))

    def decode(self, q):
        x = self.dec_conv(q)
        for r in self.dec_res:
            x = r(x)
        x = F.relu(x)
        for i, layer in enumerate(self.up):
            x = layer(x)
            if i < len(self.up) - 1:
                x = F.relu(x)
        return x
