"""Softmax classifier: a linear projection of each frame to class logits."""

from __future__ import annotations

import torch
from torch import nn


class LinearClassifier(nn.Module):
    def __init__(self, *, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)

    def embedding_table(self) -> torch.Tensor:
        """The output embedding ``[N, d]`` an attention decoder shares: the weight rows."""
        return self.fc.weight


def linear(*, in_channels: int, num_classes: int) -> LinearClassifier:
    return LinearClassifier(in_channels=in_channels, num_classes=num_classes)
