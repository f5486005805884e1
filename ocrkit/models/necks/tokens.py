"""Feature map -> a sequence of positioned tokens, for attention decoders.

``[B, C, h, w] -> [B, w*h, C]``: every cell of the backbone's map is a token,
column by column (left to right, top to bottom within a column), with a fixed
2-D sinusoidal position added (the first C/2 channels encode the column, the
others the row; the Transformer's encoding per axis). No parameters, and any
width works: a wider line gives more columns, each with its own position.
Light-Former's decoder cross-attends over these tokens (Li et al. 2022, Fig. 5;
the paper does not say how the map is positioned - this is our choice).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoid(positions: int, channels: int, device=None) -> torch.Tensor:
    """``[positions, channels]`` sinusoidal encoding (sin on even, cos on odd channels)."""
    pos = torch.arange(positions, dtype=torch.float32, device=device).unsqueeze(1)
    div = torch.exp(torch.arange(0, channels, 2, dtype=torch.float32, device=device)
                    * (-math.log(10000.0) / channels))
    out = torch.zeros(positions, channels, device=device)
    out[:, 0::2] = torch.sin(pos * div)
    out[:, 1::2] = torch.cos(pos * div[: channels // 2])
    return out


class Tokens(nn.Module):
    def __init__(self, *, in_channels: int, position: bool = True) -> None:
        super().__init__()
        if position and in_channels % 4:
            raise ValueError(f"in_channels {in_channels}: a multiple of 4 for the 2-D encoding")
        self.out_channels = in_channels
        self.position = position

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.permute(0, 3, 2, 1)  # [B, w, h, C]
        if self.position:
            half = c // 2
            cols = sinusoid(w, half, x.device)[:, None, :].expand(w, h, half)
            rows = sinusoid(h, half, x.device)[None, :, :].expand(w, h, half)
            tokens = tokens + torch.cat([cols, rows], -1).to(x.dtype)
        return tokens.reshape(b, w * h, c)


def tokens(*, in_channels: int, position: bool = True) -> Tokens:
    return Tokens(in_channels=in_channels, position=position)
