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
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def _frames(logits: torch.Tensor) -> torch.Tensor:
    return logits.reshape(-1, logits.shape[-1]).float()


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.5,
            t2: bool = False) -> torch.Tensor:
    """Eq. 13's soft term per frame: mean over frames of ``KL(p_t^T || p_s^T)``."""
    s = F.log_softmax(_frames(student) / temperature, dim=-1)
    t = F.log_softmax(_frames(teacher) / temperature, dim=-1)
    kl = (t.exp() * (t - s)).sum(-1).mean()
    return kl * temperature ** 2 if t2 else kl


def mutual_kl(a: torch.Tensor, b: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Deep mutual learning (Zhang et al. 2018; PP-OCRv3's recognizer distillation):
    ``(KL(sg(p_b) || p_a) + KL(sg(p_a) || p_b)) / 2`` per frame. Each peer is pulled
    towards the other's current prediction, held fixed for this step, as in the DML
    paper; PaddleOCR's DMLLoss uses the same symmetric KL without stopping gradients."""
    return 0.5 * (soft_kl(a, b.detach(), temperature) + soft_kl(b, a.detach(), temperature))


def ctc_mean_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 0.5
                ) -> torch.Tensor:
    """PP-OCRv4's alignment-free CTC distillation: the blank logit is negated, each
    frame's softmax at T is averaged over time into one distribution per sequence,
    and ``KL(teacher || student)`` of those is summed over classes and averaged over
    sequences. Frame counts may differ: only class frequencies are compared."""

    def mean_distribution(logits: torch.Tensor) -> torch.Tensor:
        x = logits.reshape(-1, logits.shape[-2], logits.shape[-1]).float()  # [N, T, K]
        sign = torch.ones(x.shape[-1], device=x.device, dtype=x.dtype)
        sign[0] = -1.0
        return F.softmax(x * sign / temperature, dim=-1).mean(dim=1)

    s, t = mean_distribution(student), mean_distribution(teacher)
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
