"""Column average pooling (Yu & Zhang, Eq. 1).

``[B, C, h, w] -> [B, w, C]``: the mean over the height of each column. It
replaces CRNN's hand-tuned strides that force the last feature map to h = 1, so
any input height works.
"""

from __future__ import annotations

import torch
from torch import nn


class ColumnAveragePool(nn.Module):
    """Mean over the feature-map height; one frame per column."""

    def __init__(self, *, in_channels: int) -> None:
        super().__init__()
        self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=2).transpose(1, 2)


def cap(*, in_channels: int) -> ColumnAveragePool:
    return ColumnAveragePool(in_channels=in_channels)
