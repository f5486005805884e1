"""The BiLSTM sequence stage of CRNN (paper §4.2: 2 layers, hidden 256).

``forward_with_state`` also returns the top layer's final hidden and cell states,
which distillation matches between teacher and student (Eq. 15, "last step of c
values and h values"). "Last" is per direction: the forward direction ends at
the last frame, the backward direction at the first (``h_n``/``c_n`` of
``nn.LSTM``, not ``out[:, -1]``); both directions are concatenated, giving
``[B, 2 * hidden]`` each.
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
        self.hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]

    def forward_with_state(self, x: torch.Tensor
                           ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Outputs ``[B, T, 2*hidden]`` and the top layer's final ``(h, c)``, each
        ``[B, 2*hidden]`` (forward direction first)."""
        out, (h, c) = self.rnn(x)

        def top(s: torch.Tensor) -> torch.Tensor:  # [layers*2, B, H] -> [B, 2H]
            return s[-2:].transpose(0, 1).reshape(s.shape[1], -1)

        return out, (top(h), top(c))


def bilstm(*, in_channels: int, hidden: int = 256, layers: int = 2, dropout: float = 0.0
           ) -> BiLSTM:
    return BiLSTM(in_channels=in_channels, hidden=hidden, layers=layers, dropout=dropout)
