"""Supervised training of a recognizer on labelled images: CTC (Yu & Zhang §3.1-3.3),
or per-position cross-entropy for an autoregressive head (Light-Former), with a
classifier's own loss added where it has one (EMU's Eq. 14 regulariser).

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
from ocrkit.data.batch import frame_mask
from ocrkit.errors import OcrkitError
from ocrkit.evaluate import evaluate_loader
from ocrkit.train.method import Loss, Method
from ocrkit.train.run import run_training


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


ROW_LOSSES = ("per-row", "joined")


def ctc_loss(head, logits: torch.Tensor, batch: dict, device: torch.device,
             reduction: str = "mean", row_loss: str | None = None,
             spans: list[tuple[int, int]] | None = None, record: bool = True
             ) -> torch.Tensor:
    """CTC loss of ``logits`` against a collated batch's targets: one loss per image
    for ``[B, T, K]`` logits (single rows and MultiRow Stretching, Eq. 3), one per
    text row for ``[B, H, T, K]`` (row attention, Eq. 10). ``reduction="none"``: the
    per-sequence losses (images, or rows), whose mean is the ``"mean"`` loss.

    ``row_loss`` swaps the two for multi-row models (an ablation of issue 12):
    ``joined`` gives row attention one CTC loss over its rows joined in reading
    order; ``per-row`` gives a stretched sequence one loss per text row over the
    row's frames (``spans``, equal widths).

    With ``record`` (the trained model's loss; off for a co-trained teacher's), the
    batch gets ``ctc_infeasible``: how many of its sequences need more frames than
    the logits have (the loop counts and reports them)."""
    lengths, needs = batch["target_lengths"], batch.get("target_needs")
    if logits.dim() == 4 and row_loss == "joined":
        logits = logits.reshape(logits.shape[0], -1, logits.shape[-1])
    elif logits.dim() == 3 and row_loss == "per-row" and spans:
        widths = {e - s for s, e in spans}
        if len(widths) != 1 or spans[0][0] != 0 or any(
                a[1] != b[0] for a, b in zip(spans, spans[1:])):
            raise OcrkitError("--row-loss per-row needs rows of equal, contiguous frame "
                              "spans (multirow-stretch with pool=rows)")
        logits = logits[:, :spans[-1][1]].reshape(logits.shape[0], len(spans), -1,
                                                  logits.shape[-1])
    if logits.dim() == 4:  # [B, H, T, K]: one CTC loss per row (Eq. 10)
        b, rows = logits.shape[:2]
        lengths, needs = batch.get("row_target_lengths"), batch.get("row_target_needs")
        if lengths is None or lengths.numel() != b * rows:
            raise OcrkitError(f"the model reads {rows} rows per image; train it with "
                              f"--rows {rows} so labels are split per row")
        logits = logits.reshape(b * rows, *logits.shape[2:])
    if record and needs is not None:
        # zero_infinity turns an impossible alignment into a zero loss: count them, so a
        # run whose labels do not fit its frames never looks converged
        batch["ctc_infeasible"] = int((needs > logits.shape[1]).sum())
        batch["ctc_sequences"] = int(needs.numel())
    return head.loss(logits, batch["targets"].to(device), lengths.to(device),
                     reduction=reduction)


def with_classifier_terms(core, loss: torch.Tensor, per_item: torch.Tensor | None,
                          terms: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Add a classifier's own loss (``aux_loss``, e.g. EMU's Eq. 14 regulariser, which
    needs each sequence's or position's loss) to ``loss``; its diagnostics join
    ``terms``."""
    aux = getattr(core.classifier, "aux_loss", None)
    if aux is None or per_item is None:
        return loss
    extra = aux(per_item.detach(), mask) if mask is not None else aux(per_item.detach())
    reg = extra.pop("emu_reg")
    terms["emu_reg"] = reg.detach()
    terms.update({k: v.detach() for k, v in extra.items()})
    return loss + reg


class SupervisedCTC(Method):
    """CTC loss on labelled images (cross-entropy per position for an autoregressive
    head, teacher-forced); validation by the metrics of ocrkit.metrics."""

    metric = "clp"

    def __init__(self, charset: Charset, beam_width: int = 1, row_loss: str | None = None
                 ) -> None:
        self.charset = charset
        self.beam_width = beam_width
        self.row_loss = row_loss  # None: each neck's own (Eq. 3 or Eq. 10)

    def loss(self, model, batch: dict, device: torch.device) -> Loss:
        images = batch["images"].to(device, non_blocking=True)
        core = _unwrap(model)
        if core.autoregressive:  # teacher forcing; cross-entropy per position
            targets = core.head.targets(batch["targets"], batch["target_lengths"]).to(device)
            aux_weight = float(getattr(core.head, "ctc_weight", 0) or 0)
            if aux_weight:  # joint CTC-attention: the head also classifies the image tokens
                out = model(images, targets=targets, outputs=True)
                logits = out.logits
            else:
                logits = model(images, targets=targets)
            per = core.head.loss(logits, targets, reduction="none")  # [B, L]
            mask = targets != -100
            loss = per.sum() / mask.sum().clamp_min(1)
            terms = {"ce": loss.detach()}
            if aux_weight:
                ctc = core.head.ctc_loss(out.extras["ctc_logits"], batch["targets"].to(device),
                                         batch["target_lengths"].to(device))
                terms["aux_ctc"] = ctc.detach()
                loss = loss + aux_weight * ctc
            return Loss(with_classifier_terms(core, loss, per, terms, mask), terms,
                        images.shape[0])
        logits = model(images)
        rows = {"row_loss": self.row_loss,
                "spans": core.row_spans(logits.shape[1]) if self.row_loss == "per-row"
                and logits.dim() == 3 else None}
        mask = None
        if hasattr(core.classifier, "aux_loss"):  # EMU: beta_hat needs each sequence's loss
            per = ctc_loss(core.head, logits, batch, device, reduction="none", **rows)
            loss = per.mean()
            if logits.dim() == 3 and batch.get("widths") is not None:
                # beta's batch mean (Eq. 15) and the regulariser count the frames that see
                # the image, not a padded batch's padding
                mask = frame_mask(batch["widths"], images.shape[-1], logits.shape[1]
                                  ).to(device)
        else:
            per, loss = None, ctc_loss(core.head, logits, batch, device, **rows)
        terms = {"ctc": loss.detach()}
        total = with_classifier_terms(core, loss, per, terms, mask)
        return Loss(total, terms, images.shape[0])

    def deployable(self, core) -> tuple[torch.nn.Module, dict]:
        """A classifier with a deployable form (EMU: the bit-packed codebook) is saved in
        it; last.pt keeps the whole network in ``train_state["net"]`` for --resume."""
        from ocrkit.models.recognizer import finalized

        final = finalized(core)
        return (core, {}) if final is None else (final, {"spec": final.spec})

    def validate(self, model, loader, device: torch.device, limit: int | None = None) -> dict:
        return evaluate_loader(_unwrap(model), self.charset, loader, device,
                               beam_width=self.beam_width, limit=limit)[0]


def train_supervised(opts: dict) -> dict | None:
    """`ocrkit train` and `ocrkit train-emu` (and the demo): the recognizer their options
    describe, trained by :class:`SupervisedCTC` on the shared run set-up."""
    return run_training(opts, lambda charset, opts: SupervisedCTC(
        charset, row_loss=opts.get("row_loss")))
