"""CTC head: the loss, greedy decoding and prefix beam search (blank = 0).

Confidence: greedy decoding reports the mean, over the emitted characters, of
the probability of the class kept at that frame (PaddleOCR's convention; an
empty result gets the mean blank probability); beam search reports the
probability of the chosen labelling, P(text | image), summed over its paths.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from torch import nn
from torch.nn import functional as F


class CTCHead(nn.Module):
    """CTC loss and decoders over classifier logits ``[B, T, K]``."""

    def __init__(self, *, blank: int = 0, beam_width: int = 1, zero_infinity: bool = True) -> None:
        super().__init__()
        self.blank = blank
        self.beam_width = beam_width
        self.ctc = nn.CTCLoss(blank=blank, reduction="mean", zero_infinity=zero_infinity)

    def forward(self, frames: torch.Tensor, classifier) -> torch.Tensor:
        """Every frame classified on its own: logits ``[B, T, K]``."""
        return classifier(frames)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor,
             input_lengths: torch.Tensor | None = None, reduction: str = "mean"
             ) -> torch.Tensor:
        """Mean CTC loss (per target length, as torch does); ``targets`` concatenated.
        ``reduction="none"``: one loss per sequence, each divided by its target length
        (at least 1), whose mean is the ``"mean"`` loss."""
        log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # [T, B, K]
        t, b = log_probs.shape[:2]
        if input_lengths is None:
            input_lengths = torch.full((b,), t, dtype=torch.long, device=logits.device)
        if reduction == "mean":
            return self.ctc(log_probs, targets, input_lengths, target_lengths)
        per = F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=self.blank,
                         reduction="none", zero_infinity=self.ctc.zero_infinity)
        return per / target_lengths.to(per.device).clamp_min(1).to(per.dtype)

    @torch.no_grad()
    def decode(self, logits: torch.Tensor, beam_width: int | None = None
               ) -> list[tuple[list[int], float]]:
        """Class indices and confidence per sample (greedy if the beam width is 1)."""
        probs = F.softmax(logits.float(), dim=-1).cpu()
        width = self.beam_width if beam_width is None else beam_width
        if width <= 1:
            return [self._greedy(p) for p in probs]
        return [self._beam(p, width) for p in probs]

    def _greedy(self, probs: torch.Tensor) -> tuple[list[int], float]:
        best_p, best = probs.max(dim=-1)
        keep = torch.ones_like(best, dtype=torch.bool)
        keep[1:] = best[1:] != best[:-1]
        keep &= best != self.blank
        if keep.any():
            return best[keep].tolist(), float(best_p[keep].mean())
        return [], float(probs[:, self.blank].mean())

    def _beam(self, probs: torch.Tensor, width: int) -> tuple[list[int], float]:
        """CTC prefix beam search; scores in log space; top ``width`` classes per frame."""
        log = probs.clamp_min(1e-12).log()
        beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # (blank, non)
        top = min(width, probs.shape[1])
        for t in range(log.shape[0]):
            cands = torch.topk(log[t], top).indices.tolist()
            if self.blank not in cands:
                cands.append(self.blank)
            nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [-math.inf, -math.inf])
            for prefix, (pb, pnb) in beams.items():
                total = _lse(pb, pnb)
                for k in cands:
                    lp = float(log[t, k])
                    if k == self.blank:
                        nxt[prefix][0] = _lse(nxt[prefix][0], total + lp)
                        continue
                    new = prefix + (k,)
                    if prefix and prefix[-1] == k:
                        nxt[new][1] = _lse(nxt[new][1], pb + lp)  # repeat needs a blank between
                        nxt[prefix][1] = _lse(nxt[prefix][1], pnb + lp)  # collapsed repeat
                    else:
                        nxt[new][1] = _lse(nxt[new][1], total + lp)
            beams = dict(sorted(((p, (s[0], s[1])) for p, s in nxt.items()),
                                key=lambda kv: -_lse(*kv[1]))[:width])
        best, (pb, pnb) = max(beams.items(), key=lambda kv: _lse(*kv[1]))
        return list(best), min(1.0, math.exp(_lse(pb, pnb)))


def frames_needed(ids) -> int:
    """Frames CTC needs to emit ``ids``: one per character plus a blank between two
    equal neighbours (``"aa"`` needs ``a, blank, a``). A label needing more frames
    than the logits have cannot be aligned (its loss is infinite, zeroed by
    ``zero_infinity``)."""
    return len(ids) + sum(1 for a, b in zip(ids, ids[1:]) if a == b)


def _lse(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def ctc(*, blank: int = 0, beam_width: int = 1, in_channels: int | None = None,
        num_classes: int | None = None) -> CTCHead:
    return CTCHead(blank=blank, beam_width=beam_width)
