"""Resize/pad policy: PIL image -> float32 array ``[C, H, W]`` in [0, 1] (C = 1 grey,
3 RGB: the image is converted to the model's mode first).

Policies:

* ``stretch``: resize to exactly H x W (the paper's 64x128 / 224x224 inputs, §4.2).
* ``keep-ratio`` (single rows): scale to height H, width ``min(W, round(w*H/h))``,
  pad on the right to W with the image's own background (median of its border),
  so padding looks like paper, not like ink. With ``max_width`` the width limit
  is ``max_width`` instead of W and nothing is padded: a batch is padded to its
  widest image (:func:`pad_batch`). Models with column average pooling and a
  BiLSTM read any width, so inference keeps every line's own aspect ratio
  instead of squashing long lines into W.
* ``fit`` (multi-row): scale to fit inside H x W keeping the aspect ratio, pad
  right and bottom.

``valid_width`` (pixels of real image before padding) is returned too, so a
recognizer can ignore frames that only see padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

POLICIES = ("stretch", "keep-ratio", "fit")


@dataclass(frozen=True)
class ResizePad:
    height: int
    width: int
    policy: str = "keep-ratio"
    max_width: int | None = None  # keep-ratio without padding, up to this width
    channels: int = 1  # 1: grey ("L"), 3: RGB

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy {self.policy!r} not in {POLICIES}")
        if self.height < 1 or self.width < 1:
            raise ValueError("height and width must be positive")
        if self.channels not in (1, 3):
            raise ValueError(f"channels {self.channels}: 1 (grey) or 3 (RGB)")

    def __call__(self, image: Image.Image) -> tuple[np.ndarray, int]:
        image = image.convert("L" if self.channels == 1 else "RGB")
        w, h = image.size
        if self.policy == "stretch":
            new_w, new_h = self.width, self.height
        elif self.policy == "keep-ratio":
            new_h = self.height
            new_w = max(1, min(self.max_width or self.width, round(w * self.height / h)))
        else:
            scale = min(self.width / w, self.height / h)
            new_w = max(1, min(self.width, round(w * scale)))
            new_h = max(1, min(self.height, round(h * scale)))
        if (new_w, new_h) != (w, h):
            image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        arr = np.asarray(image, dtype=np.float32) / 255.0
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # [C, H, W]
        if (new_w, new_h) == (self.width, self.height) or (
                self.max_width and self.policy == "keep-ratio"):
            return np.ascontiguousarray(arr), new_w
        out = np.full((arr.shape[0], self.height, self.width), border_median(arr),
                      dtype=np.float32)
        out[:, :new_h, :new_w] = arr
        return out, new_w


def border_median(arr: np.ndarray) -> float:
    """An image's background: the median of its border pixels (first and last row and
    column; ``arr`` is ``[H, W]`` or ``[C, H, W]``). Padding and fills use it so that
    they look like paper, not like ink."""
    return float(np.median(np.concatenate([arr[..., 0, :].ravel(), arr[..., -1, :].ravel(),
                                           arr[..., :, 0].ravel(), arr[..., :, -1].ravel()])))


def pad_batch(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Arrays ``[C, H, w_i]`` padded on the right to the widest, each with its own
    background (the median of its border)."""
    width = max(a.shape[-1] for a in arrays)
    out = []
    for a in arrays:
        if a.shape[-1] == width:
            out.append(a)
            continue
        padded = np.full((*a.shape[:-1], width), border_median(a), dtype=a.dtype)
        padded[..., :a.shape[-1]] = a
        out.append(padded)
    return out


