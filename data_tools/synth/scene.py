"""Scene-text word crops: RGB words that look photographed (``--domain scene``).

What the synthetic sets behind today's English recognizers do, and what this
renderer takes from each:

- MJSynth (Jaderberg et al. 2014): many fonts; a border and/or shadow; base
  colours of text, border and background drawn from clusters of real crops;
  projective distortion; blending with natural-image patches; noise, blur,
  JPEG and downsampling.
- SynthText (Gupta et al. 2016): text colour picked for contrast against the
  region it lands on, in a colour space close to what people see.
- SynthTIGER (Yim et al. 2021): curved layouts and letter spacing, border /
  shadow / extrusion styles, perspective, trapezoid, skew and rotation, a
  second ("midground") word behind the text, padding that leaves loose crops,
  and post-processing (Gaussian noise, blur, resampling, JPEG 50-95).
- text_renderer (Sanster): neighbouring text lines, emboss, curves, lines.

With nothing downloaded there are no photos to blend with, so backgrounds are
made here, procedurally, at the size of the sample: flat and gradient paint,
plasma (fractal value noise, whose 1/f spectrum natural images share), stripes,
bricks, wood grain, paper fibre, brushed metal, sign panels with visible edges,
and blurred random shapes standing in for clutter; colours follow natural-image
statistics (mostly desaturated, warm browns, sky blues, foliage greens) or the
colour pairs of real signs. Beyond the sets above, the crop is made like a
photo's: the whole sign (text and background together) goes through one
perspective map, then uneven light (gradients, vignettes, a cast shadow, a
specular glare), white balance and gamma, Gaussian, motion and defocus blur, a
small sensor (down- then up-sampling), Gaussian and shot noise and JPEG, all at
the final resolution; the text is rendered at 1.6-2.6 times that resolution and
downsampled, so strokes are anti-aliased as a camera's are.

Each image is ``--height`` pixels high and as wide as its text (the crop's
aspect ratio), at most ``--width``: a longer word is squeezed to that width, as
the training loader's keep-ratio resize squeezes it. Every random choice of
image ``i`` comes from ``random.Random(f"{seed}:{i}")`` (see
:class:`~data_tools.synth.render.Renderer`).
"""

from __future__ import annotations

import math
import random
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from data_tools.synth.raster import (
    blur,
    column_shift,
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
    low_resolution,
    luminance,
    motion_blur,
    paste,
    shift,
    shot_noise,
    stamp,
    to_u8,
    translation,
    value_noise,
    warp,
    with_luminance,
)
from data_tools.synth.render import Rendered
from data_tools.synth.wordfonts import WordRenderer

# Named colours of real signs (hue in turns, saturation, value) and the pairs they come in.
_NAMED = {
    "white": (0.0, 0.0, 0.95), "black": (0.0, 0.0, 0.08), "red": (0.99, 0.85, 0.78),
    "blue": (0.6, 0.85, 0.6), "green": (0.37, 0.8, 0.45), "yellow": (0.14, 0.9, 0.95),
    "orange": (0.07, 0.9, 0.95), "brown": (0.06, 0.65, 0.35), "navy": (0.63, 0.75, 0.28),
    "grey": (0.0, 0.0, 0.5), "cream": (0.12, 0.18, 0.93), "gold": (0.12, 0.75, 0.82),
    "teal": (0.5, 0.7, 0.5), "maroon": (0.98, 0.75, 0.4),
}
_SIGN_PAIRS = (  # (text, background)
    ("white", "red"), ("white", "blue"), ("white", "green"), ("white", "black"),
    ("black", "yellow"), ("black", "white"), ("red", "white"), ("blue", "white"),
    ("yellow", "black"), ("white", "brown"), ("gold", "navy"), ("black", "orange"),
    ("white", "navy"), ("navy", "cream"), ("green", "white"), ("white", "grey"),
    ("maroon", "cream"), ("white", "teal"), ("black", "cream"), ("white", "maroon"),
)
_BACKGROUNDS = (  # kind, weight
    ("flat", 0.13), ("gradient", 0.1), ("plasma", 0.2), ("stripes", 0.06), ("bricks", 0.06),
    ("wood", 0.07), ("paper", 0.1), ("metal", 0.06), ("clutter", 0.12), ("panel", 0.1),
)
_BLURS = (("sharp", 0.4), ("defocus", 0.3), ("motion", 0.1), ("sensor", 0.14), ("both", 0.06))
_STYLES = (  # text style, weight
    ("plain", 0.56), ("border", 0.14), ("shadow", 0.14), ("extrude", 0.06), ("emboss", 0.05),
    ("border+shadow", 0.05),
)


