"""Training methods: what a step computes and how a model is validated.

``SupervisedCTC`` is plain CRNN training (Yu & Zhang §3.1); distillation, SeqCLR
and EMU add their own methods with the same two calls.
"""

from __future__ import annotations

import torch

from ocrkit.charset import Charset
from ocrkit.errors import OcrkitError
from ocrkit.metrics import Metrics


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


def predict_texts(model, images: torch.Tensor, charset: Charset, beam_width: int | None = None
                  ) -> tuple[list[str], list[float], list[list[str]]]:
    """Texts (rows joined by newlines), mean confidences and rows for a batch."""
    core = _unwrap(model)
    logits = core(images)
    texts, confs, rows_out = [], [], []
    for rows, rconf in core.decode(logits, beam_width):
        rows_text = [charset.decode(ids) for ids in rows]
        rows_out.append(rows_text)
        texts.append("\n".join(rows_text))
        confs.append(float(sum(rconf) / len(rconf)) if rconf else 0.0)
    return texts, confs, rows_out


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

    @torch.no_grad()
    def validate(self, model, loader, device: torch.device, limit: int | None = None) -> dict:
        metrics = Metrics()
        for batch in loader:
            if batch["images"].shape[0] == 0:
                continue
            preds, _, _ = predict_texts(model, batch["images"].to(device), self.charset,
                                        self.beam_width)
            metrics.update(preds, batch["labels"])
            if limit is not None and metrics.samples >= limit:
                break
        return metrics.result()
