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

**Unified HTR + STR distillation** (Bhunia et al., "Text is Text", ICCV 2021;
:mod:`ocrkit.methods.unified`) compares two attention decoders per decoding step,
both teacher-forced on the same ground-truth prefix. The main paper's equations are
not available; the readings here are ocrkit's (each an option of ``ocrkit distill``).
The step functions return one value per step ``[N, L]`` (or per sample ``[N]``) so
that the caller masks the padding steps and routes samples to their own teacher:

* ``step_kl``: ``T^2 * KL(q || p_s^T)`` per step, ``q`` the teacher's softmax at ``T``
  already mapped onto the student's classes.
* ``step_hint``: the character-localised hint, MSE (default) or L1 between the
  student's glimpse (through a learned linear map when the sizes differ) and the
  teacher's, averaged over the channels.
* ``attention_grid`` / ``match_attention`` / ``step_attention``: the attention maps
  as ``[h, w]`` grids (a 1-D map is one row; a 2-D map of ``h*w`` tokens laid
  column by column, as the ``tokens`` neck lays them, is unfolded), both reduced over
  the height to columns when either is 1-D (a 2-D teacher for a 1-D student), resized
  to the larger size with (bi)linear interpolation, renormalised to sum to 1, then
  ``KL(a_t || a_s)`` (default) or the L1 distance per step.
* ``sample_affinity``: the ``L x L`` cosine similarities of each sample's glimpses
  (no map: sizes may differ), compared by MSE (default) or L1 over the pairs of
  valid steps, one value per sample.
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


# ----------------------------------------------------------------------------- unified KD
HINT_LOSSES = ("mse", "l1")
ATTENTION_LOSSES = ("kl", "l1")
AFFINITY_LOSSES = ("mse", "l1")
_EPS = 1e-8


def step_kl(student: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(q || softmax(student / T))`` per step: ``student`` logits ``[N, L, K]``,
    ``target`` the teacher's probabilities at ``T`` on the student's ``K`` classes;
    ``[N, L]``. The T^2 factor (Hinton et al.) keeps the gradient's size comparable to
    the cross-entropy's whatever ``T``."""
    log_p = F.log_softmax(student.float() / temperature, dim=-1)
    q = target.float()
    kl = (torch.special.xlogy(q, q) - q * log_p).sum(-1)
    return kl * temperature ** 2


def step_hint(student: torch.Tensor, teacher: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """The hint per step between glimpses ``[N, L, C]`` of one size (the student's
    already mapped): the mean over channels of the squared (``mse``) or absolute
    (``l1``) difference; ``[N, L]``."""
    if student.shape != teacher.shape:
        raise ValueError(f"glimpse shapes differ: {tuple(student.shape)} vs "
                         f"{tuple(teacher.shape)}; the hint needs a linear map")
    diff = student.float() - teacher.float()
    return (diff.pow(2) if kind == "mse" else diff.abs()).mean(-1)


def attention_grid(maps: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Attention maps ``[N, L, S]`` as grids ``[N, L, h, w]``: a 1-D map over ``S``
    frames is one row (``grid`` None); a 2-D map over ``S = h*w`` tokens laid column by
    column (``grid`` = ``(h, w)``, the ``tokens`` neck's order) is unfolded."""
    n, steps, size = maps.shape
    if grid is None:
        return maps.reshape(n, steps, 1, size)
    h, w = grid
    if h * w != size:
        raise ValueError(f"an attention map over {size} positions is not a {h}x{w} grid")
    return maps.reshape(n, steps, w, h).transpose(-1, -2)


def match_attention(student: torch.Tensor, teacher: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher grids ``[N, L, h, w]`` on one common size, flattened to
    ``[N, L, X]`` and renormalised to sum to 1 per step. When either map is 1-D
    (``h == 1``) both are summed over their height first (attention on a column is the
    sum of the attention on its cells); the maps are then resized to the larger
    width (and height) with linear (bilinear) interpolation, ``align_corners=False``:
    the resampled positions stay at the centres of the image columns both models
    cover. A map already of the common size is unchanged."""
    if student.shape[-2] == 1 or teacher.shape[-2] == 1:
        student = student.sum(-2, keepdim=True)
        teacher = teacher.sum(-2, keepdim=True)
    size = (max(student.shape[-2], teacher.shape[-2]), max(student.shape[-1], teacher.shape[-1]))

    def resized(grid: torch.Tensor) -> torch.Tensor:
        n, steps, h, w = grid.shape
        grid = grid.float()
        if (h, w) != size:
            flat = grid.reshape(n * steps, 1, h, w)
            if size[0] == 1:
                flat = F.interpolate(flat[:, :, 0], size=size[1], mode="linear",
                                     align_corners=False).unsqueeze(2)
            else:
                flat = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
            grid = flat.reshape(n, steps, *size)
        grid = grid.reshape(n, steps, -1)
        return grid / grid.sum(-1, keepdim=True).clamp_min(_EPS)

    return resized(student), resized(teacher)


def step_attention(student: torch.Tensor, teacher: torch.Tensor, kind: str = "kl"
                   ) -> torch.Tensor:
    """Per step between matched maps ``[N, L, X]`` (:func:`match_attention`):
    ``KL(a_t || a_s)`` (``kl``) or ``sum |a_s - a_t|`` (``l1``, in [0, 2]); ``[N, L]``."""
    if kind == "l1":
        return (student - teacher).abs().sum(-1)
    return (torch.special.xlogy(teacher, teacher)
            - teacher * student.clamp_min(_EPS).log()).sum(-1)


def glimpse_affinity(glimpses: torch.Tensor) -> torch.Tensor:
    """``[N, L, L]``: the cosine similarity of every pair of steps' glimpses."""
    g = F.normalize(glimpses.float(), dim=-1, eps=_EPS)
    return g @ g.transpose(-1, -2)


def sample_affinity(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
                    kind: str = "mse") -> torch.Tensor:
    """The affinity term per sample ``[N]``: student glimpses ``[N, L, Cs]`` and the
    teacher's ``[N, L, Ct]`` (sizes may differ), ``mask`` ``[N, L]`` the valid steps;
    the mean over the pairs of valid steps of the squared (``mse``) or absolute
    (``l1``) difference of the two ``L x L`` cosine matrices."""
    a_s, a_t = glimpse_affinity(student), glimpse_affinity(teacher)
    m = mask.to(a_s.dtype)
    pairs = m.unsqueeze(-1) * m.unsqueeze(-2)
    diff = a_s - a_t
    per = diff.pow(2) if kind == "mse" else diff.abs()
    return torch.where(pairs > 0, per, 0.0).sum((-1, -2)) / pairs.sum((-1, -2)).clamp_min(1)
