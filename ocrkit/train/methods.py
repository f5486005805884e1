"""Training methods: what a step computes and how a model is validated.

``SupervisedCTC`` is CRNN training (Yu & Zhang §3.1-3.3); distillation, SeqCLR
and EMU add their own methods with the same two calls.

Single-row models and MultiRow Stretching (logits ``[B, T, K]``) get one CTC
loss per image against the rows joined in reading order (Eq. 3). Row attention
(logits ``[B, H, T, K]``) gets Eq. 10: one CTC loss per row, averaged over the
B*H rows. Each per-row term is what ``torch.nn.CTCLoss()(x_j, y_j)`` computes
for one sequence (the paper writes its equations "in PyTorch fashion"): the
negative log-likelihood divided by the row's length (an empty row counts 1,
so it is pushed towards all-blank). That is ``CTCLoss(reduction="mean")`` over
the flattened rows, the same normalisation the single-row loss uses.
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
        core = _unwrap(model)
        lengths = batch["target_lengths"]
        if logits.dim() == 4:  # [B, H, T, K]: one CTC loss per row (Eq. 10)
            b, rows = logits.shape[:2]
            lengths = batch.get("row_target_lengths")
            if lengths is None or lengths.numel() != b * rows:
                raise OcrkitError(f"the model reads {rows} rows per image; train it with "
                                  f"--rows {rows} so labels are split per row")
            logits = logits.reshape(b * rows, *logits.shape[2:])
        loss = core.head.loss(logits, batch["targets"].to(device), lengths.to(device))
        return loss, images.shape[0]

    def validate(self, model, loader, device: torch.device, limit: int | None = None) -> dict:
        return evaluate_loader(_unwrap(model), self.charset, loader, device,
                               beam_width=self.beam_width, limit=limit)[0]
