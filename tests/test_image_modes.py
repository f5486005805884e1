"""One text line saved in every image mode reads as the same pixels (data_tools.images).

Before: 16-bit PNGs and 32-bit TIFFs decoded to all white and transparent PNGs to
all black, so `infer` answered "" with confidence 0.99.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from data_tools.images import ImageError, decode_image, open_image


@pytest.fixture(scope="module")
def line(cjk_font) -> np.ndarray:
    """A greyscale text line: dark ink on light paper, with anti-aliased edges."""
    from PIL import ImageDraw, ImageFont

    im = Image.new("L", (160, 32), 235)
    ImageDraw.Draw(im).text((4, 2), "天地玄黄宇宙", font=ImageFont.truetype(cjk_font, 24), fill=20)
    arr = np.asarray(im)
    assert arr.min() < 40 and arr.max() > 200 and len(np.unique(arr)) > 20
    return arr


def encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def variants(a: np.ndarray) -> dict[str, tuple[Image.Image, str]]:
    L = Image.fromarray(a, "L")
    alpha_ink = np.zeros((*a.shape, 4), np.uint8)
    alpha_ink[..., 3] = 255 - a  # black ink whose opacity draws the text, paper transparent
    transparent_white = np.dstack([a, a, a, np.full_like(a, 255)])
    transparent_white[a > 230] = (0, 0, 0, 0)  # paper cut out: hidden pixels are black
    return {
        "L": (L, "PNG"),
        "LA": (Image.merge("LA", (L, Image.new("L", L.size, 255))), "PNG"),
        "RGB": (L.convert("RGB"), "PNG"),
        "RGBA opaque": (L.convert("RGBA"), "PNG"),
        "RGBA transparent ink": (Image.fromarray(alpha_ink, "RGBA"), "PNG"),
        "RGBA transparent paper": (Image.fromarray(transparent_white, "RGBA"), "PNG"),
        "P": (L.convert("RGB").quantize(256), "PNG"),
        "CMYK": (L.convert("RGB").convert("CMYK"), "TIFF"),
        "I;16": (Image.fromarray(a.astype(np.uint16) * 257), "PNG"),
        "I;16 TIFF": (Image.fromarray(a.astype(np.uint16) * 257), "TIFF"),
        "I 32-bit": (Image.fromarray(a.astype(np.int32) * 257), "TIFF"),
        "F 0..1": (Image.fromarray(a.astype(np.float32) / 255), "TIFF"),
        "F 0..255": (Image.fromarray(a.astype(np.float32)), "TIFF"),
    }


@pytest.mark.parametrize("mode", list(variants(np.zeros((2, 2), np.uint8))))
def test_every_mode_gives_the_same_pixels(line, mode):
    im, fmt = variants(line)[mode]
    got = np.asarray(decode_image(encode(im, fmt))).astype(int)
    expected = line.astype(int)
    if mode == "RGBA transparent paper":
        expected = np.where(line > 230, 255, expected)  # the cut-out paper is white
    assert got.shape == line.shape
    assert np.abs(got - expected).max() <= 1, mode


def test_one_bit_images_keep_their_two_levels(line):
    binary = Image.fromarray(line).point(lambda v: 255 if v > 128 else 0).convert("1")
    got = np.asarray(decode_image(encode(binary, "PNG")))
    assert set(np.unique(got)) == {0, 255}
    assert np.array_equal(got == 0, line <= 128)


def test_rgb_requests_keep_colour_and_composite_alpha(line):
    rgba = np.zeros((*line.shape, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = np.where(line > 230, 0, 255 - line)  # paper fully transparent
    got = np.asarray(decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), "RGB"))
    assert got.shape == (*line.shape, 3)
    paper = line > 230
    assert (got[paper] >= 250).all()  # transparent paper is white
    ink = line < 40
    assert (got[ink][:, 0] > got[ink][:, 1]).all()  # red ink stays red


def test_exif_orientation_is_applied(line):
    im = Image.fromarray(line).rotate(90, expand=True)  # stored sideways ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with "rotate 90 degrees clockwise to display"
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", exif=exif, quality=95)
    got = decode_image(buf.getvalue())
    assert got.size == (line.shape[1], line.shape[0])
    assert np.abs(np.asarray(got).astype(int) - line.astype(int)).mean() < 4


@pytest.mark.parametrize("cut, reason", [(0, "not an image"), (None, "not an image"),
                                         (0.5, "truncated")])
def test_bad_bytes_give_a_short_reason(line, cut, reason):
    png = encode(Image.fromarray(line), "PNG")
    data = b"not an image at all" if cut is None else png[:int(len(png) * cut)]
    with pytest.raises(ImageError, match=reason) as info:
        decode_image(data)
    assert "0x" not in str(info.value) and "<" not in str(info.value)


def test_open_image_reports_instead_of_raising(tmp_path):
    assert open_image(str(tmp_path / "missing.png")) == (None, "no such file")
    assert open_image(str(tmp_path)) == (None, "is a folder, not an image")


def test_datasets_and_build_lmdb_use_the_same_decoding(cli, line, tmp_path):
    """The same bytes through a labelled folder and through its LMDB read alike."""
    from ocrkit.data import open_dataset

    folder = tmp_path / "modes"
    (folder / "images").mkdir(parents=True)
    names = []
    for k, (name, (im, fmt)) in enumerate(variants(line).items()):
        file = f"images/{k}.{'tif' if fmt == 'TIFF' else 'png'}"
        (folder / file).write_bytes(encode(im, fmt))
        names.append(file)
    (folder / "gt.txt").write_text("".join(f"{n}\t天地玄黄宇宙\n" for n in names), encoding="utf-8")
    res = cli("build-lmdb", folder, tmp_path / "modes.lmdb", "-q")
    assert res.exit_code == 0 and json.loads(res.stdout)["num_samples"] == len(names)
    for data in (open_dataset(str(folder)), open_dataset(str(tmp_path / "modes.lmdb"))):
        pixels = [np.asarray(data[i].image).astype(int) for i in range(len(data))]
        for name, got in zip(variants(line), pixels):
            if name != "RGBA transparent paper":
                assert np.abs(got - line.astype(int)).max() <= 1, name
