"""Training methods: what a step computes and how a model is validated.

``SupervisedCTC`` is plain CRNN training (Yu & Zhang §3.1); distillation, SeqCLR
and EMU add their own methods with the same two calls.
"""

from __future__ import annotations

import torch

from ocrkit.charset import Charset
from ocrkit.errors import OcrkitError
from ocrkit.evaluate import evaluate_loader


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


class SupervisedCTC:
    """CTC loss on labelled images; validation by the metrics of ocrkit.metrics."""

    metric = "clp"

    def __init__(self, charset: Charset, beam_width: int = 1) -> None:
        self.charset = charset
        self.beam_width = beam_width

    def loss(self, model, batch: dict, device: torch.device):
        images = batch["images"].to(device, non_blocking=True)
        logits = model(images)
        if logits.dim() == 4:
            raise OcrkitError("this neck returns one sequence per text row; train it with a "
                              "multi-row method, not plain CTC on joined labels")
        core = _unwrap(model)
        loss = core.head.loss(logits, batch["targets"].to(device),
                              batch["target_lengths"].to(device))
        return loss, images.shape[0]

    def validate(self, model, loader, device: torch.device, limit: int | None = None) -> dict:
        return evaluate_loader(_unwrap(model), self.charset, loader, device,
                               beam_width=self.beam_width, limit=limit)[0]
