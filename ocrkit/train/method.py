"""The contract between a training method and the loop (:class:`ocrkit.train.loop.Trainer`).

A method says what a step computes (``loss``) and how a model is validated
(``validate``); the loop runs any method that keeps this contract and knows none
of them. The methods themselves live in :mod:`ocrkit.methods`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Loss(NamedTuple):
    """What a method's ``loss`` returns: the total to minimise, its named terms
    (logged unweighted in ``metrics.jsonl``), and the images in the batch."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    images: int


class Method:
    """The protocol between a training method and :class:`ocrkit.train.loop.Trainer`.

    Required: ``metric`` (validation metric picking best.pt, higher is better),
    ``loss(net, batch, device) -> Loss`` (``net`` may be wrapped in
    DistributedDataParallel: call it, do not reach around it) and
    ``validate(core, loader, device, limit) -> dict``.

    Optional, defaults here: one parameter group with the run's gradient clipping;
    the trained network is what checkpoints deploy; nothing happens after a step.
    """

    metric = "clp"

    def param_groups(self, core) -> list[dict]:
        """``{"name", "params"[, "lr_scale", "clip"]}`` per group."""
        return [{"name": "model", "params": [p for p in core.parameters() if p.requires_grad]}]

    def deployable(self, core) -> tuple[torch.nn.Module, dict]:
        """(module whose weights best.pt/last.pt hold, checkpoint entries to add)."""
        return core, {}

    def begin(self, total: int, step: int) -> None:
        """Called once before training (``step`` > 0 when resuming)."""

    def after_step(self, core, step: int) -> None:
        pass


def as_loss(value):
    """A method's loss result as :class:`ocrkit.train.method.Loss` (a plain
    ``(total, images)`` pair is a single term named ``loss``)."""
    if isinstance(value, Loss):
        return value
    total, images = value
    return Loss(total, {"loss": total.detach()}, images)
