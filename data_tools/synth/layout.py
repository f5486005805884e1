"""Image geometry and the book-order text plan.

:func:`derive_layout` turns the user's size options into a font size and a
number of characters per row. :func:`plan_running` and :func:`plan_lines` decide,
before any rendering, which text every image carries: image ``i`` gets the
``i``-th slice of the corpus in book order. Plans are cheap (offsets, not
strings), identical in every process and every shard, so ``--workers`` and
``--shard`` never change what an image says.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ocrkit.errors import UsageError

MIN_FONT_PX = 6
DEFAULT_SINGLE = (256, 32)  # width, height of single-row images
DEFAULT_MULTI = (224, 224)  # near-square multi-row images (paper §4.1)
FILL = 0.8  # font size / row pitch without box lines
FILL_BOXED = 0.7  # ... with box lines (room for the row separators)
COLUMN_EVERY = 3  # at most one column line per this many characters
# Largest image side synth writes: libjpeg's JPEG_MAX_DIMENSION (--jpeg-quality cannot
# save a longer side), and far beyond a line a recognizer reads in one piece (infer
# reads a line up to 64 times its height). The pixel limit is the readers' own
# (data_tools.images.MAX_PIXELS, 100 M unless OCRKIT_MAX_IMAGE_PIXELS says otherwise):
# every ocrkit reader refuses a larger image as a decompression bomb, so synth must
# not write one. Both are checked before anything is rendered or created on disk.
MAX_SIDE = 65500


@dataclass(frozen=True)
class Layout:
    """Geometry shared by every image of a run."""

    width: int
    height: int
    rows: int
    cols: int
    min_cols: int
    font_size: int
    margin_x: int
    margin_y: int
    box_lines: bool
    column_gap: int  # extra horizontal room at a column line (box lines only)

    @property
    def row_pitch(self) -> float:
        return (self.height - 2 * self.margin_y) / self.rows

    @property
    def text_width(self) -> int:
        return self.width - 2 * self.margin_x

    @property
    def max_column_lines(self) -> int:
        return max(1, self.cols // COLUMN_EVERY) if self.box_lines and self.cols > 1 else 0


def derive_layout(
    rows: int,
    width: int | None,
    height: int | None,
    cols: int | None,
    min_cols: int | None,
    *,
    box_lines: bool = False,
    max_spacing: float = 0.0,
) -> Layout:
    """Font size and characters per row from the image size (or the size from ``cols``).

    The font size is a fixed fraction of the row pitch; ``cols`` is how many
    full-width characters (plus spacing and column-line gaps) fit the width. If
    ``cols`` is given without a width, the width is derived from it.

    Raises:
        UsageError: sizes that are not positive, leave rows too small to render
            legibly, or make images larger than ``MAX_SIDE`` px a side or the
            readers' pixel limit (checked first: nothing is rendered or written).
    """
    from data_tools.images import MAX_PIXELS

    if rows < 1:
        raise UsageError(f"--rows {rows}: must be at least 1")
    for flag, value in (("--width", width), ("--height", height), ("--cols", cols),
                        ("--min-cols", min_cols)):
        if value is not None and value < 1:
            raise UsageError(f"bad size: {flag} {value}: must be at least 1")
        if value is not None and flag in ("--width", "--height") and value > MAX_SIDE:
            raise UsageError(f"bad size: {flag} {value}: at most {MAX_SIDE} px (the largest "
                             "side a JPEG holds; no text line or page needs more)")
    default_w, default_h = DEFAULT_SINGLE if rows == 1 else DEFAULT_MULTI
    h = default_h if height is None else height
    if width is not None and width * h > MAX_PIXELS:
        raise UsageError(_too_many_pixels(f"--width {width} --height {h}", width, h, MAX_PIXELS))
    margin_y = 0 if rows == 1 and not box_lines else max(2, round(h * 0.02))
    pitch = (h - 2 * margin_y) / rows
    font = int(pitch * (FILL_BOXED if box_lines else FILL))
    if font < MIN_FONT_PX:
        raise UsageError(
            f"bad size: --height {h} with --rows {rows} gives {pitch:.1f}-px rows and "
            f"{font}-px text; need at least {math.ceil(MIN_FONT_PX / FILL)} px per row"
        )
    gap = max(3, round(font * 0.3)) if box_lines else 0
    advance = font * (1.0 + max_spacing)
    if width is None and cols is not None:
        if cols < 1:
            raise UsageError(f"--cols {cols}: must be at least 1")
        margin_x = max(2, round(font * 0.25))
        lines = max(1, cols // COLUMN_EVERY) if box_lines and cols > 1 else 0
        width = math.ceil(cols * advance + lines * gap + 2 * margin_x + (2 * gap if box_lines else 0))
        if width > MAX_SIDE or width * h > MAX_PIXELS:
            raise UsageError(
                f"bad size: --cols {cols} of {font}-px text makes images {width} px wide; "
                + (f"at most {MAX_SIDE} px" if width > MAX_SIDE
                   else f"{width * h:,} pixels, over the {MAX_PIXELS:,} ocrkit's image readers "
                        "accept")
                + ": lower --cols (or --height)")
    w = default_w if width is None else width
    if w * h > MAX_PIXELS:  # the default width with a tall --height
        raise UsageError(_too_many_pixels(f"--height {h} (width {w})", w, h, MAX_PIXELS))
    margin_x = max(2, round(min(font * 0.25, w * 0.03)))
    inner = w - 2 * margin_x - (2 * gap if box_lines else 0)
    fit = int(inner // (advance + (gap / COLUMN_EVERY if box_lines else 0)))
    if cols is None:
        cols = fit
    elif cols > max(fit, 0):
        raise UsageError(
            f"bad size: {cols} characters of {font} px do not fit a width of {w} px "
            f"(at most {max(fit, 0)}); raise --width or lower --cols"
        )
    if cols < 1:
        raise UsageError(f"bad size: width {w} px fits no {font}-px character; raise --width")
    lo = cols if min_cols is None else min_cols
    if not 1 <= lo <= cols:
        raise UsageError(f"--min-cols {min_cols}: must be between 1 and --cols ({cols})")
    return Layout(w, h, rows, cols, lo, font, margin_x, margin_y, box_lines, gap)


def _too_many_pixels(what: str, w: int, h: int, limit: int) -> str:
    return (f"bad size: {what}: {w * h:,} pixels per image, over the {limit:,} that ocrkit's "
            "image readers accept (a larger image is refused as a decompression bomb; "
            "OCRKIT_MAX_IMAGE_PIXELS raises the limit)")


def display_width(text: str) -> int:
    """Width in half-width units: 2 for wide/full-width characters, else 1."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


