"""Knowledge-distillation loss terms for CTC recognizers (Yu & Zhang §3.5, Eq. 13-17,
and two peers' variants). Pure functions of tensors: the callers detach what is
a target.

Shapes: logits ``[..., T, K]`` (any leading dims: batch, text rows), class 0 the
CTC blank. Every term is 0 when student and teacher tensors are equal.

Readings where the paper is silent or ambiguous (all options of ``ocrkit distill``):

* **Soft targets (Eq. 13).** The printed term compares the softmax only at the
  label class ``y``; a CTC recognizer has no per-frame label, so the soft term
  is the whole per-frame distribution over all classes, blank included, at
  temperature T for both models, averaged over frames (and images, rows). It is
  the KL divergence ``KL(p_t || p_s)``: Eq. 13's cross-entropy minus the
  teacher's entropy, which has the same gradient and is 0 for a model against
  itself. Hinton's T^2 factor is not in the paper: ``t2=True`` adds it.
* **Hints (Eq. 14)** and **BiLSTM states (Eq. 15)** are sums over C·H·W (or the
  hidden size) divided by M·B and B. ``reduction="mean"`` (default) divides by
  the element count instead, so the terms keep the scale of the CTC loss
  whatever the feature size; ``"sum"`` is the paper's normalisation.

**Padding frames.** A training batch is padded on the right to its widest image
(``Collate``; ``keep-ratio`` lines), so a narrow image's last frames see only
padding. The per-frame terms (``soft_kl``, ``mutual_kl``, ``ctc_mean_kl``) take a
``mask`` of the frames that count (:func:`ocrkit.data.batch.frame_mask`) and average over those only;
without one every frame counts.

**Decoding steps.** For autoregressive heads (attention, Light-Former) the same
``soft_kl`` and ``mutual_kl`` compare logits ``[B, L, N]`` step by step, both
decoders teacher-forced on the same ground-truth prefix (class 0 is then the end
symbol, not a blank); the ``mask`` keeps each text's characters and its end symbol,
not the padding steps of shorter texts in the batch (``targets != IGNORE``).
``ctc_mean_kl`` negates a CTC blank and does not apply to them.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def _frames(logits: torch.Tensor) -> torch.Tensor:
    return logits.reshape(-1, logits.shape[-1]).float()


def _mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-frame ``values`` ``[N]`` over the frames ``mask`` keeps (all: None)."""
    if mask is None:
        return values.mean()
    keep = mask.reshape(-1).to(device=values.device, dtype=torch.bool)
    if keep.numel() != values.numel():
        raise ValueError(f"frame mask of {tuple(mask.shape)} for {values.numel()} frames")
    return torch.where(keep, values, 0.0).sum() / keep.sum().clamp_min(1)


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.5,
            t2: bool = False, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 13's soft term per frame: mean over frames of ``KL(p_t^T || p_s^T)``;
    ``mask`` (``logits.shape[:-1]``, bool) the frames that count."""
    s = F.log_softmax(_frames(student) / temperature, dim=-1)
    t = F.log_softmax(_frames(teacher) / temperature, dim=-1)
    kl = _mean((t.exp() * (t - s)).sum(-1), mask)
    return kl * temperature ** 2 if t2 else kl


def mutual_kl(a: torch.Tensor, b: torch.Tensor, temperature: float = 1.0,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """Deep mutual learning (Zhang et al. 2018; PP-OCRv3's recognizer distillation):
    ``KL(sg(p_b) || p_a) + KL(sg(p_a) || p_b)`` per frame: each peer's own DML term
    (its KL to the other's current prediction, held fixed for this step, as in the
    DML paper), so weight w gives each peer ``w * KL`` as the paper's
    ``L_ce + KL`` does at w = 1. (PaddleOCR's DMLLoss halves the sum.) ``mask``:
    the frames that count (both peers read the same images)."""
    return (soft_kl(a, b.detach(), temperature, mask=mask)
            + soft_kl(b, a.detach(), temperature, mask=mask))


def ctc_mean_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 0.5,
                mask: torch.Tensor | None = None, teacher_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
    """PP-OCRv4's alignment-free CTC distillation: the blank logit is negated, each
    frame's softmax at T is averaged over time into one distribution per sequence,
    and ``KL(teacher || student)`` of those is summed over classes and averaged over
    sequences. Frame counts may differ: only class frequencies are compared.
    ``mask`` / ``teacher_mask`` (``[..., T]`` bool, each for its own frames): the
    time average runs over those frames only."""

    def mean_distribution(logits: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        x = logits.reshape(-1, logits.shape[-2], logits.shape[-1]).float()  # [N, T, K]
        sign = torch.ones(x.shape[-1], device=x.device, dtype=x.dtype)
        sign[0] = -1.0
        p = F.softmax(x * sign / temperature, dim=-1)
        if keep is None:
            return p.mean(dim=1)
        keep = keep.reshape(x.shape[0], x.shape[1], 1).to(device=x.device, dtype=torch.bool)
        return torch.where(keep, p, 0.0).sum(1) / keep.sum(1).clamp_min(1)

    s, t = mean_distribution(student, mask), mean_distribution(teacher, teacher_mask)
    eps = 1e-8
    return (t * ((t + eps).log() - (s + eps).log())).sum(-1).mean()


def hint_mse(predicted: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
             ) -> torch.Tensor:
    """FitNets hint (Eq. 14) for one tapped layer: ``predicted`` is the regressor's
    map of the student's activation, ``target`` the teacher's, same shape."""
    if predicted.shape != target.shape:
        raise ValueError(f"hint shapes differ: {tuple(predicted.shape)} vs {tuple(target.shape)}")
    target = target.to(predicted.dtype)
    if reduction == "mean":
        return F.mse_loss(predicted, target)
    return F.mse_loss(predicted, target, reduction="sum") / predicted.shape[0]


def state_mse(student: tuple[torch.Tensor, torch.Tensor],
              teacher: tuple[torch.Tensor, torch.Tensor], reduction: str = "mean"
              ) -> torch.Tensor:
    """Eq. 15: ``(c_t - c_s)^2 + (h_t - h_s)^2`` of the top BiLSTM layer's final states."""
    (hs, cs), (ht, ct) = student, teacher
    if hs.shape != ht.shape:
        raise ValueError(f"BiLSTM states differ in size: {tuple(hs.shape)} vs {tuple(ht.shape)}")
    kind = "mean" if reduction == "mean" else "sum"
    out = F.mse_loss(cs, ct.to(cs.dtype), reduction=kind) + F.mse_loss(hs, ht.to(hs.dtype),
                                                                        reduction=kind)
    return out if reduction == "mean" else out / hs.shape[0]
