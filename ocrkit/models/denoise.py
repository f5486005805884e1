"""Line-DDeCAE and DDeCAE: remove table box lines before recognition (Yu & Zhang §3.4).

Both are the same network, a DCGAN-style convolutional autoencoder: the encoder
is DCGAN's discriminator without its final logit layer (4x4 stride-2
convolutions, BatchNorm from the second layer, LeakyReLU 0.2), the decoder is
DCGAN's generator without its noise projection (4x4 stride-2 transposed
convolutions, BatchNorm, ReLU) ending in ``tanh``. Widths ``base * 2^i`` (DCGAN:
``base=64``), ``depth`` halvings (4: 224 -> 14).

Images are in pixel space ``[0, 1]`` (ink dark, paper light).

``line`` (Line-DDeCAE, Eq. 11-12)
    ``l = net(v)`` in ``[-1, 1]``, ``clean = clip(v + l, 0, 1)``. Trained against
    ``l* = clean_twin - v``: the box lines (positive where a dark line covers
    light paper), with the text as the "noise".
``plain`` (DDeCAE, the baseline)
    the same network outputs the clean image itself: ``clean = (net(v) + 1) / 2``.

Inputs whose sides are not multiples of ``2^depth`` are padded with white and
cropped back, so any image size works; a denoiser is most faithful at the scale
it was trained at (line widths in pixels), which its checkpoint records.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from ocrkit.errors import UsageError

VARIANTS = ("line", "plain")


class Denoiser(nn.Module):
    def __init__(self, *, variant: str = "line", base: int = 64, depth: int = 4,
                 in_channels: int = 1) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise UsageError(f"denoiser variant must be one of {', '.join(VARIANTS)}, "
                             f"not {variant!r}")
        if depth < 1 or base < 1:
            raise UsageError("denoiser depth and base must be at least 1")
        self.variant, self.base, self.depth, self.in_channels = variant, base, depth, in_channels
        enc: list[nn.Module] = []
        cin = in_channels
        for i in range(depth):
            cout = base * 2 ** i
            enc.append(nn.Conv2d(cin, cout, 4, 2, 1, bias=i == 0))
            if i:
                enc.append(nn.BatchNorm2d(cout))
            enc.append(nn.LeakyReLU(0.2, inplace=True))
            cin = cout
        dec: list[nn.Module] = []
        for i in reversed(range(depth)):
            last = i == 0
            cout = in_channels if last else base * 2 ** (i - 1)
            dec.append(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=last))
            if not last:
                dec += [nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    @property
    def output_layer(self) -> nn.ConvTranspose2d:
        return self.decoder[-1]

    def config(self) -> dict:
        return {"variant": self.variant, "base": self.base, "depth": self.depth,
                "in_channels": self.in_channels}

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """The raw network output in ``[-1, 1]`` for images ``v`` in ``[0, 1]``."""
        h, w = v.shape[-2:]
        m = 2 ** self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            v = F.pad(v, (0, pw, 0, ph), value=1.0)
        out = torch.tanh(self.decoder(self.encoder(v)))
        return out[..., :h, :w]

    def clean(self, v: torch.Tensor) -> torch.Tensor:
        """The cleaned image in ``[0, 1]`` (Eq. 12 for ``line``)."""
        out = self(v)
        if self.variant == "line":
            return (v + out).clamp(0.0, 1.0)
        return (out + 1.0) * 0.5

    def target(self, v: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """What :meth:`forward` is trained to output for input ``v`` and its clean twin."""
        if self.variant == "line":
            return clean - v
        return clean * 2.0 - 1.0


def build_denoiser(ckpt: dict) -> Denoiser:
    """The denoiser of a ``train-denoiser`` checkpoint, with weights, in eval mode."""
    if ckpt.get("kind") != "denoiser":
        raise UsageError("not a denoiser checkpoint (train one with `ocrkit train-denoiser`)")
    model = Denoiser(**ckpt["denoiser"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model


def attach_denoiser(model, path: str, input_spec, warn=None) -> None:
    """Put the denoiser of checkpoint ``path`` in front of recognizer ``model``.

    ``input_spec`` gives the recognizer's normalisation; ``warn`` receives a
    message when the recognizer's input size differs from the size the
    denoiser was trained at (box lines then have other widths in pixels).
    """
    from ocrkit.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != "denoiser":
        raise UsageError(f"{path}: not a denoiser checkpoint (train one with "
                         "`ocrkit train-denoiser`)")
    if ckpt["denoiser"].get("in_channels", 1) != input_spec.channels:
        raise UsageError(f"{path}: the denoiser takes {ckpt['denoiser']['in_channels']}-channel "
                         f"images, the recognizer {input_spec.channels}")
    size = list(ckpt["input"]["size"])
    config = {"net": dict(ckpt["denoiser"]), "mean": input_spec.mean, "std": input_spec.std,
              "trained_size": size, "source": path}
    model.set_denoiser(config, ckpt["state_dict"])
    if warn and size != [input_spec.height, input_spec.width]:
        warn(f"warning: {path} was trained on {size[0]}x{size[1]} images; the recognizer "
             f"reads {input_spec.height}x{input_spec.width}")


@torch.no_grad()
def denoise_images(model, images, device) -> list[Image.Image]:
    """Clean PIL images at their own size; returns grayscale PIL images."""
    out = []
    for im in images:
        v = torch.from_numpy(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)
        cleaned = model.clean(v[None, None].to(device))[0, 0]
        out.append(Image.fromarray(cleaned.mul(255).round().byte().cpu().numpy()))
    return out
