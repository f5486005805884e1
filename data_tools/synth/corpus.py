"""Text sources for the synthesizer: a corpus file read in book order, or an
embedded default made from jieba's word-frequency dictionary.

Two corpus modes:

* ``running`` (the paper's setting, §4.1): the file is one long text; all
  whitespace and control characters are removed and successive images take
  successive characters, so the labels of a run, concatenated, reproduce the
  normalised corpus from its start.
* ``lines``: each non-empty line is one row label (word- or line-level corpora,
  e.g. English words for scene text); inner whitespace is kept, collapsed to
  single spaces.

The embedded default needs no download and ships no text: it samples words from
the dictionary that the pip package ``jieba`` carries, weighted by their corpus
frequency, keeps only all-Han words, and inserts Chinese punctuation between
them. Words are kept only if every character is one of GB 2312's 6,763 common
simplified Han characters: jieba's dictionary also lists traditional and
mis-encoded forms (e.g. 鍏, 門), which a simplified-Chinese default should not
teach. It is an endless deterministic stream for a given seed.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ocrkit.errors import UsageError

# Punctuation inserted between embedded-corpus words, with relative weights.
PUNCTUATION = {"，": 0.55, "。": 0.30, "、": 0.06, "！": 0.03, "？": 0.03, "；": 0.015, "：": 0.015}
PUNCT_RATE = 0.12  # probability of a punctuation mark after a word
_CHUNK_WORDS = 1 << 16


def _is_common_han(ch: str) -> bool:
    """A Han character of GB 2312 (the 6,763 common simplified characters)."""
    if not 0x4E00 <= ord(ch) <= 0x9FFF:
        return False
    try:
        ch.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True


def normalise_running(text: str) -> str:
    """Remove whitespace (newlines included) and control/format characters."""
    return "".join(
        ch for ch in text if not ch.isspace() and unicodedata.category(ch)[0] != "C"
    )


def normalise_line(line: str) -> str:
    """Trim a line, collapse inner whitespace, drop control characters."""
    line = "".join(ch for ch in line if unicodedata.category(ch)[0] != "C" or ch in "\t ")
    return " ".join(line.split())


def read_corpus_file(path: str, mode: str) -> str | list[str]:
    """Read and normalise a corpus file.

    Returns the running text (``mode="running"``) or the list of lines
    (``mode="lines"``).

    Raises:
        UsageError: unreadable, not UTF-8, or nothing left after normalising.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise UsageError(f"--corpus {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"--corpus {path}: not UTF-8 (bad byte at offset {exc.start}); convert it, "
            "e.g. iconv -f GB18030 -t UTF-8"
        ) from None
    if mode == "running":
        body: str | list[str] = normalise_running(text)
    else:
        body = [ln for ln in (normalise_line(x) for x in text.splitlines()) if ln]
    if not body:
        raise UsageError(f"--corpus {path}: empty after removing whitespace")
    return body


def char_counts(corpus: str | Sequence[str]) -> Counter:
    """Character frequencies of a running text or a list of lines."""
    if isinstance(corpus, str):
        return Counter(corpus)
    counts: Counter = Counter()
    for line in corpus:
        counts.update(line)
    return counts


def jieba_dict_path() -> str:
    spec = importlib.util.find_spec("jieba")
    if spec is None or spec.origin is None:
        raise UsageError(
            "the embedded corpus needs the 'jieba' package (pip install jieba), "
            "or pass --corpus FILE"
        )
    path = os.path.join(os.path.dirname(spec.origin), "dict.txt")
    if not os.path.isfile(path):
        raise UsageError(f"jieba's dictionary is missing ({path}); reinstall jieba or pass --corpus")
    return path


@functools.lru_cache(maxsize=1)
def _dictionary() -> tuple[tuple[str, int], ...]:
    """(word, frequency) pairs of jieba's dictionary, read once per process."""
    entries = []
    with open(jieba_dict_path(), encoding="utf-8") as fh:
        for line in fh:
            parts = line.split(" ", 2)
            if len(parts) >= 2 and parts[1].strip().isdigit():
                entries.append((parts[0], int(parts[1])))
    return tuple(entries)


@functools.lru_cache(maxsize=1)
def _dictionary_chars() -> frozenset[str]:
    return frozenset().union(*(w for w, _ in _dictionary()))


@functools.lru_cache(maxsize=8)
def _words_of(usable: frozenset[str], charset_size: int
              ) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The dictionary's words made of ``usable`` characters (and, with
    ``charset_size``, of its most frequent ones) and their frequencies; kept per
    process, as the demo and the benches synthesise several sets in one."""
    pairs = [(w, f) for w, f in _dictionary() if usable.issuperset(w)]
    if charset_size > 0:
        weight: Counter = Counter()
        for word, f in pairs:
            for ch in word:
                weight[ch] += f
        keep = {ch for ch, _ in weight.most_common(charset_size)}
        pairs = [(w, f) for w, f in pairs if set(w) <= keep]
    return tuple(w for w, _ in pairs), tuple(f for _, f in pairs)


@dataclass
class EmbeddedCorpus:
    """Frequency-weighted Chinese words from jieba's dictionary, as a text stream."""

    words: list[str]
    weights: np.ndarray  # word frequencies, float64

    @classmethod
    def load(cls, allowed: Callable[[str], bool] | None = None, charset_size: int = 0
             ) -> "EmbeddedCorpus":
        """Read the dictionary, keeping common-Han words whose characters are allowed.

        Args:
            allowed: a character predicate (fonts' coverage, a user charset).
            charset_size: if > 0, keep only words made of the ``charset_size``
                most frequent characters (frequency = sum over words of word
                frequency x occurrences), for small-alphabet experiments.
        """
        usable = frozenset(c for c in _dictionary_chars()
                           if _is_common_han(c) and (allowed is None or allowed(c)))
        words, freqs = _words_of(usable, charset_size)
        if not words:
            raise UsageError("the embedded corpus is empty for these fonts/charset; pass --corpus")
        return cls(list(words), np.asarray(freqs, dtype=np.float64))

    def stream(self, n_chars: int, seed: int, allowed: Callable[[str], bool] | None = None
               ) -> str:
        """The first ``n_chars`` characters of the endless stream for ``seed``.

        Chunks are drawn in a fixed order, so a shorter stream is always a
        prefix of a longer one with the same seed.
        """
        rng = np.random.Generator(np.random.PCG64(seed))
        cdf = np.cumsum(self.weights)
        cdf /= cdf[-1]
        marks = [m for m in PUNCTUATION if allowed is None or allowed(m)]
        mark_p = np.asarray([PUNCTUATION[m] for m in marks], dtype=np.float64)
        mark_cdf = np.cumsum(mark_p) / mark_p.sum() if marks else None
        pieces: list[str] = []
        total = 0
        while total < n_chars:
            idx = np.searchsorted(cdf, rng.random(_CHUNK_WORDS), side="right")
            idx = np.minimum(idx, len(self.words) - 1)
            punct = rng.random(_CHUNK_WORDS) < PUNCT_RATE
            which = np.searchsorted(mark_cdf, rng.random(_CHUNK_WORDS)) if marks else None
            chunk = []
            for k, i in enumerate(idx.tolist()):
                chunk.append(self.words[i])
                if marks and punct[k]:
                    chunk.append(marks[min(int(which[k]), len(marks) - 1)])
            text = "".join(chunk)
            pieces.append(text)
            total += len(text)
        return "".join(pieces)[:n_chars]