@dataclass
class Plan:
    """Which text each image carries: row ``r`` of image ``i`` is
    ``stream[starts[i, r] : starts[i, r] + lengths[i, r]]`` (modulo the stream)."""

    stream: str
    starts: np.ndarray  # int64 [n, rows]
    lengths: np.ndarray  # int64 [n, rows]
    wrapped: bool = False
    skipped_lines: int = 0

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def rows(self, index: int) -> list[str]:
        size = len(self.stream)
        out = []
        for start, length in zip(self.starts[index].tolist(), self.lengths[index].tolist()):
            start %= size
            piece = self.stream[start:start + length]
            while len(piece) < length:  # crosses the end of the corpus: wrap around
                piece += self.stream[: length - len(piece)]
            out.append(piece)
        return out


def row_lengths(layout: Layout, count: int, seed: int) -> np.ndarray:
    """Characters per row for every image: ``cols``, or uniform in [min_cols, cols]."""
    if layout.min_cols == layout.cols:
        return np.full((count, layout.rows), layout.cols, dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64([seed, 0x6C61796F]))
    return rng.integers(layout.min_cols, layout.cols + 1, size=(count, layout.rows), dtype=np.int64)


def plan_labels(labels: Sequence[str], rows: int = 1) -> Plan:
    """Successive images take ``rows`` successive labels each (one per row)."""
    flat = np.asarray([len(x) for x in labels], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(flat)[:-1])).astype(np.int64)
    return Plan("".join(labels), starts.reshape(-1, rows), flat.reshape(-1, rows))


def plan_running(text: str, layout: Layout, count: int, seed: int, *, wrap: bool = True) -> Plan:
    """Successive images take successive characters of ``text`` (book order)."""
    lengths = row_lengths(layout, count, seed)
    flat = lengths.reshape(-1)
    starts = np.concatenate(([0], np.cumsum(flat)[:-1])).reshape(lengths.shape)
    total = int(flat.sum())
    wrapped = total > len(text)
    if wrapped and not wrap:
        ends = starts + lengths
        fits = int(np.searchsorted(ends[:, -1], len(text), side="right"))
        starts, lengths = starts[:fits], lengths[:fits]
    return Plan(text, starts, lengths, wrapped=wrapped)


def plan_lines(lines: Sequence[str], layout: Layout, count: int, *, wrap: bool = True,
               limit: int | None = None) -> Plan:
    """Each row takes the next corpus line; lines wider than a row (or than ``limit``
    half-width characters, when given) are skipped."""
    widest = 2 * layout.cols if limit is None else limit
    usable = [ln for ln in lines if display_width(ln) <= widest]
    skipped = len(lines) - len(usable)
    if not usable:
        raise UsageError(
            f"--corpus: every line is wider than a row ({layout.cols} full-width characters); "
            "raise --width or --cols" if limit is None else
            f"--corpus: every line is longer than {limit} characters; raise --cols"
        )
    offsets = np.cumsum([0] + [len(ln) for ln in usable])
    need = count * layout.rows
    wrapped = need > len(usable)
    if wrapped and not wrap:
        need = (len(usable) // layout.rows) * layout.rows
    line_ids = np.arange(need, dtype=np.int64) % len(usable)
    starts = offsets[line_ids].reshape(-1, layout.rows)
    lengths = np.asarray([len(usable[i]) for i in line_ids.tolist()], dtype=np.int64)
    return Plan("".join(usable), starts, lengths.reshape(-1, layout.rows), wrapped, skipped)