def _weighted(rng: random.Random, table) -> str:
    return rng.choices([k for k, _ in table], weights=[w for _, w in table])[0]


def natural_colour(rng: random.Random) -> np.ndarray:
    """A colour with natural-image statistics: mostly desaturated, hues clustered
    on browns/beiges (wood, brick, skin), sky and glass blues and foliage greens."""
    r = rng.random()
    if r < 0.35:
        hue = rng.uniform(0.02, 0.14)
    elif r < 0.55:
        hue = rng.uniform(0.52, 0.68)
    elif r < 0.7:
        hue = rng.uniform(0.18, 0.42)
    else:
        hue = rng.random()
    return hsv(hue, rng.betavariate(1.3, 3.0), rng.betavariate(2.0, 1.5))


def _named(rng: random.Random, name: str) -> np.ndarray:
    h, s, v = _NAMED[name]
    return hsv(h + rng.uniform(-0.025, 0.025), min(1.0, s * rng.uniform(0.75, 1.1)),
               min(1.0, v * rng.uniform(0.8, 1.05)))


def _variant(rng: random.Random, colour: np.ndarray, amount: float) -> np.ndarray:
    """A second colour for a texture: ``colour`` mixed towards a natural colour."""
    return (colour + rng.uniform(0.15, amount) * (natural_colour(rng) - colour)).astype(np.float32)


def contrasting(rng: random.Random, background: float, contrast: float) -> np.ndarray:
    """A text colour whose luminance differs from ``background``'s by ``contrast``:
    mostly near-neutral (black, white, grey ink), sometimes vivid."""
    up, down = background + contrast, background - contrast
    if up <= 1.0 and down >= 0.0:
        target = up if rng.random() < (0.35 + 0.3 * (background < 0.5)) else down
    else:
        target = up if up <= 1.0 else max(0.0, down) if down >= 0.0 else (
            1.0 if background < 0.5 else 0.0)
    sat = rng.betavariate(1.0, 2.2) if rng.random() < 0.55 else rng.uniform(0.4, 1.0)
    return with_luminance(hsv(rng.random(), sat, 1.0), target)


