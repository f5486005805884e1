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


def evaluate_strings(preds: Iterable[str], gts: Iterable[str], protocol: str = "exact"
                     ) -> dict[str, float | int]:
    """All metrics for two parallel sequences of strings, scored by ``protocol``."""
    metrics = Metrics()
    metrics.update([normalize(p, protocol) for p in preds],
                   [normalize(g, protocol) for g in gts])
    return metrics.result()
