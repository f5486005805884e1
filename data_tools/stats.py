"""Dataset statistics: counts, label lengths, rows, charset, unknown characters."""

from __future__ import annotations

from collections import Counter
from typing import Iterable


def label_stats(labels: Iterable[str], charset: set[str] | None = None) -> dict:
    """Summarise labels (rows joined by ``\\n``).

    Returns a JSON-ready dict: ``samples``, ``characters``, ``empty_labels``,
    ``length_histogram`` (characters per image, rows excluded), ``rows_histogram``,
    ``charset_size`` and ``charset``; with ``charset``, also ``unknown`` (characters
    outside it with their counts) and ``samples_with_unknown``.
    """
    lengths: Counter = Counter()
    rows: Counter = Counter()
    chars: Counter = Counter()
    samples = empty = with_unknown = 0
    for label in labels:
        samples += 1
        parts = label.split("\n")
        text = "".join(parts)
        rows[len(parts)] += 1
        lengths[len(text)] += 1
        chars.update(text)
        if not text:
            empty += 1
        if charset is not None and any(c not in charset for c in text):
            with_unknown += 1
    out = {
        "samples": samples,
        "characters": sum(chars.values()),
        "empty_labels": empty,
        "length_histogram": {str(k): lengths[k] for k in sorted(lengths)},
        "rows_histogram": {str(k): rows[k] for k in sorted(rows)},
        "charset_size": len(chars),
        "charset": "".join(sorted(chars)),
    }
    if charset is not None:
        unknown = {c: n for c, n in chars.most_common() if c not in charset}
        out["unknown"] = unknown
        out["samples_with_unknown"] = with_unknown
    return out