# ----------------------------------------------------------------------------- backgrounds
def background(rng: random.Random, gen: np.random.Generator, h: int, w: int, base: np.ndarray,
               scale: float, word: tuple[int, int, int, int]) -> np.ndarray:
    """A procedural photo-like background ``[h, w, 3]`` around colour ``base``;
    ``scale`` (the font size) sets the size of its features, ``word`` is the text's box."""
    kind = _weighted(rng, _BACKGROUNDS)
    second = _variant(rng, base, 0.6)
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    if kind == "flat":
        bg = np.broadcast_to(base, (h, w, 3)) * (1 + 0.05 * value_noise(gen, h, w, h))[..., None]
    elif kind == "gradient":
        a = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(a) + yy * math.sin(a)
        t = (t - t.min()) / max(1e-3, float(np.ptp(t)))
        bg = base + t[..., None] * (second - base)
    elif kind == "plasma":
        n = fractal_noise(gen, h, w, scale * rng.uniform(0.3, 3.0), rng.randint(2, 5),
                          rng.uniform(0.4, 0.75))
        t = 1 / (1 + np.exp(-n * rng.uniform(0.6, 2.5)))
        bg = base + t[..., None] * (second - base)
        if rng.random() < 0.4:  # a third colour in the shadows
            third = _variant(rng, base, 0.8)
            u = np.clip(fractal_noise(gen, h, w, scale * rng.uniform(0.5, 2.0), 3) * 0.4, 0, 1)
            bg = bg + u[..., None] * (third - bg)
    elif kind == "stripes":
        period = scale * rng.uniform(0.25, 2.5)
        a = rng.choice((0.0, math.pi / 2, rng.uniform(0, math.pi)))
        s = np.sin(2 * math.pi * (xx * math.cos(a) + yy * math.sin(a)) / period + rng.random() * 6)
        t = (s > 0).astype(np.float32) if rng.random() < 0.5 else (s + 1) / 2
        second = base + rng.uniform(0.15, 0.5) * (second - base)  # stripes stay subdued
        bg = base + t[..., None] * (second - base)
    elif kind == "bricks":
        bg = _bricks(rng, gen, h, w, base, scale)
    elif kind == "wood":
        bg = _wood(rng, gen, h, w, scale)
    elif kind == "paper":
        light = with_luminance(base, max(float(luminance(base)), rng.uniform(0.6, 0.95)))
        grain = (fractal_noise(gen, h, w, rng.uniform(1.0, 3.0), 2, stretch=rng.uniform(2, 6))
                 * rng.uniform(0.01, 0.04)
                 + fractal_noise(gen, h, w, scale * rng.uniform(0.5, 2), 3) * rng.uniform(0, 0.05))
        bg = light + grain[..., None]
    elif kind == "metal":
        grey = with_luminance(hsv(rng.uniform(0.5, 0.65), rng.uniform(0, 0.15), 1.0),
                              rng.uniform(0.35, 0.85))
        streaks = fractal_noise(gen, h, w, rng.uniform(1.0, 2.5), 3, stretch=rng.uniform(15, 60))
        t = xx / max(1, w - 1) if rng.random() < 0.5 else yy / max(1, h - 1)
        shade = streaks * rng.uniform(0.02, 0.06) + (t - 0.5) * rng.uniform(-0.3, 0.3)
        bg = grey + shade[..., None]
    elif kind == "clutter":
        n = fractal_noise(gen, h, w, scale * rng.uniform(0.5, 2.0), 3)
        bg = base + np.clip(n * 0.3 + 0.5, 0, 1)[..., None] * (second - base)
        bg = shapes(rng, bg, rng.randint(4, 12), scale)
    else:  # a sign panel on a busier background: its edges show in loose crops
        outer = natural_colour(rng)
        n = fractal_noise(gen, h, w, scale * rng.uniform(0.5, 3), 3)
        bg = outer + np.clip(n * 0.3 + 0.5, 0, 1)[..., None] * (_variant(rng, outer, 0.7) - outer)
        x0, y0, x1, y1 = word
        m = [scale * rng.uniform(0.05, 0.9) for _ in range(4)]
        panel = np.zeros((h, w), dtype=np.float32)
        panel[max(0, int(y0 - m[1])):int(y1 + m[3]), max(0, int(x0 - m[0])):int(x1 + m[2])] = 1
        panel = blur(panel, rng.uniform(0.5, 2.0))
        face = base * (1 + 0.04 * value_noise(gen, h, w, scale))[..., None]
        bg = bg + panel[..., None] * (face - bg)
    bg = np.asarray(bg, dtype=np.float32)
    if kind not in ("clutter",) and rng.random() < 0.2:
        bg = shapes(rng, bg, rng.randint(1, 4), scale)
    return bg


def _bricks(rng, gen, h, w, base, scale) -> np.ndarray:
    bh = scale * rng.uniform(0.45, 1.6)
    bw = bh * rng.uniform(1.8, 3.2)
    mortar = max(1.0, bh * rng.uniform(0.06, 0.16))
    yy = np.arange(h, dtype=np.float32)[:, None] + rng.uniform(0, bh)
    xx = np.arange(w, dtype=np.float32)[None, :]
    row = np.floor(yy / bh).astype(np.int64)
    xo = xx + (row % 2) * bw / 2 + rng.uniform(0, bw)
    col = np.floor(xo / bw).astype(np.int64)
    table = gen.normal(0, rng.uniform(0.03, 0.12), size=(int(row.max()) + 1, int(col.max()) + 1))
    face = base * (1 + table[row, col] + 0.04 * value_noise(gen, h, w, 2.0))[..., None]
    joint = ((yy - row * bh) < mortar) | ((xo - col * bw) < mortar)
    mortar_colour = with_luminance(hsv(0.1, 0.1, 1), rng.uniform(0.3, 0.85))
    return np.where(joint[..., None], mortar_colour, face)


def _wood(rng, gen, h, w, scale) -> np.ndarray:
    light = hsv(rng.uniform(0.05, 0.11), rng.uniform(0.35, 0.7), rng.uniform(0.55, 0.9))
    dark = light * rng.uniform(0.45, 0.75)
    warp_ = fractal_noise(gen, h, w, scale * rng.uniform(1, 4), 3, stretch=rng.uniform(3, 8))
    along = np.arange(h, dtype=np.float32)[:, None]  # boards lie horizontally
    period = scale * rng.uniform(0.2, 1.0)
    rings = 0.5 + 0.5 * np.sin(2 * math.pi * (along / period + warp_ * rng.uniform(0.3, 1.2)))
    grain = fractal_noise(gen, h, w, 1.5, 2, stretch=20) * 0.04
    t = rings ** rng.uniform(0.6, 2.5)
    return dark + t[..., None] * (light - dark) + grain[..., None]


