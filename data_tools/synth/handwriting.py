"""Handwritten words: ink on paper (``--domain handwriting``).

A dozen handwriting fonts are a dozen hands; a model trained on them as they are
learns those fonts, not handwriting. So every word here is written anew, one
character at a time, the way a hand varies (Krishnan & Jawahar's synthetic
IIIT-HWS renders handwriting fonts with such variation; the distortions below go
further):

- per character: size, baseline (a random walk around a baseline that drifts
  and may curve), rotation, extra slant and spacing; per word: a slant (shear);
  script fonts are written with negative spacing so the letters join, and other
  fonts get joining strokes between some lowercase letters;
- the pen: stroke width varies along the stroke (a blurred word thresholded at a
  level that wanders across it: pressure), ink density varies (ballpoint skips,
  pencil grain), an elastic distortion makes strokes sloppy; brush mode (for
  Chinese) adds heavy strokes with rough, bleeding edges and dry-brush streaks;
- the page: white, cream, yellow legal or grey recycled paper with grain and
  fibres; ruled lines the word sits on, squared paper, a margin rule, form
  fields (boxes and printed underlines); bleed-through of writing on the back;
  bits of words on the lines above and below and beside;
- the scanner or phone: a small rotation, blur, noise, specks, grey or
  bitonal scans, JPEG.

Ink colours are those of pens: blue and black ballpoint, dark blue, pencil grey,
sometimes red or green. The distortions work on coverage maps and never ask
what script they draw, so ``--lang zh --domain handwriting`` writes Chinese
with pen- and brush-like variation of the print fonts (no Kai or handwriting
Chinese font installs from PyPI). Images are RGB, ``--height`` high and as wide
as the word, at most ``--width``; every random choice of image ``i`` comes from
``random.Random(f"{seed}:{i}")``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from data_tools.synth.fonts import FontSpec
from data_tools.synth.layout import Layout
from data_tools.synth.look import Appearance
from data_tools.synth.raster import (
    affine_glyph,
    blur,
    crop_around,
    edge_slot,
    fractal_noise,
    from_u8,
    gaussian_noise,
    generator,
    grow,
    homography,
    hsv,
    ink_box,
    jpeg,
    luminance,
    paste,
    remap,
    stamp,
    to_u8,
    translation,
    value_noise,
    warp,
)
from data_tools.synth.render import Rendered
from data_tools.synth.wordfonts import FontTraits, WordRenderer

_PENS = (  # (name, weight, hue range, saturation range, value range)
    ("blue ballpoint", 0.38, (0.58, 0.67), (0.55, 0.95), (0.3, 0.75)),
    ("black", 0.3, (0.0, 1.0), (0.0, 0.25), (0.02, 0.22)),
    ("dark blue", 0.12, (0.6, 0.7), (0.4, 0.8), (0.12, 0.35)),
    ("pencil", 0.1, (0.0, 1.0), (0.0, 0.08), (0.25, 0.5)),
    ("red", 0.05, (0.97, 1.02), (0.6, 0.9), (0.5, 0.8)),
    ("green", 0.05, (0.3, 0.42), (0.5, 0.9), (0.25, 0.5)),
)
_RULINGS = (("plain", 0.42), ("ruled", 0.3), ("squared", 0.1), ("form box", 0.08),
            ("underline", 0.1))


def _weighted(rng: random.Random, table):
    return rng.choices(table, weights=[row[1] for row in table])[0]


def _is_cjk(ch: str) -> bool:
    return ord(ch) >= 0x2E80


def _joins(a: str, b: str) -> bool:
    """Whether a hand joins ``a`` to ``b`` (lowercase Latin letters)."""
    return all(c.isalpha() and c.islower() and c.isascii() for c in (a, b))


@dataclass(frozen=True)
class Hand:
    """How one word is written: the variation of its characters (drawn per word)."""

    slant: float  # shear of every letter (positive leans right)
    drift: float  # slope of the baseline
    wander: float  # sd of the baseline's random walk, x font size
    size_sd: float  # sd of the log of each letter's size
    turn_sd: float  # sd of each letter's rotation, degrees
    shear_sd: float  # sd of each letter's slant around the word's
    spacing: float  # extra space between letters, x font size (negative: they touch)
    gap_sd: float  # sd of each gap between letters, x font size

    @classmethod
    def sample(cls, rng: random.Random, *, cjk: bool = False, script: bool = False) -> "Hand":
        slant = 0.0 if cjk and rng.random() < 0.5 else rng.gauss(0.12, 0.14)
        slant = min(0.5, max(-0.25, slant)) * (0.4 if cjk else 1.0)
        wander = rng.uniform(0.008, 0.045)
        size_sd = rng.uniform(0.02, 0.07)
        turn_sd = rng.uniform(0.5, 5.0)
        if script:  # a joined-up script: letters overlap a little and touch
            spacing = rng.uniform(-0.12, -0.02)
        else:
            spacing = rng.uniform(-0.02, 0.15) if cjk else rng.uniform(-0.03, 0.12)
        drift = math.tan(math.radians(rng.gauss(0, 1.5)))
        return cls(slant, drift, wander, size_sd, turn_sd, 0.04, spacing, 0.025)


class HandwritingRenderer(WordRenderer):
    """Draws handwritten words (RGB, ``layout.height`` high, width following the word up to
    ``layout.width``); the contract is :class:`~data_tools.synth.render.Renderer`'s.

    Keyword options: ``traits`` (what each font draws, its family, and whether it is
    a joined-up script whose letters should touch: see
    :class:`~data_tools.synth.wordfonts.FontTraits`) and ``neighbours`` (characters
    for bits of neighbouring words).
    """

    domain = "handwriting"

    def __init__(self, fonts: Sequence[FontSpec], layout: Layout, look: Appearance, seed: int,
                 reference: str, *, traits: FontTraits | None = None,
                 neighbours: str = "") -> None:
        super().__init__(fonts, layout, look, seed, reference, traits=traits,
                         neighbours=neighbours)
        self._stroke: dict[tuple[int, int], float] = {}

    def render(self, index: int, rows: Sequence[str]) -> Rendered:
        rng = random.Random(f"{self.seed}:{index}")
        gen = generator(rng)
        text = rows[0]
        font = self.chooser.pick(rng, text)
        image = self._draw(rng, gen, font, text)
        return Rendered(image, None, None, self.fonts[font].name)

    # -- the hand ---------------------------------------------------------
    def stroke_width(self, font: int, size: int) -> float:
        """The font's stroke width at ``size``: ink area over half the outline length of
        a few letters (cached)."""
        key = (font, size)
        hit = self._stroke.get(key)
        if hit is None:
            area = edge = 0.0
            for ch in "lonIH国一":
                if not self.chooser.draws(font, ch):
                    continue
                mask = self.glyphs.glyph(font, size, ch)[0]
                if mask is None:
                    continue
                ink = mask > 127
                area += ink.sum()
                edge += (ink[:, 1:] != ink[:, :-1]).sum() + (ink[1:] != ink[:-1]).sum()
            hit = self._stroke[key] = float(2 * area / edge) if edge else size * 0.08
        return hit

    def write(self, rng: random.Random, font: int, size: int, text: str, *,
              canvas_pad: int, hand: Hand | None = None
              ) -> tuple[np.ndarray, int, list[tuple[int, int, int, int]]]:
        """The word's coverage, written one character at a time with a hand's variation
        (``hand``, drawn from ``rng`` when not given); returns the coverage, the
        baseline's row and each character's ink box."""
        script = self.traits.script[font]
        cjk = any(_is_cjk(ch) for ch in text)
        if hand is None:
            hand = Hand.sample(rng, cjk=cjk, script=script)
        ascent = self.glyphs.metrics(font, size)[0]
        slant, drift = hand.slant, hand.drift
        walk_sd, size_sd, turn_sd = size * hand.wander, hand.size_sd, hand.turn_sd
        spacing = size * hand.spacing
        placed = []  # (coverage, x, y, character, whether a word starts with it)
        x, walk, after_space = 0.0, 0.0, False
        for ch in text:
            if ch == " ":
                x += self.glyphs.glyph(font, size, " ")[3] * rng.uniform(0.7, 1.7) + spacing
                after_space = True
                continue
            s = max(6, int(round(size * math.exp(rng.gauss(0, size_sd)))))
            mask, left, top, adv = self.glyphs.glyph(font, s, ch)
            walk = 0.6 * walk + rng.gauss(0, walk_sd)
            base_y = ascent + walk + drift * x  # baseline, from the line's ascender
            s_ascent = self.glyphs.metrics(font, s)[0]
            if mask is not None:
                gx, gy = x + left, base_y - s_ascent + top
                pivot = (mask.shape[1] / 2, s_ascent - top)  # the glyph's foot on the baseline
                mask, ox, oy = affine_glyph(mask, rng.gauss(0, turn_sd),
                                            slant + rng.gauss(0, hand.shear_sd), pivot)
                placed.append((mask, gx + ox, gy + oy, ch, after_space))
                after_space = False
            x += adv + spacing + rng.gauss(0, size * hand.gap_sd)
        if not placed:
            return np.zeros((1, 1), np.float32), 0, []
        x0 = min(p[1] for p in placed)
        y0 = min(p[2] for p in placed)
        x1 = max(p[1] + p[0].shape[1] for p in placed)
        y1 = max(p[2] + p[0].shape[0] for p in placed)
        pad = canvas_pad
        h, w = int(y1 - y0) + 2 * pad, int(x1 - x0) + 2 * pad
        layer = np.zeros((h, w), dtype=np.uint8)
        boxes = []
        for mask, px, py, _, _ in placed:
            ix, iy = int(round(px - x0)) + pad, int(round(py - y0)) + pad
            stamp(layer, mask, ix, iy)
            boxes.append((ix, iy, ix + mask.shape[1], iy + mask.shape[0]))
        word = from_u8(layer)
        baseline = int(round(ascent - y0)) + pad
        if not script and not cjk and rng.random() < 0.35:
            word = self._join(rng, word, [(p[3], p[4]) for p in placed], boxes,
                              self.stroke_width(font, size))
        return word, baseline, boxes

    def _join(self, rng, word: np.ndarray, chars: list[tuple[str, bool]], boxes, stroke: float
              ) -> np.ndarray:
        """Joining strokes between lowercase letters of a word (``chars``: each letter and
        whether a word starts with it): from the foot of one letter's right side up to
        the shoulder of the next one's left side, as cursive hands write."""
        img = Image.new("L", (word.shape[1], word.shape[0]), 0)
        draw = ImageDraw.Draw(img)
        width = max(1, int(round(stroke * rng.uniform(0.7, 1.0))))
        for k in range(len(chars) - 1):
            (a_ch, _), (b_ch, b_starts) = chars[k], chars[k + 1]
            if b_starts or not _joins(a_ch, b_ch) or rng.random() < 0.3:
                continue
            a, b = boxes[k], boxes[k + 1]
            exit_pt = _edge_point(word, a, right=True)
            entry = _edge_point(word, b, right=False)
            if exit_pt is None or entry is None or entry[0] - exit_pt[0] > 3 * (a[3] - a[1]):
                continue
            mid = ((exit_pt[0] + entry[0]) / 2, max(exit_pt[1], entry[1]) + width)
            pts = [_bezier(exit_pt, mid, entry, t / 6) for t in range(7)]
            draw.line(pts, fill=255, width=width, joint="curve")
        if img.getbbox() is None:
            return word
        return np.maximum(word, from_u8(np.asarray(img.filter(ImageFilter.GaussianBlur(0.5)))))

    # -- the page ---------------------------------------------------------
    def _draw(self, rng: random.Random, gen: np.random.Generator, font: int, text: str
              ) -> Image.Image:
        lay = self.layout
        cjk = any(_is_cjk(ch) for ch in text)
        mt, mb = rng.uniform(0.04, 0.45), rng.uniform(0.04, 0.45)
        ml, mr = rng.uniform(0.02, 0.4), rng.uniform(0.02, 0.4)
        top_r, bottom_r = self.glyphs.ink_ratio(font, text)
        supersample = rng.uniform(1.8, 2.6)
        size = int(min(200, max(10, round(supersample * lay.height / (1.0 + mt + mb)
                                          / max(0.2, (bottom_r - top_r) * 1.05)))))
        size -= size % 2
        word, baseline, _ = self.write(rng, font, size, text, canvas_pad=size // 2 + 2)
        stroke = self.stroke_width(font, size)
        word = self._pen(rng, gen, word, size, stroke, brush=cjk and rng.random() < 0.35,
                         sloppy=1.5 if cjk else 1.0)
        box = ink_box(word, 0.2) or (0, 0, word.shape[1], word.shape[0])

        x0, y0, x1, y1 = box
        forward = _tilt(rng, box)
        crop, (sx0, sy0, sx1, sy1) = crop_around(forward, box, (ml, mt, mr, mb), 3 * size)
        h, w = sy1 - sy0, sx1 - sx0
        ink = np.zeros((h, w), dtype=np.float32)
        paste(ink, word, -sx0, -sy0)
        box = (x0 - sx0, y0 - sy0, x1 - sx0, y1 - sy0)
        baseline -= sy0
        others = self._neighbours(rng, font, size, text, box, (h, w), baseline)
        if others is not None:
            others = self._pen(rng, gen, others, size, stroke, brush=False)
            ink = np.maximum(ink, others)

        paper = _paper(rng, gen, h, w, size)
        paper = self._ruling(rng, paper, box, baseline, size, (h, w))
        if rng.random() < 0.15:
            paper = self._bleed(rng, font, size, text, paper, (h, w), baseline)
        colour = _pen_colour(rng)
        page = paper * (1 - ink[..., None]) + (paper * colour) * ink[..., None]  # ink multiplies
        fill = tuple(int(c) for c in to_u8(paper.reshape(-1, 3).mean(axis=0)))
        cw, ch = max(2, round(crop[2] - crop[0])), max(2, round(crop[3] - crop[1]))
        photo = warp(Image.fromarray(to_u8(page)), forward @ translation(sx0, sy0), crop,
                     (cw, ch), fill)
        out_w = max(max(4, lay.height // 4), min(lay.width, round(cw * lay.height / ch)))
        photo = photo.resize((out_w, lay.height), rng.choice(
            (Image.Resampling.LANCZOS, Image.Resampling.BOX, Image.Resampling.BILINEAR)))
        return _scan(rng, gen, photo)

    def _pen(self, rng, gen, word: np.ndarray, size: int, stroke: float, *, brush: bool,
             sloppy: float = 1.0) -> np.ndarray:
        """The pen on the paper: thickness, pressure along the stroke, ink density,
        sloppy strokes (``sloppy`` times the usual: a print font written by hand needs
        more); ``brush``: heavy strokes, rough edges, dry-brush streaks."""
        h, w = word.shape
        if rng.random() < 0.6:  # sloppy strokes: a smooth elastic distortion
            amp = size * rng.uniform(0.008, 0.035) * sloppy
            cell = size * rng.uniform(0.25, 0.7)
            word = remap(word, value_noise(gen, h, w, cell) * amp,
                         value_noise(gen, h, w, cell) * amp)
        # A pen of its own width (a fine liner to a marker; a brush is broader), whatever
        # the font's own: hairline scripts get a usable stroke, heavy ones a thinner one.
        if brush:
            target = size * rng.uniform(0.08, 0.16)
        else:
            target = min(max(stroke * rng.uniform(0.6, 1.4), 1.6, size * 0.035), size * 0.11)
        word = grow(word, (target - stroke) / 2)
        # Pressure: the stroke widens where the pen presses (a smooth field over the word).
        press = np.clip(value_noise(gen, h, w, size * rng.uniform(0.3, 1.2)) * 0.5 + 0.5, 0, 1)
        word = word + press ** rng.uniform(0.7, 1.5) * (
            grow(word, target * rng.uniform(0.2, 0.6)) - word)
        if brush:  # ink bleeding into the paper: rough, feathered edges
            soft = blur(word, rng.uniform(0.8, 1.5))
            level = 0.45 + 0.12 * value_noise(gen, h, w, rng.uniform(1.0, 2.5))
            word = np.clip((soft - level) * 4.0 + 0.5, 0, 1)
        # Ink density: ballpoint skips and pencil grain.
        density = 1 - rng.uniform(0.0, 0.45) * np.clip(
            value_noise(gen, h, w, size * rng.uniform(0.2, 1.0)) * 0.5 + 0.5, 0, 1)
        if rng.random() < 0.2:
            grain = fractal_noise(gen, h, w, rng.uniform(0.8, 2.0), 2)
            density = density * np.clip(1 - rng.uniform(0.1, 0.5) * np.maximum(grain, 0), 0, 1)
        if brush and rng.random() < 0.6:  # dry brush: streaks along the strokes' direction
            cell, stretch = rng.uniform(1.0, 2.0), rng.uniform(4, 10)
            streak = (fractal_noise(gen, h, w, cell, 2, stretch=stretch) if rng.random() < 0.5
                      else fractal_noise(gen, w, h, cell, 2, stretch=stretch).T)
            density = density * np.clip(1 - 0.5 * np.maximum(streak - 0.5, 0), 0, 1)
        return np.clip(word * density, 0, 1).astype(np.float32)

    def _neighbours(self, rng, font, size, text, box, shape, baseline) -> np.ndarray | None:
        """Descenders of the line above, ascenders of the line below, the ends of the
        words beside: only their edges show (see raster.edge_slot)."""
        chars = self.neighbours or text.replace(" ", "") or "x"
        picks = [side for side, p in (("above", 0.25), ("below", 0.25), ("left", 0.12),
                                      ("right", 0.12)) if rng.random() < p]
        if not picks:
            return None
        canvas = np.zeros(shape, dtype=np.float32)
        x0, x1 = box[0], box[2]
        for side in picks:
            other = "".join(rng.choice(chars) for _ in range(rng.randint(2, 8)))
            if not self.chooser.draws(font, other):
                continue
            layer, base, _ = self.write(rng, font, size, other, canvas_pad=2)
            ink = ink_box(layer, 0.2)
            if ink is None:
                continue
            ix0, iy0, ix1, iy1 = ink
            edge = edge_slot(rng, side, box, iy1 - iy0, shape, size)
            if edge is None:
                continue
            x, y = x0 + rng.uniform(-0.6, 0.5) * (x1 - x0), baseline - base
            if side == "above":
                y = edge - iy1
            elif side == "below":
                y = edge - iy0
            elif side == "left":
                x = edge - ix1
            else:
                x = edge - ix0
            region = np.zeros(shape, dtype=np.float32)
            paste(region, layer, int(round(x)), int(round(y)))
            np.maximum(canvas, region, out=canvas)
        return canvas

    def _ruling(self, rng, paper: np.ndarray, box, baseline: int, size: int, shape
                ) -> np.ndarray:
        """Ruled, squared or form paper under the word (printed, so under the ink)."""
        kind = _weighted(rng, _RULINGS)[0]
        if kind == "plain":
            return paper
        h, w = shape
        img = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(img)
        thick = max(1, int(round(size * rng.uniform(0.02, 0.05))))
        if kind == "ruled":
            colour = hsv(rng.uniform(0.52, 0.62), rng.uniform(0.25, 0.6), rng.uniform(0.6, 0.9))
            pitch = size * rng.uniform(1.2, 1.9)
            y = baseline + size * rng.uniform(-0.02, 0.12)
            while y > 0:
                y -= pitch
            while y < h:
                draw.line((0, y, w, y), fill=255, width=thick)
                y += pitch
            if rng.random() < 0.15:  # the margin rule
                mx = rng.uniform(0, w)
                margin = Image.new("L", (w, h), 0)
                ImageDraw.Draw(margin).line((mx, 0, mx, h), fill=255, width=thick)
                paper = _print(paper, from_u8(np.asarray(margin)), hsv(0.98, 0.6, 0.85))
        elif kind == "squared":
            colour = hsv(rng.uniform(0.5, 0.62), rng.uniform(0.2, 0.5), rng.uniform(0.6, 0.9))
            cell = size * rng.uniform(0.45, 0.8)
            ox, oy = rng.uniform(0, cell), rng.uniform(0, cell)
            for k in range(int(w / cell) + 2):
                draw.line((ox + k * cell, 0, ox + k * cell, h), fill=255, width=thick)
            for k in range(int(h / cell) + 2):
                draw.line((0, oy + k * cell, w, oy + k * cell), fill=255, width=thick)
        else:  # a form: a field box around the word, or a printed underline
            colour = hsv(0, 0, rng.uniform(0.0, 0.45)) if rng.random() < 0.7 else hsv(
                rng.uniform(0.55, 0.65), 0.5, 0.5)
            x0, y0, x1 = box[:3]
            below = baseline + size * rng.uniform(0.05, 0.3)
            if kind == "underline":
                dotted = rng.random() < 0.3
                start, end = x0 - size * rng.uniform(0, 2), x1 + size * rng.uniform(0, 2)
                if dotted:
                    step = max(2.0, size * 0.15)
                    for k in range(int((end - start) / step)):
                        draw.line((start + k * step, below, start + k * step + step / 2, below),
                                  fill=255, width=thick)
                else:
                    draw.line((start, below, end, below), fill=255, width=thick)
            else:
                top = y0 - size * rng.uniform(0.15, 0.6)
                draw.rectangle((x0 - size * rng.uniform(0.1, 1.5), top,
                                x1 + size * rng.uniform(0.1, 1.5), below + size * 0.2),
                               outline=255, width=thick)
        return _print(paper, from_u8(np.asarray(img)), colour)

    def _bleed(self, rng, font, size, text, paper, shape, baseline) -> np.ndarray:
        """Writing on the back of the sheet showing through, mirrored and soft."""
        chars = self.neighbours or text
        other = "".join(rng.choice(chars) for _ in range(rng.randint(3, 10)))
        if not self.chooser.draws(font, other):
            return paper
        layer, base, _ = self.write(rng, font, size, other, canvas_pad=2)
        back = np.zeros(shape, dtype=np.float32)
        paste(back, layer[:, ::-1], int(rng.uniform(-layer.shape[1] / 2, shape[1] / 2)),
              int(baseline - base + rng.uniform(-0.8, 0.8) * size))
        back = blur(back, size * rng.uniform(0.03, 0.08)) * rng.uniform(0.06, 0.18)
        return paper * (1 - back[..., None] * (1 - _pen_colour(rng)))


def _tilt(rng: random.Random, box) -> np.ndarray:
    """The sheet under the scanner: a small rotation about the word (now and then the
    tilt of a phone held at an angle)."""
    x0, y0, x1, y1 = box
    if min(x1 - x0, y1 - y0) < 1:
        return np.eye(3)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    a = math.radians(rng.gauss(0, 1.5))
    src = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    dst = [((x - cx) * math.cos(a) - (y - cy) * math.sin(a) + cx,
            (x - cx) * math.sin(a) + (y - cy) * math.cos(a) + cy) for x, y in src]
    if rng.random() < 0.1:
        k = rng.uniform(0.85, 1.0)
        for i in ((1, 2) if rng.random() < 0.5 else (0, 3)):
            dst[i] = (dst[i][0], cy + (dst[i][1] - cy) * k)
    return homography(src, dst)


def _edge_point(word: np.ndarray, box, *, right: bool) -> tuple[float, float] | None:
    """Where a joining stroke leaves (right side, lower half) or enters (left side,
    middle) a letter's ink inside ``box``."""
    x0, y0, x1, y1 = box
    region = word[y0:y1, x0:x1] > 0.5
    if not region.any():
        return None
    h = region.shape[0]
    band = region[h // 2:] if right else region[h // 3: 2 * h // 3 + 1]
    off = h // 2 if right else h // 3
    cols = np.flatnonzero(band.any(axis=0))
    if cols.size == 0:
        return None
    col = cols[-1] if right else cols[0]
    rows = np.flatnonzero(band[:, col])
    return float(x0 + col), float(y0 + off + rows[-1 if right else len(rows) // 2])


def _bezier(p0, p1, p2, t: float) -> tuple[float, float]:
    u = 1 - t
    return (u * u * p0[0] + 2 * u * t * p1[0] + t * t * p2[0],
            u * u * p0[1] + 2 * u * t * p1[1] + t * t * p2[1])


def _print(paper: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Printed lines on the paper (multiplied in, as ink is)."""
    return paper * (1 - mask[..., None] * (1 - colour))


def _paper(rng: random.Random, gen: np.random.Generator, h: int, w: int, size: int
           ) -> np.ndarray:
    """A sheet: white, cream, yellow legal, grey recycled or aged paper with grain,
    fibres and soft blotches."""
    r = rng.random()
    if r < 0.5:
        base = hsv(rng.uniform(0.08, 0.6), rng.uniform(0.0, 0.06), rng.uniform(0.86, 1.0))
    elif r < 0.7:
        base = hsv(rng.uniform(0.1, 0.15), rng.uniform(0.06, 0.2), rng.uniform(0.85, 0.98))
    elif r < 0.82:
        base = hsv(rng.uniform(0.13, 0.17), rng.uniform(0.25, 0.45), rng.uniform(0.9, 1.0))
    elif r < 0.92:
        base = hsv(rng.uniform(0.08, 0.14), rng.uniform(0.0, 0.1), rng.uniform(0.62, 0.82))
    else:
        base = hsv(rng.uniform(0.07, 0.12), rng.uniform(0.15, 0.35), rng.uniform(0.7, 0.88))
    grain = (fractal_noise(gen, h, w, rng.uniform(0.8, 2.0), 2, stretch=rng.uniform(1, 5))
             * rng.uniform(0.005, 0.03)
             + value_noise(gen, h, w, size * rng.uniform(1, 4)) * rng.uniform(0.0, 0.04))
    return np.clip(base + grain[..., None], 0, 1).astype(np.float32)


def _pen_colour(rng: random.Random) -> np.ndarray:
    """An ink colour (what the paper's colour is multiplied by under full ink)."""
    _, _, hue, sat, val = _weighted(rng, _PENS)
    return hsv(rng.uniform(*hue), rng.uniform(*sat), rng.uniform(*val))


def _scan(rng: random.Random, gen: np.random.Generator, photo: Image.Image) -> Image.Image:
    """Scanner or phone: blur, grey or bitonal scans, noise and specks, JPEG."""
    if rng.random() < 0.5:
        photo = photo.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.8)))
    img = from_u8(np.asarray(photo))
    h, w = img.shape[:2]
    if rng.random() < 0.3:  # uneven light of a phone photo
        a = rng.uniform(0, 2 * math.pi)
        u = np.arange(w, dtype=np.float32)[None, :] / max(1, w - 1) - 0.5
        v = np.arange(h, dtype=np.float32)[:, None] / max(1, h - 1) - 0.5
        img = img * (1 + rng.uniform(-0.3, 0.3) * (u * math.cos(a) + v * math.sin(a)))[..., None]
    r = rng.random()
    if r < 0.2:  # a grey scan
        img = np.repeat(luminance(img)[..., None], 3, axis=2)
    elif r < 0.23:  # a bitonal scan (fax, old archives), cut between paper and ink
        grey = luminance(img)
        paper, ink = float(np.median(grey)), float(np.percentile(grey, 3))
        level = ink + (paper - ink) * rng.uniform(0.4, 0.6)
        img = np.repeat((grey > level).astype(np.float32)[..., None], 3, axis=2)
    if rng.random() < 0.3:
        img = (img - 0.5) * rng.uniform(0.75, 1.15) + 0.5 + rng.uniform(-0.08, 0.06)
    if rng.random() < 0.5:
        img = gaussian_noise(img, gen, rng.uniform(0.005, 0.035), colour=rng.random() < 0.3)
    if rng.random() < 0.15:  # dust and specks
        specks = gen.random((h, w)) < rng.uniform(0.001, 0.01)
        img = np.where(specks[..., None], rng.uniform(0.0, 0.4), img)
    out = Image.fromarray(to_u8(np.clip(img, 0, 1)))
    if rng.random() < 0.4:
        out = jpeg(out, rng.randint(30, 90))
    return out