def text_bands(image: Image.Image, min_share: float = 0.04, rules: bool = False,
               relative: float = 0.0) -> int:
    """Horizontal bands of ink in a greyscale image (text rows, roughly).

    Ink is what is darker than the midpoint between the paper (median) and the
    darkest pixels; a pixel row holds ink when over 1 % of it is ink. Bands
    thinner than ``min_share`` of the height (rules, box lines, noise) are
    ignored, and gaps thinner than that are bridged. With ``rules``, the ink
    that every pixel row shares (vertical table rules: the 10th percentile of
    the rows' ink) is discounted first, so the rows of a table still part. Bands
    lower than ``relative`` times the highest band are not counted either.
    """
    small = image.convert("L")
    if small.height > 256:
        small = small.resize((max(1, round(small.width * 256 / small.height)), 256))
    arr = np.asarray(small, dtype=np.float32)
    paper, dark = float(np.median(arr)), float(np.percentile(arr, 1))
    if paper - dark < 24:  # no contrast: nothing that looks like text
        return 0
    share = (arr < (paper + dark) / 2).mean(axis=1)
    inked = share > 0.01 + (float(np.percentile(share, 10)) if rules else 0.0)
    h = len(inked)
    min_rows = max(1, int(round(min_share * h)))
    bands, run, gap = [], 0, h
    for flag in list(inked) + [False]:
        if flag:
            if run == 0 and bands and gap < min_rows:
                run = bands.pop() + gap  # bridge a thin gap
            run += 1
            gap = 0
        else:
            if run:
                bands.append(run)
                run = 0
            gap += 1
    least = max(min_rows, relative * max(bands, default=0))
    return sum(1 for b in bands if b >= least)


# Smallest image side that can hold a glyph worth reading: synth's smallest text is
# 6 px (data_tools.synth.layout.MIN_FONT_PX) plus a pixel of paper above and below.
# A smaller image (a 1x1 pixel, a thin strip cut off a scan) holds no legible
# character, yet the model still answers, often confidently.
MIN_SIDE = 8


def input_mismatch(image: Image.Image, height: int, width: int, rows: int,
                   max_width: int | None = None) -> str | None:
    """Why ``image`` looks unlike what a model with this input spec reads, or None.

    Models answer confidently on inputs they were never trained for (an empty
    string at 0.98 for a page given to a line model), so callers warn:

    * any model given an image under ``MIN_SIDE`` (8) px high or wide: too small
      to hold a character (1x1 pixels, thin strips);
    * a single-row model given an image taller than wide (vertical text?), or a
      square-ish image with several bands of text (several rows);
    * a multi-row model (fixed input size) given a single line of text: one band
      of text in an image at least 1.5x wider, for its height, than the training
      input (a page of the training shape with one line of text is not flagged:
      a multi-row model reads pages with fewer rows);
    * a multi-row model given an image whose aspect ratio is more than 2.5x off
      its training size;
    * a line read at its own width (``max_width``) that is wider than that limit,
      so it is squashed.
    """
    w, h = image.size
    aspect = w / max(h, 1)
    if min(w, h) < MIN_SIDE:
        what = f"{height}-px high lines" if rows <= 1 else f"{width}x{height} images"
        return (f"{w}x{h} image is too small to hold a character (under {MIN_SIDE} px "
                f"{'high' if h < MIN_SIDE else 'wide'}); this model reads {what}")
    if rows <= 1:
        if max_width and round(aspect * height) > max_width:
            return (f"{w}x{h} line is wider than {max_width // height} times its height: "
                    f"squashed to {max_width} px (split it into shorter lines)")
        if aspect >= 1.5:
            return None
        # the rows of a multi-row crop are about as high as each other; a band under
        # half the highest one is a scene crop's bit of a neighbouring line (synth
        # shows 10-45 % of one), texture or a rule
        bands = text_bands(image, relative=0.5)
        if bands >= 2:
            return (f"{w}x{h} image with about {bands} rows of text; this model reads one row "
                    "(train with --rows for multi-row images)")
        if aspect < 0.5:
            return f"{w}x{h} image is taller than wide; this model reads horizontal rows"
        return None
    trained = width / max(height, 1)
    # Bands are looked for at a finer scale than the default (gaps under 4 % of the
    # height are bridged): a page of 10 rows has gaps of about 2 %, and must not
    # read as one band; nor must a table, whose column rules ink every pixel row.
    if aspect >= 1.5 * trained and all(text_bands(image, min(0.04, 0.1 / rows), rules) == 1
                                       for rules in (False, True)):
        return (f"{w}x{h} image holds one line of text; this model reads {width}x{height} "
                f"images of {rows} rows (read lines with a single-row model)")
    if aspect > 2.5 * trained or aspect < trained / 2.5:
        return (f"{w}x{h} image; this model reads {width}x{height} images of {rows} rows")
    return None
