"""Ordered character sets: CTC blank is index 0, characters are 1..N.

A charset is stored in every checkpoint as the plain list of characters, and on
disk as a UTF-8 dictionary file with one character per line (blank not listed),
as PaddleOCR and deep-text-recognition-benchmark users expect.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Iterable, Sequence

from ocrkit.errors import OcrkitError, UsageError

UNKNOWN_POLICIES = ("error", "skip", "replace")


class UnknownReport:
    """Counts of labels with characters outside a charset."""

    def __init__(self) -> None:
        self.labels = 0  # labels looked at
        self.affected = 0  # labels with at least one unknown character
        self.emptied = 0  # labels made only of unknown characters
        self.chars: Counter = Counter()
        self.examples: list[str] = []

    def describe(self, limit: int = 8) -> str:
        shown = " ".join(repr(c) for c, _ in self.chars.most_common(limit))
        more = f" and {len(self.chars) - limit} more" if len(self.chars) > limit else ""
        return (f"{self.affected} of {self.labels} labels hold {sum(self.chars.values())} "
                f"characters outside the charset ({len(self.chars)} distinct: {shown}{more})")


class Charset:
    """Maps characters to class indices (blank = 0) and back."""

    def __init__(self, chars: Sequence[str]) -> None:
        chars = list(chars)
        if not chars:
            raise UsageError("the charset is empty")
        bad = [c for c in chars if len(c) != 1 or c in "\n\r"]
        if bad:
            raise UsageError(f"charset entries must be single characters (got {bad[0]!r})")
        dupes = [c for c, n in Counter(chars).items() if n > 1]
        if dupes:
            raise UsageError(f"charset lists {dupes[0]!r} twice")
        self.chars = chars
        self.index = {c: i + 1 for i, c in enumerate(chars)}

    # -- construction -----------------------------------------------------
    @classmethod
    def from_labels(cls, labels: Iterable[str], *, min_count: int = 1) -> "Charset":
        """Characters of the labels (newlines excluded), most frequent first.

        Frequency order puts common characters at small indices, which keeps a
        dictionary file readable; ties break by code point for determinism.
        """
        counts: Counter = Counter()
        for label in labels:
            counts.update(label.replace("\n", ""))
        chars = [c for c, n in counts.items() if n >= min_count]
        return cls(sorted(chars, key=lambda c: (-counts[c], c)))

    @classmethod
    def load(cls, path: str) -> "Charset":
        """Read a dictionary file (one character per line; blank lines ignored)."""
        try:
            with open(path, encoding="utf-8") as fh:
                lines = [line.rstrip("\r\n") for line in fh]
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: cannot read charset ({exc})") from None
        return cls([line for line in lines if line != ""])

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.writelines(c + "\n" for c in self.chars)

    # -- use --------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Characters plus the CTC blank."""
        return len(self.chars) + 1

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, ch: str) -> bool:
        return ch in self.index

    @property
    def digest(self) -> str:
        """Short hash identifying this exact ordered charset."""
        return hashlib.sha1("\n".join(self.chars).encode("utf-8")).hexdigest()[:12]

    def encode(self, text: str, unknown: str = "error", replacement: str | None = None
               ) -> list[int]:
        """Class indices of ``text``; characters outside the charset follow ``unknown``.

        ``error`` raises, ``skip`` drops the character, ``replace`` maps it to
        ``replacement`` (which must be in the charset).
        """

        out = []
        for ch in text:
            idx = self.index.get(ch)
            if idx is None:
                if unknown == "skip":
                    continue
                if unknown == "replace":
                    if replacement not in self.index:
                        raise UsageError(f"--replacement {replacement!r} is not in the charset; "
                                         "add it to the dictionary or name one of its characters")
                    idx = self.index[replacement]
                else:
                    raise OcrkitError(f"character {ch!r} of {text!r} is not in the charset "
                                      "(--unknown skip drops it, --unknown replace "
                                      "--replacement C maps it to C)")
            out.append(idx)
        return out

    def unknown_in(self, labels: Iterable[str]) -> "UnknownReport":
        """Which labels hold characters outside this charset (newlines between rows
        are not characters)."""
        report = UnknownReport()
        for label in labels:
            report.labels += 1
            text = label.replace("\n", "")
            bad = [ch for ch in text if ch not in self.index]
            if bad:
                report.affected += 1
                report.chars.update(bad)
                if len(bad) == len(text):
                    report.emptied += 1
                if len(report.examples) < 3:
                    report.examples.append(label)
        return report

    def decode(self, indices: Iterable[int]) -> str:
        """Characters for class indices (blank and out-of-range indices dropped)."""
        chars = self.chars
        return "".join(chars[i - 1] for i in indices if 0 < i <= len(chars))