def shapes(rng: random.Random, bg: np.ndarray, count: int, scale: float) -> np.ndarray:
    """``bg`` with ``count`` blurred random shapes (ellipses, boxes, polygons, poles and
    wires) of natural colours: out-of-focus clutter of a street scene."""
    h, w = bg.shape[:2]
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(count):
        colour = tuple(int(c * 255) for c in natural_colour(rng)) + (rng.randint(90, 255),)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = scale * rng.uniform(0.2, 2.5)
        kind = rng.random()
        if kind < 0.35:
            draw.ellipse((cx - r, cy - r * rng.uniform(0.3, 1.5), cx + r, cy + r), fill=colour)
        elif kind < 0.65:
            draw.rectangle((cx - r, cy - r * rng.uniform(0.2, 1.5), cx + r * rng.uniform(0.3, 2),
                            cy + r), fill=colour)
        elif kind < 0.85:
            pts = [(cx + r * math.cos(a) * rng.uniform(0.4, 1.2),
                    cy + r * math.sin(a) * rng.uniform(0.4, 1.2))
                   for a in sorted(rng.uniform(0, 2 * math.pi) for _ in range(rng.randint(3, 6)))]
            draw.polygon(pts, fill=colour)
        else:
            a = rng.uniform(0, math.pi)
            d = max(w, h)
            draw.line((cx - d * math.cos(a), cy - d * math.sin(a), cx + d * math.cos(a),
                       cy + d * math.sin(a)), fill=colour,
                      width=max(1, int(scale * rng.uniform(0.03, 0.3))))
    layer = layer.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, max(0.6, scale * 0.4))))
    arr = from_u8(np.asarray(layer))
    a = arr[..., 3:4]
    return bg + a * (arr[..., :3] - bg)


