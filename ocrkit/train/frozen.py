"""A frozen module: a teacher, an encoder or a denoiser that a method uses but never trains.

``Frozen(module)`` turns off the gradients of every parameter, runs the module
without building an autograd graph, and stays in evaluation mode whatever
``train()`` is called with - so a training loop's ``model.train()`` can no longer
flip its BatchNorm layers back to updating their running statistics. Weights and
buffers stay bit-identical for the whole run.
"""

from __future__ import annotations

import torch
from torch import nn


class Frozen(nn.Module):
    """Wrap ``module`` so that it is used, never trained."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        for p in module.parameters():
            p.requires_grad_(False)
        module.eval()
        self.training = False

    def train(self, mode: bool = True) -> "Frozen":
        # Ignore ``mode``: evaluation mode always (BatchNorm uses its running statistics).
        self.training = False
        self.module.eval()
        return self

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.module(*args, **kwargs)
