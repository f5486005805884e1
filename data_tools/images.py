"""The one way ocrkit turns image bytes into pixels (datasets, build-lmdb, infer, denoise,
export --verify, denoiser pairs).

Every mode Pillow opens becomes the same picture a person sees:

* 16-bit greyscale (``I;16``, ``I;16B``, ``I;16L``: 16-bit PNG and TIFF) is scaled
  by 255/65535, not clipped (clipping turns every pixel brighter than 1/256 white).
* 32-bit integer (``I``) and float (``F``) images carry no range in the file. The
  range is read off the data: the smallest of 1.0 (floats only), 255, 65535 and
  2^32-1 that holds the image's maximum is mapped to white. A 32-bit TIFF made
  from a 16-bit scan therefore reads like the scan.
* Transparency (``RGBA``, ``LA``, ``PA``, premultiplied ``RGBa``/``La``, palette or
  greyscale images with a transparent colour) is composited over **white**:
  transparent pixels are paper, not ink. Dropping alpha instead turns the usual
  "black text on transparent" PNG into a black rectangle.
* ``CMYK``, ``YCbCr``, ``HSV``, palette and 1-bit images go through RGB; ``LAB``
  keeps its lightness channel for greyscale.
* The EXIF orientation tag (phone photos) is applied, so a line photographed in
  portrait is read the way it was shot.
* Multi-frame files (GIF, TIFF) give their first frame.

Failures never escape as Python internals: :class:`ImageError` carries a short
reason (``not an image``, ``truncated image data``, ``too large: ...``) and
:func:`open_image` returns ``(None, reason)`` so callers can report one record
per bad input and go on.
"""

from __future__ import annotations

import io
import os
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Largest image accepted, in pixels (a page scanned at 600 dpi is about 35 M).
# Decoding is refused above it: a "decompression bomb" is a small file that would
# need gigabytes of memory. OCRKIT_MAX_IMAGE_PIXELS changes it.
MAX_PIXELS = int(os.environ.get("OCRKIT_MAX_IMAGE_PIXELS", 100_000_000))
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow refuses twice this itself; we refuse above it
MODES = ("L", "RGB")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_INTERNALS = re.compile(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>")


class ImageError(Exception):
    """An image that cannot be decoded; ``str(exc)`` is a short, user-facing reason."""


def decode_image(data: bytes, mode: str = "L") -> Image.Image:
    """Decode encoded image bytes into a fully loaded ``mode`` (``L`` or ``RGB``) image."""
    return _decode(io.BytesIO(data), mode)


def read_image(path: str, mode: str = "L") -> Image.Image:
    """Read and decode the image file ``path``; raises :class:`ImageError`."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except IsADirectoryError:
        raise ImageError("is a folder, not an image") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except OSError as exc:
        raise ImageError(f"cannot read ({exc.strerror or exc.__class__.__name__})") from None
    return decode_image(data, mode)


def open_image(path: str, mode: str = "L") -> tuple[Image.Image | None, str | None]:
    """``(image, None)``, or ``(None, reason)`` when ``path`` cannot be used."""
    try:
        return read_image(path, mode), None
    except ImageError as exc:
        return None, str(exc)


def _decode(stream, mode: str) -> Image.Image:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ImageError(f"too large: {w}x{h} pixels (limit {MAX_PIXELS:,}; "
                                     "set OCRKIT_MAX_IMAGE_PIXELS to raise it)")
                if w == 0 or h == 0:
                    raise ImageError(f"empty image ({w}x{h} pixels)")
                im.load()
                return to_mode(ImageOps.exif_transpose(im), mode)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise ImageError(f"too large: {size} (limit {MAX_PIXELS:,}; set "
                         "OCRKIT_MAX_IMAGE_PIXELS to raise it)") from None
    except UnidentifiedImageError:
        raise ImageError("not an image (unknown or unsupported format)") from None
    except MemoryError:
        raise ImageError("too large to decode in memory") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise anything on corrupt data
        raise ImageError(_reason(exc)) from None


def _reason(exc: BaseException) -> str:
    text = _INTERNALS.sub("", str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    if "truncated" in text.lower():
        return "truncated image data"
    text = text.strip(" :") or exc.__class__.__name__
    return f"corrupt image ({text[:100]})"


def _scaled_to_8bit(arr: np.ndarray, floats: bool) -> Image.Image:
    """A single-channel integer or float array mapped to 8-bit greyscale."""
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    top = float(arr.max()) if arr.size else 0.0
    for white in ((1.0,) if floats else ()) + (255.0, 65535.0, 4294967295.0):
        if top <= white:
            break
    else:
        white = top
    out = np.clip(np.rint(arr * (255.0 / white)), 0, 255).astype(np.uint8)
    return Image.fromarray(out, "L")


def to_mode(im: Image.Image, mode: str = "L") -> Image.Image:
    """Convert a decoded image of any Pillow mode to ``L`` or ``RGB`` (see module doc)."""
    src = im.mode
    if src.startswith("I;16"):
        arr = np.asarray(im).astype(np.float64)
        grey = Image.fromarray(np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8), "L")
        return grey if mode == "L" else grey.convert("RGB")
    if src in ("I", "F"):
        grey = _scaled_to_8bit(np.asarray(im), floats=src == "F")
        return grey if mode == "L" else grey.convert("RGB")
    if src == "LAB":
        if mode == "L":
            return im.getchannel(0)
        raise ImageError("LAB colour images are not supported; save it as RGB")
    if src == "P" or (src in ("L", "RGB") and "transparency" in im.info):
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        src = im.mode
    if src in _ALPHA_MODES:
        rgba = im.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(paper, rgba).convert("RGB")
        src = "RGB"
    if src == mode:
        return im
    if src not in ("L", "RGB"):
        im = im.convert("RGB")
    return im.convert(mode)
