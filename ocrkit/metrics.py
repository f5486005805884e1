"""Recognition metrics, defined exactly (paper: Yu & Zhang, Eq. 18-19).

For ground truths ``y_i`` and predictions ``p_i`` (strings, rows of a multi-row
image joined by ``\\n`` - the newline is not a character and is removed first)
and ``ED`` the Levenshtein distance over characters:

``clp``        Eq. 18 as written, position-wise: sum_i sum_j 1[p_i[j] == y_i[j]]
               over the positions j of ``y_i``, divided by sum_i |y_i|. Extra
               predicted characters are not penalised; a missing one counts wrong.
``clp_ed``     the edit-distance form: 1 - sum_i ED(p_i, y_i) / sum_i |y_i|
               (= 1 - ``cer``; penalises insertions; can be negative).
``ilp``        Eq. 19: exact-match rate, 1/m sum_i 1[p_i == y_i]. Also reported as
``accuracy``   (the STR benchmarks' "word accuracy" is the same exact match).
``one_minus_ned``  1/m sum_i (1 - ED(p_i, y_i) / max(|p_i|, |y_i|)); a pair of empty
               strings scores 1.
``cer``        corpus character error rate: sum_i ED / sum_i |y_i|.
``wer``        corpus word error rate over whitespace-separated tokens:
               sum_i ED_tokens / sum_i #tokens(y_i). Chinese text without spaces is
               one token per row, so WER there is the row error rate.
``ed1_accuracy``  1/m sum_i 1[ED(p_i, y_i) <= 1].

Corpus rates with an empty denominator (no ground-truth characters at all) are
0 when every prediction is empty too, else 1 (every predicted character is an
error). Nothing is case-folded, stripped or Unicode-normalised.

Protocols (``ocrkit evaluate --protocol``) say what both strings become before the
metrics above are computed:

``exact``        nothing changes (the default).
``lower-alnum``  the English scene-text benchmarks' scoring (IIIT5k, SVT, IC13, IC15,
                 SVTP, CUTE80 as DTRB, ASTER, ABINet and PARSeq report them): label
                 and prediction lower-cased (``str.lower``), then every character but
                 ``0-9 a-z`` removed - punctuation, spaces, symbols and accented
                 letters alike, so "I'M" read as "im" and "Ha-ha!" read as "haha" are
                 right, and "café" becomes "caf" on both sides. This is DTRB's
                 ``test.py`` (lower(), then ``re.sub('[^0-9a-z]', '', ...)`` on both
                 strings). PARSeq differs in one point: it folds the *labels* to ASCII
                 first (NFKD, "é" -> "e"), not the predictions; since its models
                 cannot output "é" the two agree on its data, and with a model that
                 can, folding one side only would score a correct "é" as wrong.
                 Removing accented letters on both sides scores such a word by its
                 other letters. The rows of a multi-row text are normalised one by
                 one. A label left empty is kept (an empty prediction is right):
                 DTRB keeps it too with its filtering off, PARSeq drops such samples;
                 ``evaluate`` counts them (``labels_emptied``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import editdistance

PROTOCOLS = ("exact", "lower-alnum")
_NOT_LOWER_ALNUM = re.compile("[^0-9a-z]")  # ASCII ranges: accented letters are outside


def normalize(text: str, protocol: str = "exact") -> str:
    """``text`` as ``protocol`` scores it (see the module docstring); newlines between
    rows are kept."""
    if protocol == "exact":
        return text
    if protocol == "lower-alnum":
        return "\n".join(_NOT_LOWER_ALNUM.sub("", row.lower()) for row in text.split("\n"))
    raise ValueError(f"protocol {protocol!r}: one of {', '.join(PROTOCOLS)}")


def _chars(text: str) -> str:
    return text.replace("\n", "")


def positional_hits(pred: str, gt: str) -> int:
    """Number of positions j < |gt| with pred[j] == gt[j] (Eq. 18's numerator)."""
    return sum(1 for p, g in zip(pred, gt) if p == g)


@dataclass
class Metrics:
    """Accumulates predictions; :meth:`result` returns the metrics above."""

    samples: int = 0
    gt_chars: int = 0
    pred_chars: int = 0
    hits: int = 0
    edits: int = 0
    exact: int = 0
    ed1: int = 0
    ned_sum: float = 0.0
    gt_words: int = 0
    word_edits: int = 0
    per_sample_ed: list[int] = field(default_factory=list)

    def update(self, preds: Sequence[str], gts: Sequence[str]) -> None:
        if len(preds) != len(gts):
            raise ValueError(f"{len(preds)} predictions for {len(gts)} ground truths")
        for pred_raw, gt_raw in zip(preds, gts):
            pred, gt = _chars(pred_raw), _chars(gt_raw)
            ed = editdistance.eval(pred, gt)
            self.samples += 1
            self.gt_chars += len(gt)
            self.pred_chars += len(pred)
            self.hits += positional_hits(pred, gt)
            self.edits += ed
            self.exact += pred == gt
            self.ed1 += ed <= 1
            longest = max(len(pred), len(gt))
            self.ned_sum += 1.0 - (ed / longest if longest else 0.0)
            gt_tokens, pred_tokens = gt_raw.split(), pred_raw.split()
            self.gt_words += len(gt_tokens)
            self.word_edits += editdistance.eval(pred_tokens, gt_tokens)
            self.per_sample_ed.append(ed)

    @staticmethod
    def _rate(errors: int, total: int, produced: int) -> float:
        if total:
            return errors / total
        return 0.0 if produced == 0 else 1.0

    def result(self) -> dict[str, float | int]:
        m = max(self.samples, 1)
        cer = self._rate(self.edits, self.gt_chars, self.pred_chars)
        return {
            "samples": self.samples,
            "clp": self.hits / self.gt_chars if self.gt_chars else float(self.pred_chars == 0),
            "clp_ed": 1.0 - cer,
            "ilp": self.exact / m,
            "accuracy": self.exact / m,
            "one_minus_ned": self.ned_sum / m,
            "cer": cer,
            "wer": self._rate(self.word_edits, self.gt_words, self.pred_chars),
            "ed1_accuracy": self.ed1 / m,
        }


# Confidence levels the calibration report gives: share kept, accuracy of what is kept.
CONFIDENCE_LEVELS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
CONFIDENT = 0.9  # a wrong text at or above this confidence is a "confident error"


@dataclass
class Calibration:
    """How far a recognizer's confidence can be trusted: each sample's confidence
    (``ocrkit infer``'s: the mean probability of the characters read) against whether
    its whole text is right (under the protocol, newlines not counted).

    :meth:`result` gives ``ece``, the expected calibration error over ``bins``
    equal-width bins (sum over bins of |accuracy - mean confidence| weighted by the
    bin's share of samples; a confidence of 1 falls in the last bin); ``levels``, for
    each confidence threshold, the share of samples at or above it (``kept``) and
    their accuracy (None when none is kept): what ``infer --min-confidence`` keeps;
    and ``confident_errors``, the wrong texts read with confidence >= 0.9."""

    confidences: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)

    def update(self, confidences: Sequence[float], preds: Sequence[str],
               gts: Sequence[str]) -> None:
        if not len(confidences) == len(preds) == len(gts):
            raise ValueError(f"{len(confidences)} confidences for {len(preds)} predictions "
                             f"and {len(gts)} ground truths")
        self.confidences += [float(c) for c in confidences]
        self.correct += [_chars(p) == _chars(g) for p, g in zip(preds, gts)]

    def result(self, bins: int = 10) -> dict:
        n = len(self.confidences)
        if not n:
            return {"samples": 0, "ece": None, "levels": [], "confident_errors": 0}
        counts, conf_sums, hits = [0] * bins, [0.0] * bins, [0] * bins
        for c, ok in zip(self.confidences, self.correct):
            b = min(max(int(c * bins), 0), bins - 1)
            counts[b] += 1
            conf_sums[b] += c
            hits[b] += ok
        ece = sum(abs(hits[b] - conf_sums[b]) for b in range(bins) if counts[b]) / n
        levels = []
        for level in CONFIDENCE_LEVELS:
            kept = [ok for c, ok in zip(self.confidences, self.correct) if c >= level]
            levels.append({"min_confidence": level, "kept": len(kept) / n,
                           "accuracy": sum(kept) / len(kept) if kept else None})
        return {"samples": n, "mean_confidence": sum(self.confidences) / n,
                "accuracy": sum(self.correct) / n, "ece": ece, "levels": levels,
                "confident_errors": sum(1 for c, ok in zip(self.confidences, self.correct)
                                        if c >= CONFIDENT and not ok)}


def evaluate_strings(preds: Iterable[str], gts: Iterable[str], protocol: str = "exact"
                     ) -> dict[str, float | int]:
    """All metrics for two parallel sequences of strings, scored by ``protocol``."""
    metrics = Metrics()
    metrics.update([normalize(p, protocol) for p in preds],
                   [normalize(g, protocol) for g in gts])
    return metrics.result()
