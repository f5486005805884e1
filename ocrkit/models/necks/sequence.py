"""The BiLSTM sequence stage of CRNN (paper §4.2: 2 layers, hidden 256).

It keeps its last hidden and cell states (``last_state``: ``h`` and ``c`` of
shape ``[layers * 2, B, hidden]``) because online distillation matches them
between teacher and student (Eq. 15).
"""

from __future__ import annotations

import torch
from torch import nn


class BiLSTM(nn.Module):
    """Stacked bidirectional LSTM over ``[B, T, C]`` frames -> ``[B, T, 2 * hidden]``."""

    def __init__(self, *, in_channels: int, hidden: int = 256, layers: int = 2,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.rnn = nn.LSTM(in_channels, hidden, num_layers=layers, bidirectional=True,
                           batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.out_channels = 2 * hidden
        self.last_state: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, (h, c) = self.rnn(x)
        self.last_state = (h, c)
        return out


def bilstm(*, in_channels: int, hidden: int = 256, layers: int = 2, dropout: float = 0.0
           ) -> BiLSTM:
    return BiLSTM(in_channels=in_channels, hidden=hidden, layers=layers, dropout=dropout)
