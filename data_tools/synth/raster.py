"""Raster helpers shared by the scene and handwriting renderers.

Everything works on small numpy arrays (a word crop is a few hundred pixels wide
at the render scale) or hands the work to Pillow where Pillow does it in C:
Gaussian blur and max/min filters on 8-bit images, resampling, perspective
warps, JPEG. Images are float32 in [0, 1] (``[h, w]`` alpha or grey, ``[h, w, 3]``
RGB) unless a function says otherwise.

:class:`Glyphs` is the per-process glyph cache: each (font, size, character) is
rasterised once with Pillow's basic layout and kept as a coverage array with its
offsets and advance. It is bounded (a scene run draws many fonts at many sizes)
and simply starts again when full: the hit rate of a word renderer comes from
the common letters, which are back in the cache within a few images.
"""

from __future__ import annotations

import io
import math
import random
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from data_tools.synth.fonts import FontSpec

Glyph = tuple[np.ndarray | None, int, int, float]  # coverage (None: blank), left, top, advance


class Glyphs:
    """Bounded cache of rasterised glyphs and opened faces for one process."""

    def __init__(self, fonts: Sequence[FontSpec], limit: int = 40000) -> None:
        self.fonts = list(fonts)
        self.limit = limit
        self._faces: dict[tuple[int, int], ImageFont.FreeTypeFont] = {}
        self._glyphs: dict[tuple[int, int, str], Glyph] = {}

    def face(self, font: int, size: int) -> ImageFont.FreeTypeFont:
        key = (font, size)
        face = self._faces.get(key)
        if face is None:
            if len(self._faces) > 2000:
                self._faces.clear()
            face = self._faces[key] = self.fonts[font].load(size)
        return face

    def glyph(self, font: int, size: int, ch: str) -> Glyph:
        """Coverage (uint8) of ``ch``, its offset from the pen position (left, top: the
        top measured from the ascender line) and its advance."""
        key = (font, size, ch)
        hit = self._glyphs.get(key)
        if hit is None:
            if len(self._glyphs) >= self.limit:
                self._glyphs.clear()
            face = self.face(font, size)
            left, top, right, bottom = face.getbbox(ch)
            mask = None
            if right > left and bottom > top:
                im = Image.new("L", (right - left, bottom - top), 0)
                ImageDraw.Draw(im).text((-left, -top), ch, fill=255, font=face)
                mask = np.asarray(im)
            hit = self._glyphs[key] = (mask, left, top, face.getlength(ch))
        return hit

    def metrics(self, font: int, size: int) -> tuple[int, int]:
        """(ascent, descent) of a face at ``size``."""
        return self.face(font, size).getmetrics()

    def ink_ratio(self, font: int, text: str, probe: int = 64) -> tuple[float, float]:
        """Top and bottom of ``text``'s ink relative to the ascender line, as fractions
        of the font size (measured once per character at a probe size)."""
        tops, bottoms = [], []
        for ch in text:
            mask, _, top, _ = self.glyph(font, probe, ch)
            if mask is not None:
                tops.append(top)
                bottoms.append(top + mask.shape[0])
        if not tops:
            return 0.2, 0.9
        return min(tops) / probe, max(bottoms) / probe


def stamp(canvas: np.ndarray, glyph: np.ndarray, x: int, y: int) -> None:
    """Max-composite a coverage array into ``canvas`` (same dtype) at (x, y), clipped."""
    h, w = glyph.shape
    H, W = canvas.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, W), min(y + h, H)
    if x1 <= x0 or y1 <= y0:
        return
    region = canvas[y0:y1, x0:x1]
    np.maximum(region, glyph[y0 - y:y1 - y, x0 - x:x1 - x], out=region)


def paste(canvas: np.ndarray, layer: np.ndarray, x: int, y: int) -> None:
    """Copy ``layer`` into ``canvas`` with its top-left at (x, y), clipped."""
    h, w = layer.shape[:2]
    H, W = canvas.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = layer[y0 - y:y1 - y, x0 - x:x1 - x]


def ink_box(alpha: np.ndarray, threshold: float = 0.1) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the pixels above ``threshold`` (exclusive ends), or None."""
    mask = alpha > threshold
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


# ----------------------------------------------------------------------------- conversions
def to_u8(arr: np.ndarray) -> np.ndarray:
    return np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)


def from_u8(arr: np.ndarray) -> np.ndarray:
    return arr.astype(np.float32) * (1.0 / 255.0)


def blur(arr: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur of a float image in [0, 1] (through Pillow's 8-bit filter)."""
    if radius < 0.15:
        return arr
    return from_u8(np.asarray(Image.fromarray(to_u8(arr)).filter(ImageFilter.GaussianBlur(radius))))