# ----------------------------------------------------------------------------- the renderer
class SceneRenderer(WordRenderer):
    """Draws scene-text word crops (RGB, ``layout.height`` high, width following the text up
    to ``layout.width``); the contract is :class:`~data_tools.synth.render.Renderer`'s.

    Keyword options (the worker state's ``options``): ``traits`` (what each font
    draws and its family: see :class:`~data_tools.synth.wordfonts.FontTraits`; a word
    is drawn only with fonts that draw all of it) and ``neighbours`` (characters for
    the bits of neighbouring words at the crop's edges; default: the word's own).
    """

    domain = "scene"


    def render(self, index: int, rows: Sequence[str]) -> Rendered:
        rng = random.Random(f"{self.seed}:{index}")
        gen = generator(rng)
        text = rows[0]
        font = self.chooser.pick(rng, text)
        image = self._draw(rng, gen, font, text)
        return Rendered(image, None, None, self.fonts[font].name)

    # -- text -------------------------------------------------------------
    def _line(self, font: int, size: int, text: str, spacing: float, canvas: np.ndarray,
              x: float, y: float) -> None:
        """Stamp ``text`` into ``canvas`` with its ascender line at ``y``, from pen ``x``."""
        for ch in text:
            mask, left, top, adv = self.glyphs.glyph(font, size, ch)
            if mask is not None:
                stamp(canvas, mask, round(x) + left, round(y) + top)
            x += adv + spacing

    def _width(self, font: int, size: int, text: str, spacing: float) -> float:
        advances = sum(self.glyphs.glyph(font, size, ch)[3] for ch in text)
        return advances + spacing * max(0, len(text) - 1)

    def _draw(self, rng: random.Random, gen: np.random.Generator, font: int, text: str
              ) -> Image.Image:
        lay = self.layout
        ml, mt, mr, mb = crop_margins(rng)
        top_r, bottom_r = self.glyphs.ink_ratio(font, text)
        supersample = rng.uniform(1.6, 2.6)
        ink_final = lay.height / (1.0 + mt + mb)
        size = int(min(200, max(10, round(supersample * ink_final / max(0.2, bottom_r - top_r)))))
        size -= size % 2  # even sizes only: more glyph-cache hits
        if rng.random() < 0.1:
            spacing = size * rng.uniform(0.1, 0.45)  # letter-spaced lettering
        else:
            spacing = size * rng.uniform(-0.04, 0.07)

        # The word on a tight layer (room for a curved baseline), and its ink box.
        ascent, descent = self.glyphs.metrics(font, size)
        tpad = size // 2 + 2
        layer = np.zeros((ascent + descent + 2 * tpad,
                          int(self._width(font, size, text, spacing)) + 2 * tpad), dtype=np.uint8)
        self._line(font, size, text, spacing, layer, tpad, tpad)
        word = from_u8(layer)
        if len(text.replace(" ", "")) >= 4 and rng.random() < 0.12:  # shorter ones would bend
            word = _curve(rng, word, size)                             # inside a letter
        box = ink_box(word) or (tpad, tpad, layer.shape[1] - tpad, layer.shape[0] - tpad)

        # The camera: one perspective map for the whole sign, and the crop around the
        # word's warped box. Only the part of the sign the crop sees is drawn.
        forward = _camera(rng, box)
        crop, (sx0, sy0, sx1, sy1) = crop_around(forward, box, (ml, mt, mr, mb), 4 * size)
        h, w = sy1 - sy0, sx1 - sx0
        fill = np.zeros((h, w), dtype=np.float32)
        paste(fill, word, -sx0, -sy0)
        box = (box[0] - sx0, box[1] - sy0, box[2] - sx0, box[3] - sy0)
        others = self._neighbours(rng, font, size, spacing, text, box, (h, w), tpad - sy0)
        alpha = np.maximum(fill, others) if others is not None else fill

        bg, ink = self._paint(rng, gen, (h, w), size, box, text)
        out, style = self._style(rng, gen, bg, alpha, ink, size)

        cw, ch = max(2, round(crop[2] - crop[0])), max(2, round(crop[3] - crop[1]))
        out_w = max(max(4, lay.height // 4), min(lay.width, round(cw * lay.height / ch)))
        fill_colour = tuple(int(c) for c in to_u8(out.reshape(-1, 3).mean(axis=0)))
        resample = rng.choice((Image.Resampling.LANCZOS, Image.Resampling.BOX,
                               Image.Resampling.BILINEAR))
        to_crop = forward @ translation(sx0, sy0)
        photo = warp(Image.fromarray(to_u8(out)), to_crop, crop, (cw, ch), fill_colour)
        photo = photo.resize((out_w, lay.height), resample)
        image = _photograph(rng, gen, photo)
        if style != "emboss":  # a relief has no contrast of its own
            # SynthTIGER's visibility check, at the end: stacked light, blur and noise can
            # still erase a word; then the same crop goes through a gentler camera.
            mask = warp(Image.fromarray(to_u8(fill)), to_crop, crop, (cw, ch), 0)
            mask = from_u8(np.asarray(mask.resize((out_w, lay.height), Image.Resampling.BOX)))
            if not visible(image, mask):
                image = _photograph(rng, gen, photo, gentle=True)
        return image

    def _paint(self, rng, gen, shape: tuple[int, int], size: int, box, text: str
               ) -> tuple[np.ndarray, np.ndarray]:
        """The background and the text's colour: a sign's colour pair, or a natural
        background with a text colour of enough (but varying) contrast against what
        lies under the word; a busy texture there is calmed down to keep it legible."""
        if rng.random() < 0.3:
            ink_name, bg_name = rng.choice(_SIGN_PAIRS)
            if rng.random() < 0.5:
                ink_name, bg_name = bg_name, ink_name
            ink, base = _named(rng, ink_name), _named(rng, bg_name)
        else:
            ink, base = None, natural_colour(rng)
        bg = background(rng, gen, *shape, base, size, box)
        if rng.random() < 0.12:
            bg = self._midground(rng, bg, size, text)
        # the text's box on the background, clamped inside it (a box that starts past an
        # edge would leave nothing to measure)
        x0, y0 = min(max(0, box[0]), bg.shape[1] - 1), min(max(0, box[1]), bg.shape[0] - 1)
        under = bg[y0:max(box[3], y0 + 1), x0:max(box[2], x0 + 1)]
        lum = luminance(under)
        mean_lum = float(lum.mean())
        contrast = rng.uniform(0.3, 0.8) if rng.random() < 0.88 else rng.uniform(0.16, 0.3)
        if ink is None or abs(float(luminance(ink)) - mean_lum) < 0.15:
            ink = contrasting(rng, mean_lum, contrast)
        contrast = abs(float(luminance(ink)) - mean_lum)
        spread = float(lum.std())
        if spread > 0.3 * contrast:
            mean = under.reshape(-1, 3).mean(axis=0)
            bg = mean + (bg - mean) * (0.3 * contrast / spread)
        return bg, ink

    def _neighbours(self, rng, font, size, spacing, text, box, shape, line_y) -> np.ndarray | None:
        """Bits of neighbouring words at the crop's edges: the foot of a line above, the
        top of a line below, the end of a word beside (see raster.edge_slot)."""
        chars = self.neighbours or text.replace(" ", "") or "x"
        picks = [side for side, p in (("above", 0.22), ("below", 0.22), ("left", 0.12),
                                      ("right", 0.12)) if rng.random() < p]
        if not picks:
            return None
        canvas = np.zeros(shape, dtype=np.uint8)
        x0, x1 = box[0], box[2]
        for side in picks:
            word = "".join(rng.choice(chars) for _ in range(rng.randint(2, 9)))
            if not self.chooser.draws(font, word):
                continue
            top_r, bottom_r = self.glyphs.ink_ratio(font, word)
            edge = edge_slot(rng, side, box, (bottom_r - top_r) * size, shape, size)
            if edge is None:
                continue
            x, y = x0 + rng.uniform(-0.6, 0.5) * (x1 - x0), line_y
            if side == "above":
                y = edge - bottom_r * size
            elif side == "below":
                y = edge - top_r * size
            elif side == "left":
                x = edge - self._width(font, size, word, spacing)
            else:
                x = edge
            self._line(font, size, word, spacing, canvas, x, y)
        return from_u8(canvas)

    def _midground(self, rng, bg: np.ndarray, size: int, text: str) -> np.ndarray:
        """Out-of-focus lettering of another sign behind the word (SynthTIGER's
        "midground" text), in a colour close to the background's."""
        chars = self.neighbours or text.replace(" ", "") or "x"
        word = "".join(rng.choice(chars) for _ in range(rng.randint(3, 10)))
        if not self.chooser.candidates(word):
            return bg
        font = self.chooser.pick(rng, word)
        small = max(8, int(size * rng.uniform(0.4, 1.4)) // 2 * 2)
        h, w = bg.shape[:2]
        canvas = np.zeros((h, w), dtype=np.uint8)
        self._line(font, small, word, small * rng.uniform(-0.02, 0.1), canvas,
                   rng.uniform(-0.5 * w, 0.8 * w), rng.uniform(-small, h))
        alpha = blur(from_u8(canvas), rng.uniform(0.5, max(0.6, size * 0.08)))
        lum = float(luminance(bg.reshape(-1, 3).mean(axis=0)))
        colour = contrasting(rng, lum, rng.uniform(0.08, 0.25))
        return bg + (alpha * rng.uniform(0.5, 0.9))[..., None] * (colour - bg)

    def _style(self, rng, gen, bg: np.ndarray, alpha: np.ndarray, ink: np.ndarray,
               size: int) -> tuple[np.ndarray, str]:
        """Composite the text over ``bg``: shadow, extrusion, border, then the fill (or an
        embossed/engraved relief instead of a fill); and the style's name."""
        style = _weighted(rng, _STYLES)
        out = bg
        ink_lum = float(luminance(ink))
        if "shadow" in style:
            a = rng.uniform(0, 2 * math.pi)
            d = size * rng.uniform(0.03, 0.12)
            sh = shift(alpha, round(d * math.cos(a)), round(d * math.sin(a)))
            sh = blur(sh, size * rng.uniform(0.0, 0.1)) * rng.uniform(0.35, 0.85)
            shade = (ink * rng.uniform(0.0, 0.3) if ink_lum > 0.5 else np.zeros(3, np.float32))
            out = out + sh[..., None] * (shade - out)
        if style == "extrude":
            a = rng.uniform(0, 2 * math.pi)
            steps = max(1, int(size * rng.uniform(0.03, 0.12)))
            ext = np.zeros_like(alpha)
            for k in range(1, steps + 1):
                step = shift(alpha, round(k * math.cos(a)), round(k * math.sin(a)))
                np.maximum(ext, step, out=ext)
            side = ink * rng.uniform(0.3, 0.6) if ink_lum > 0.3 else with_luminance(
                ink, ink_lum + rng.uniform(0.2, 0.5))
            out = out + ext[..., None] * (side - out)
        if "border" in style:
            border = grow(alpha, size * rng.uniform(0.03, 0.11))
            edge = (contrasting(rng, ink_lum, rng.uniform(0.4, 0.8))
                    if rng.random() < 0.75 else natural_colour(rng))
            out = out + border[..., None] * (edge - out)
        if style == "emboss":
            height = blur(alpha, max(0.8, size * rng.uniform(0.02, 0.05)))
            gy, gx = np.gradient(height)
            light = rng.uniform(0, 2 * math.pi)
            relief = gx * math.cos(light) + gy * math.sin(light)
            relief *= rng.uniform(0.4, 0.75) / max(1e-3, float(np.abs(relief).max()))
            relief = relief if rng.random() < 0.5 else -relief  # embossed or engraved
            tint = alpha * rng.uniform(0.15, 0.5)
            out = out + tint[..., None] * (ink - out)
            return np.clip(out * (1 + np.clip(relief, -0.8, 0.8))[..., None], 0, 1), style
        colour = _fill(rng, gen, ink, alpha.shape)
        return out + alpha[..., None] * (colour - out), style


def crop_margins(rng: random.Random) -> tuple[float, float, float, float]:
    """Left, top, right and bottom margins of a crop, in units of the text's ink height:
    tight (30 %: a few pixels), usual (50 %) or loose (20 %: much of the sign shows)."""
    r = rng.random()
    if r < 0.3:
        return tuple(rng.uniform(0.0, 0.08) for _ in range(4))
    if r < 0.8:
        return (rng.uniform(0.03, 0.35), rng.uniform(0.04, 0.3), rng.uniform(0.03, 0.35),
                rng.uniform(0.04, 0.3))
    return (rng.uniform(0.15, 0.8), rng.uniform(0.2, 0.75), rng.uniform(0.15, 0.8),
            rng.uniform(0.2, 0.75))


def _fill(rng, gen, ink: np.ndarray, shape) -> np.ndarray:
    """The text's paint: solid, a gradient between two close colours, or mottled."""
    r = rng.random()
    if r < 0.8:
        return ink
    h, w = shape
    if r < 0.92:
        other = with_luminance(hsv(rng.random(), rng.uniform(0, 0.8), 1),
                               float(luminance(ink)) + rng.uniform(-0.15, 0.15))
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        return ink + t * (other - ink)
    return ink * (1 + 0.12 * value_noise(gen, h, w, rng.uniform(2, 10)))[..., None]


def _curve(rng: random.Random, alpha: np.ndarray, size: int) -> np.ndarray:
    """A curved baseline: an arc (up or down) or a gentle wave across the word."""
    box = ink_box(alpha)
    if box is None:
        return alpha
    x0, _, x1, _ = box
    xs = np.arange(alpha.shape[1], dtype=np.float32)
    t = np.clip((xs - (x0 + x1) / 2) / max(1.0, (x1 - x0) / 2), -1.0, 1.0)
    # The bend stays gentle against the word's length: a letter itself never bends much.
    reach = min(1.0, (x1 - x0) / (6.0 * size))
    if rng.random() < 0.75:
        dy = size * reach * rng.uniform(0.1, 0.45) * rng.choice((-1, 1)) * (t * t)
    else:
        dy = size * reach * rng.uniform(0.05, 0.18) * np.sin(
            math.pi * t * rng.uniform(1, 2) + rng.random() * 6)
    return column_shift(alpha, dy - dy.mean())


def _camera(rng: random.Random, box) -> np.ndarray:
    """A projective map of the sign: perspective, trapezoid, slant, rotation about the
    word's centre."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = x1 - x0, y1 - y0
    src = np.asarray([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], dtype=np.float64)
    dst = src.copy()
    if rng.random() < 0.35:  # seen from one side: one end of the word shorter
        k = rng.uniform(0.65, 1.0)
        end = 1 if rng.random() < 0.5 else 0
        ids = (1, 2) if end else (0, 3)
        for i in ids:
            dst[i, 1] = cy + (dst[i, 1] - cy) * k
        dst[:, 0] = cx + (dst[:, 0] - cx) * rng.uniform(0.85, 1.0)
    if rng.random() < 0.15:  # seen from above or below: top and bottom widths differ
        k = rng.uniform(0.75, 1.0)
        for i in ((0, 1) if rng.random() < 0.5 else (2, 3)):
            dst[i, 0] = cx + (dst[i, 0] - cx) * k
    if rng.random() < 0.15:  # slant (shear of the whole sign)
        s = rng.uniform(-0.35, 0.35) * h
        dst[0:2, 0] += s / 2
        dst[2:4, 0] -= s / 2
    r = rng.random()  # mostly level; a crop of a steeply rotated word is mostly background
    angle = (rng.gauss(0, 1.2) if r < 0.8 else rng.uniform(-8, 8) if r < 0.97
             else rng.uniform(-20, 20))
    a = math.radians(angle)
    rot = np.asarray([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    dst = (dst - (cx, cy)) @ rot.T + (cx, cy)
    if not np.isfinite(dst).all() or min(w, h) < 1:
        return np.eye(3)
    return homography(src, dst)


def visible(image: Image.Image, mask: np.ndarray, *, contrast: float = 0.09) -> bool:
    """Whether the word stands out in the final image: the luminance of its strokes'
    cores (``mask`` > 0.6) differs from the rest's (< 0.05) by at least ``contrast``
    and by more than the rest's own spread (texture, noise). A word without cores
    (thin strokes at a small size) or without background passes."""
    lum = luminance(from_u8(np.asarray(image)))
    core, rest = lum[mask > 0.6], lum[mask < 0.05]
    if core.size < 4 or rest.size < 4:
        return True
    diff = abs(float(np.median(core)) - float(np.median(rest)))
    return diff >= contrast and diff >= 0.8 * float(rest.std())


def _photograph(rng: random.Random, gen: np.random.Generator, photo: Image.Image, *,
                gentle: bool = False) -> Image.Image:
    """The camera and the light at the final resolution: uneven light, white balance and
    gamma, blur (Gaussian, motion), a small sensor, noise, JPEG. ``gentle``: a good
    camera in even light (for a word the first try erased)."""
    img = from_u8(np.asarray(photo))
    h, w = img.shape[:2]
    u = np.arange(w, dtype=np.float32)[None, :] / max(1, w - 1)
    v = np.arange(h, dtype=np.float32)[:, None] / max(1, h - 1)
    field = np.ones((h, w), dtype=np.float32)
    if rng.random() < 0.5:  # light falling across the sign
        a = rng.uniform(0, 2 * math.pi)
        field *= 1 + rng.uniform(-0.45, 0.45) * ((u - 0.5) * math.cos(a) + (v - 0.5) * math.sin(a))
    if rng.random() < 0.25:  # vignette
        field *= 1 - rng.uniform(0.1, 0.5) * ((u - 0.5) ** 2 + (v - 0.5) ** 2) * 2
    if not gentle and rng.random() < 0.1:  # a cast shadow with a soft edge
        a = rng.uniform(0, 2 * math.pi)
        d = (u - rng.random()) * math.cos(a) + (v - rng.random()) * math.sin(a)
        field *= 1 - rng.uniform(0.25, 0.55) / (1 + np.exp(-d * rng.uniform(8, 40)))
    img = img * field[..., None]
    if not gentle and rng.random() < 0.06:  # specular glare
        cx, cy, s = rng.random(), rng.random(), rng.uniform(0.15, 0.6)
        glare = np.exp(-(((u - cx) * w / h) ** 2 + (v - cy) ** 2) / (2 * s * s))
        img = img + rng.uniform(0.2, 0.55) * glare[..., None] * (1 - img)
    if rng.random() < 0.4:  # white balance
        img = img * np.asarray([rng.uniform(0.85, 1.15) for _ in range(3)], dtype=np.float32)
    if rng.random() < 0.35:
        img = np.clip(img, 0, 1) ** rng.uniform(0.7, 1.4)
    if not gentle and rng.random() < 0.3:  # contrast and brightness
        img = (img - 0.5) * rng.uniform(0.7, 1.15) + 0.5 + rng.uniform(-0.08, 0.08)
    if not gentle and rng.random() < 0.07:  # faded or grey
        grey = luminance(img)[..., None]
        img = img + rng.uniform(0.5, 1.0) * (grey - img)
    img = np.clip(img, 0, 1)
    # One kind of unsharpness per photo: stacked, a defocus and a small sensor erase a
    # 32-pixel word entirely.
    kind = "defocus" if gentle else _weighted(rng, _BLURS)
    if kind == "motion":
        angle = rng.gauss(0, 8) if rng.random() < 0.6 else rng.uniform(0, 180)
        img = motion_blur(img, rng.uniform(1.5, 3.5), angle)
    out = Image.fromarray(to_u8(img))
    if kind in ("defocus", "both"):
        out = out.filter(ImageFilter.GaussianBlur(
            rng.uniform(0.3, 1.0 if not gentle else 0.5) if kind == "defocus"
            else rng.uniform(0.25, 0.5)))
    if kind in ("sensor", "both"):
        out = low_resolution(out, rng.uniform(1.3, 2.4) if kind == "sensor"
                             else rng.uniform(1.2, 1.6), rng)
    img = from_u8(np.asarray(out))
    if rng.random() < 0.55:
        img = gaussian_noise(img, gen, rng.uniform(0.005, 0.045 if not gentle else 0.015),
                             colour=rng.random() < 0.5)
    if not gentle and rng.random() < 0.15:
        img = shot_noise(img, gen, rng.uniform(40, 400))
    out = Image.fromarray(to_u8(img))
    if rng.random() < 0.45:
        out = jpeg(out, rng.randint(15 if not gentle else 50, 85))
    return out
