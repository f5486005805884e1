"""What every autoregressive head (``attention``, ``lightformer``) trains on, and
how its readings end.

Targets are ``[B, max(len) + 1]``: each text's characters, the end symbol (class
0, the CTC blank's index, so charsets stay as they are), then ``IGNORE``; the loss
is the cross-entropy per position over the positions that are not ``IGNORE``.

A reading is the classes before the first end symbol, its confidence the mean
probability of the classes kept (the end symbol's at the first step for an empty
text). A reading that never ends within the ``max_length + 1`` steps is unfinished:
a longer text than the head reads (``--max-length``), or a decoder that rambles. Its
characters are returned, with confidence 0, so a confidence threshold always
catches it instead of passing a cut-off word at the confidence of its letters.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ocrkit.models.heads.ctc import CTCHead

IGNORE = -100  # target padding: the loss, the loop and distillation mask on it
_AUX_CTC = CTCHead(blank=0)  # joint CTC-attention's loss: the CTC head's (no state)


def kept_reading(ids: list[int], probs) -> tuple[list[int], float]:
    """(the classes before the first end symbol, their confidence) of one decoded
    sequence; ``probs`` the chosen classes' step probabilities. Unfinished (no end
    symbol in any step): every class, confidence 0.0."""
    if 0 not in ids:
        return list(ids), 0.0
    n = ids.index(0)
    return ids[:n], float(probs[:n].mean()) if n else float(probs[0])


def eos_targets(flat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """CTC-style flat targets -> ``[B, max(len) + 1]``: the characters, the end
    symbol (0), then ``IGNORE``."""
    b = lengths.numel()
    width = int(lengths.max()) + 1 if b else 1
    out = torch.full((b, width), IGNORE, dtype=torch.long)
    start = 0
    for i, n in enumerate(lengths.tolist()):
        out[i, :n] = flat[start:start + n]
        out[i, n] = 0
        start += n
    return out


def sequence_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
                  ) -> torch.Tensor:
    """Cross-entropy per position; ``none``: ``[B, L]`` (0 where ignored); ``mean``:
    over the positions that are not ignored."""
    per = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORE,
                          reduction="none")
    if reduction == "none":
        return per
    return per.sum() / (targets != IGNORE).sum().clamp_min(1)


def aux_ctc_loss(ctc_logits: torch.Tensor, flat: torch.Tensor, lengths: torch.Tensor
                 ) -> torch.Tensor:
    """Joint CTC-attention training's auxiliary loss (Kim, Hori & Watanabe 2017): the
    image frames classified, ``ctc_logits`` ``[B, S, N]``, against CTC-style flat
    targets (the CTC head's loss: mean per target length, blank = class 0, the end
    symbol)."""
    return _AUX_CTC.loss(ctc_logits, flat, lengths)