def grow(alpha: np.ndarray, pixels: float) -> np.ndarray:
    """Dilate (``pixels`` > 0) or erode (< 0) a coverage map by about ``|pixels|``:
    a blur and a shifted threshold, so the result stays anti-aliased and round."""
    if abs(pixels) < 0.2:
        return alpha
    soft = blur(alpha, max(0.6, abs(pixels) * 0.8))
    # A blurred edge crosses 0.5 at the old edge; moving the threshold moves the edge.
    # The ramp around the threshold is narrow enough to keep 0 at 0 and 1 at 1.
    centre = 0.5 - 0.45 * math.tanh(pixels / 2.0)
    half = min(0.125, centre, 1.0 - centre)
    return np.clip((soft - centre) / (2 * half) + 0.5, 0.0, 1.0)


def shift(arr: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``arr`` moved by whole pixels, zero-filled."""
    out = np.zeros_like(arr)
    h, w = arr.shape[:2]
    if abs(dx) >= w or abs(dy) >= h:
        return out
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = arr[ys, xs]
    return out


def column_shift(arr: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Move each column ``x`` of ``arr`` down by ``dy[x]`` pixels (fractional: linear
    interpolation), zero-filled: a curved baseline."""
    h = arr.shape[0]
    lo = np.floor(dy).astype(np.int64)
    frac = (dy - lo).astype(np.float32)
    ys = np.arange(h)[:, None]
    src0 = ys - lo[None, :]
    src1 = src0 - 1
    cols = np.arange(arr.shape[1])[None, :]

    def take(src):
        valid = (src >= 0) & (src < h)
        return np.where(valid, arr[np.clip(src, 0, h - 1), cols], 0)

    return take(src0) * (1 - frac)[None, :] + take(src1) * frac[None, :]


def remap(arr: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """``out[y, x] = arr[y + dy, x + dx]`` with bilinear interpolation, zero outside:
    an elastic distortion when ``dx``, ``dy`` are smooth fields."""
    h, w = arr.shape
    ys = np.arange(h, dtype=np.float32)[:, None] + dy
    xs = np.arange(w, dtype=np.float32)[None, :] + dx
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    fy, fx = ys - y0, xs - x0
    pad = np.pad(arr, 1)  # index -1 and h/w land on the zero border

    def at(yi, xi):
        return pad[np.clip(yi + 1, 0, h + 1), np.clip(xi + 1, 0, w + 1)]

    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def affine_glyph(mask: np.ndarray, angle: float, shear: float, pivot: tuple[float, float]
                 ) -> tuple[np.ndarray, int, int]:
    """A glyph's coverage rotated by ``angle`` degrees and sheared by ``shear`` (x moves
    by ``-shear`` times the height above the pivot: positive leans right) about
    ``pivot``; returns the new coverage and where its top-left lies relative to the
    old top-left."""
    h, w = mask.shape
    a = math.radians(angle)
    cos, sin = math.cos(a), math.sin(a)
    px, py = pivot
    # Forward map about the pivot: shear then rotate.
    fwd = np.asarray([[cos, -sin], [sin, cos]]) @ np.asarray([[1.0, -shear], [0.0, 1.0]])
    corners = np.asarray([(0, 0), (w, 0), (w, h), (0, h)], dtype=np.float64) - (px, py)
    moved = corners @ fwd.T
    lo = np.floor(moved.min(axis=0)).astype(int)
    hi = np.ceil(moved.max(axis=0)).astype(int)
    size = (int(hi[0] - lo[0]) + 1, int(hi[1] - lo[1]) + 1)
    inv = np.linalg.inv(fwd)
    # Output pixel (u, v) is the point (u + lo) about the pivot, mapped back.
    off = inv @ lo.astype(np.float64)
    coeffs = (inv[0, 0], inv[0, 1], off[0] + px, inv[1, 0], inv[1, 1], off[1] + py)
    out = Image.fromarray(mask).transform(size, Image.Transform.AFFINE, coeffs,
                                          resample=Image.Resampling.BILINEAR)
    return np.asarray(out), int(round(px + lo[0])), int(round(py + lo[1]))


# ----------------------------------------------------------------------------- noise
def generator(rng: random.Random) -> np.random.Generator:
    """A numpy generator drawn from the sample's own ``random.Random``."""
    return np.random.Generator(np.random.PCG64(rng.getrandbits(64)))


def value_noise(gen: np.random.Generator, h: int, w: int, cell_y: float, cell_x: float | None = None
                ) -> np.ndarray:
    """Smooth noise (about unit variance): random values on a grid of ``cell`` pixels,
    interpolated bicubically (Pillow resizes float images in C)."""
    cell_x = max(0.5, cell_y if cell_x is None else cell_x)
    cell_y = max(0.5, cell_y)
    span_y, span_x = h / cell_y, w / cell_x  # the output covers this many grid cells
    grid = gen.standard_normal((int(span_y) + 4, int(span_x) + 4)).astype(np.float32)
    oy, ox = 1 + gen.random() * 1.0, 1 + gen.random() * 1.0
    # Resample just the covered part of the grid (``box``) straight to the output size.
    out = Image.fromarray(grid, "F").resize((w, h), Image.Resampling.BICUBIC,
                                            box=(ox, oy, ox + span_x, oy + span_y))
    return np.asarray(out, dtype=np.float32)


def fractal_noise(gen: np.random.Generator, h: int, w: int, cell: float, octaves: int = 4,
                  persistence: float = 0.55, stretch: float = 1.0) -> np.ndarray:
    """Sum of value-noise octaves (cell halving, amplitude times ``persistence``),
    normalised to zero mean and unit standard deviation: plasma / cloud texture.
    ``stretch`` > 1 elongates the features horizontally (fibres, brushed metal)."""
    total = np.zeros((h, w), dtype=np.float32)
    amp = 1.0
    for _ in range(octaves):
        if cell < 0.7:
            break
        total += amp * value_noise(gen, h, w, cell, cell * stretch)
        cell *= 0.5
        amp *= persistence
    std = float(total.std())
    return (total - total.mean()) / (std if std > 1e-6 else 1.0)


# ----------------------------------------------------------------------------- colour
LUMA = np.asarray([0.299, 0.587, 0.114], dtype=np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray | float:
    return rgb @ LUMA


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """RGB (float32, [0, 1]) of a hue in turns, saturation and value."""
    h = (h % 1.0) * 6.0
    i = int(h) % 6
    f = h - int(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.asarray([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i],
                      dtype=np.float32)


def with_luminance(rgb: np.ndarray, target: float) -> np.ndarray:
    """``rgb`` scaled (towards black, or mixed with white) to luminance ``target``."""
    lum = float(luminance(rgb))
    target = min(max(target, 0.0), 1.0)
    if lum <= 1e-4:
        return np.full(3, target, dtype=np.float32)
    if target <= lum:
        return (rgb * (target / lum)).astype(np.float32)
    # Mix with white: lum + k (1 - lum) = target.
    k = (target - lum) / max(1e-4, 1.0 - lum)
    return (rgb + k * (1.0 - rgb)).astype(np.float32)


# ----------------------------------------------------------------------------- geometry
def homography(src: Sequence[tuple[float, float]], dst: Sequence[tuple[float, float]]
               ) -> np.ndarray:
    """The 3x3 projective map taking the four ``src`` points to the four ``dst`` points."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    sol = np.linalg.solve(np.asarray(rows, dtype=np.float64), np.asarray(rhs, dtype=np.float64))
    return np.append(sol, 1.0).reshape(3, 3)


def apply_h(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Points ``[n, 2]`` through the projective map ``m``."""
    ph = np.c_[pts, np.ones(len(pts))] @ m.T
    return ph[:, :2] / ph[:, 2:3]


def warp(image: Image.Image, forward: np.ndarray, box: tuple[float, float, float, float],
         size: tuple[int, int], fill) -> Image.Image:
    """The region ``box`` (x0, y0, x1, y1, in warped coordinates) of ``image`` warped by
    ``forward``, sampled into ``size`` pixels (Pillow wants the inverse map)."""
    x0, y0, x1, y1 = box
    sx, sy = (x1 - x0) / size[0], (y1 - y0) / size[1]
    out_to_warped = np.asarray([[sx, 0, x0], [0, sy, y0], [0, 0, 1]], dtype=np.float64)
    inv = np.linalg.inv(forward) @ out_to_warped
    inv /= inv[2, 2]
    coeffs = tuple(inv.reshape(-1)[:8])
    return image.transform(size, Image.Transform.PERSPECTIVE, coeffs,
                           resample=Image.Resampling.BILINEAR, fillcolor=fill)


def crop_around(forward: np.ndarray, box: tuple[int, int, int, int],
                margins: tuple[float, float, float, float], limit: float
                ) -> tuple[tuple[float, float, float, float], tuple[int, int, int, int]]:
    """Where to crop a word whose ink ``box`` goes through the projective map
    ``forward``: the crop (x0, y0, x1, y1, in warped coordinates: the warped box plus
    ``margins`` - left, top, right, bottom - in units of the ink height), and the part
    of the unwarped layer it sees (whole pixels, at most ``limit`` beyond the box), so
    that only that part needs drawing."""
    x0, y0, x1, y1 = box
    corners = apply_h(forward, np.asarray([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], np.float64))
    (bx0, by0), (bx1, by1) = corners.min(axis=0), corners.max(axis=0)
    ml, mt, mr, mb = margins
    ink_h = y1 - y0
    crop = (bx0 - ml * ink_h, by0 - mt * ink_h, bx1 + mr * ink_h, by1 + mb * ink_h)
    seen = apply_h(np.linalg.inv(forward), np.asarray(
        [(crop[0], crop[1]), (crop[2], crop[1]), (crop[2], crop[3]), (crop[0], crop[3])]))
    sx0, sy0 = (int(math.floor(v)) - 2 for v in seen.min(axis=0))
    sx1, sy1 = (int(math.ceil(v)) + 2 for v in seen.max(axis=0))
    lim = int(limit)
    source = (max(sx0, x0 - lim), max(sy0, y0 - lim), min(sx1, x1 + lim), min(sy1, y1 + lim))
    return crop, source


def edge_slot(rng: random.Random, side: str, box: tuple[int, int, int, int], extent: float,
              shape: tuple[int, int], size: float) -> float | None:
    """Where a neighbouring line or word goes so that only its edge shows in the crop.

    The canvas (``shape``) is what the crop sees, the word's ink is ``box``; a
    neighbour ``extent`` pixels tall (above, below) shows 10-45 % of that, one beside
    a letter's width or less - never all of it, which would leave two readings for one
    label. Returns the neighbour's near ink edge (above: its bottom; below: its top;
    left: its right; right: its left), at least a small gap (a word space beside)
    from the word, or None when no part of it would show."""
    x0, y0, x1, y1 = box
    h, w = shape
    if side == "above":
        edge = min(y0 - 0.06 * size, rng.uniform(0.1, 0.45) * extent)
        return edge if edge > 0 else None
    if side == "below":
        edge = max(y1 + 0.06 * size, h - rng.uniform(0.1, 0.45) * extent)
        return edge if edge < h else None
    if side == "left":
        edge = min(x0 - 0.4 * size, rng.uniform(0.15, 0.6) * size)
        return edge if edge > 0 else None
    edge = max(x1 + 0.4 * size, w - rng.uniform(0.15, 0.6) * size)
    return edge if edge < w else None


def translation(dx: float, dy: float) -> np.ndarray:
    return np.asarray([[1, 0, dx], [0, 1, dy], [0, 0, 1]], dtype=np.float64)


# ----------------------------------------------------------------------------- camera / scanner
def motion_blur(img: np.ndarray, length: float, angle: float) -> np.ndarray:
    """Average of ``img`` shifted along a line of ``length`` pixels at ``angle`` degrees
    (sub-pixel steps through bilinear resampling is not worth it at these sizes)."""
    steps = max(2, int(round(length)) + 1)
    dx, dy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    acc = np.zeros_like(img, dtype=np.float32)
    for k in range(steps):
        t = k - (steps - 1) / 2
        acc += _edge_shift(img, int(round(t * dx)), int(round(t * dy)))
    return acc / steps


def _edge_shift(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``img`` moved by whole pixels with its border repeated (no dark seams)."""
    h, w = img.shape[:2]
    ys = np.clip(np.arange(h) - dy, 0, h - 1)
    xs = np.clip(np.arange(w) - dx, 0, w - 1)
    return img[ys][:, xs]


def low_resolution(img: Image.Image, factor: float, rng: random.Random) -> Image.Image:
    """Down to ``1/factor`` of the size and back: a small, far or cheap camera."""
    w, h = img.size
    small = img.resize((max(2, round(w / factor)), max(2, round(h / factor))),
                       rng.choice((Image.Resampling.BILINEAR, Image.Resampling.BOX)))
    return small.resize((w, h), rng.choice((Image.Resampling.BILINEAR, Image.Resampling.BICUBIC,
                                             Image.Resampling.NEAREST)))


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    """``img`` through a JPEG encode and decode in memory (block and ringing artefacts)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert(img.mode)


def gaussian_noise(img: np.ndarray, gen: np.random.Generator, sigma: float, *,
                   colour: bool = False) -> np.ndarray:
    """Additive Gaussian noise (``sigma`` in [0, 1] units), per channel or shared."""
    shape = img.shape if colour or img.ndim == 2 else img.shape[:2] + (1,)
    return img + gen.normal(0.0, sigma, size=shape).astype(np.float32)


def shot_noise(img: np.ndarray, gen: np.random.Generator, photons: float) -> np.ndarray:
    """Photon (Poisson-like) noise: variance proportional to the brightness, as a
    sensor's in dim light; ``photons`` is the count at full white."""
    std = np.sqrt(np.clip(img, 0.0, 1.0) / photons)
    return img + std * gen.standard_normal(img.shape).astype(np.float32)
