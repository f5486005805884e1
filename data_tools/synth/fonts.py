"""Font discovery and glyph coverage checked by rendering.

Discovery order (first that yields fonts wins):

1. fonts the user names (``--font PATH[:INDEX]``, ``--font-dir DIR``);
2. system fonts that draw the corpus's most frequent characters (``fc-list`` when
   present, else the usual font folders of Linux, macOS and Windows);
3. fonts from pip packages installed with ``pip install "ocrkit[fonts]"``, so a
   fresh machine needs no apt: three visually different designs (see
   ``PIP_FONT_PACKAGES``). No Kai (regular script) or handwriting-like Chinese
   font could be found on PyPI under a free licence.

Coverage is decided by *rendering* each character (a cmap entry is not enough:
some fonts map characters to blank glyphs, and a missing glyph renders as the
font's ``.notdef`` box, the "tofu" that must never reach a training image).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from PIL import ImageFont

from ocrkit.errors import UsageError

FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")

# pip packages that carry CJK fonts: (import name, file inside the package, design).
# Pinned in setup.py's "fonts" extra. Noto Sans CJK (OFL); Noto Serif SC, a Song/Ming
# design (OFL, repackaged by pylopdf-fonts-zh-cn, which also ships Noto Sans SC: the
# same design as the first, so unused); WenQuanYi Micro Hei, a sans of another design
# derived from Droid Sans Fallback (Apache-2.0, repackaged by paperang-p2-fonts-cjk).
PIP_FONT_PACKAGES = (
    ("noto_cjk_sans_otc", "NotoSansCJK-Regular.ttc", "sans"),
    ("paperang_p2_fonts_cjk", "fonts/wqy-microhei.ttc", "sans-wqy"),
    ("pylopdf_fonts_zh_cn", "NotoSerifSC-Regular.otf", "serif"),
)

# Face-name hints used to prefer the Simplified-Chinese face of a collection.
_SC_HINTS = (" SC", " CN", "GB", "Simplified", "SimSun", "SimHei", "Hei SC")

_SYSTEM_FONT_DIRS = (
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "~/.fonts",
    "~/.local/share/fonts",
    "/System/Library/Fonts",
    "/Library/Fonts",
    "~/Library/Fonts",
    "C:/Windows/Fonts",
)

# Size used for coverage checks: large enough that every real glyph has ink.
_PROBE_SIZE = 32
# A code point no font maps: renders the font's .notdef glyph.
_NOTDEF_PROBE = "\uffff"


@dataclass(frozen=True)
class FontSpec:
    """One face of one font file."""

    path: str
    index: int = 0
    name: str = ""

    def load(self, size: int) -> ImageFont.FreeTypeFont:
        """Open the face at ``size`` pixels with Pillow's basic (fast) layout."""
        return ImageFont.truetype(
            self.path, size, index=self.index, layout_engine=ImageFont.Layout.BASIC
        )

    @property
    def label(self) -> str:
        base = os.path.basename(self.path)
        suffix = f":{self.index}" if self.path.lower().endswith((".ttc", ".otc")) else ""
        return f"{self.name or base} ({base}{suffix})"


def faces(path: str) -> list[FontSpec]:
    """All faces of a font file (one for .ttf/.otf, several for a collection)."""
    specs: list[FontSpec] = []
    for index in range(64):
        try:
            font = ImageFont.truetype(path, 16, index=index)
        except OSError:
            break
        family, style = font.getname()
        specs.append(FontSpec(path, index, f"{family} {style}".strip()))
        if not path.lower().endswith((".ttc", ".otc")):
            break
    return specs


def preferred_face(path: str) -> FontSpec | None:
    """The face of a font file to use for Chinese: the SC face of a collection."""
    all_faces = faces(path)
    if not all_faces:
        return None
    plain = [f for f in all_faces if "mono" not in f.name.lower()] or all_faces
    for face in plain:
        if any(h in face.name for h in _SC_HINTS):
            return face
    return plain[0]


def parse_font_arg(arg: str) -> FontSpec:
    """``PATH`` or ``PATH:INDEX`` (face index inside a .ttc collection)."""
    path, index = arg, None
    head, sep, tail = arg.rpartition(":")
    if sep and tail.isdigit() and head:
        path, index = head, int(tail)
    if not os.path.isfile(path):
        raise UsageError(f"--font {arg}: no such file")
    if index is None:
        spec = preferred_face(path)
        if spec is None:
            raise UsageError(f"--font {arg}: not a font Pillow/FreeType can open")
        return spec
    try:
        font = ImageFont.truetype(path, 16, index=index)
    except OSError:
        raise UsageError(f"--font {arg}: face index {index} does not exist in {path}") from None
    family, style = font.getname()
    return FontSpec(path, index, f"{family} {style}".strip())


def fonts_in_dir(directory: str) -> list[FontSpec]:
    """The preferred face of every font file below ``directory`` (sorted by path)."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise UsageError(f"--font-dir {directory}: not a directory")
    specs = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in FONT_SUFFIXES):
        spec = preferred_face(str(path))
        if spec is not None:
            specs.append(spec)
    return specs


def pip_font_files(designs: bool = False) -> list:
    """Font files carried by installed pip font packages (``ocrkit[fonts]``); with
    ``designs``, ``(path, design)`` pairs."""
    found = []
    for module, filename, design in PIP_FONT_PACKAGES:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            continue
        for location in spec.submodule_search_locations:
            candidate = os.path.join(location, filename)
            if os.path.isfile(candidate):
                found.append((candidate, design) if designs else candidate)
                break
    return found


def system_font_files(lang: str | None = None) -> list[str]:
    """Font files installed on this system (``fc-list`` or a folder scan), sorted.

    With ``lang`` (e.g. ``"zh"``) and fontconfig present, only fonts fontconfig
    says support that language, so discovery does not open every font installed.
    """
    files: set[str] = set()
    if shutil.which("fc-list"):
        try:
            pattern = [f":lang={lang}"] if lang else []
            out = subprocess.run(
                ["fc-list", *pattern, "--format", "%{file}\n"],
                capture_output=True, text=True, timeout=30, check=False,
            ).stdout
            files.update(line.strip() for line in out.splitlines() if line.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    if not files:
        for directory in _SYSTEM_FONT_DIRS:
            root = Path(directory).expanduser()
            if root.is_dir():
                files.update(str(p) for p in root.rglob("*") if p.suffix.lower() in FONT_SUFFIXES)
    return sorted(f for f in files if f.lower().endswith(FONT_SUFFIXES) and os.path.isfile(f))


# A face's answers, per process and shared by every checker of it: the embedded corpus
# asks about each of the dictionary's characters, and the demo and the benches
# synthesise several sets in one process (each used to render them all again).
_COVERAGE: dict[tuple, dict[str, bool]] = {}


def _coverage_key(spec: FontSpec) -> tuple:
    """The face, and its file's size and time (a font replaced on disk is asked again)."""
    try:
        st = os.stat(spec.path)
        return os.path.abspath(spec.path), spec.index, st.st_size, st.st_mtime_ns
    except OSError:
        return os.path.abspath(spec.path), spec.index


class GlyphChecker:
    """Decides by rendering whether a face draws a character (never tofu)."""

    def __init__(self, spec: FontSpec) -> None:
        self.spec = spec
        self.font = spec.load(_PROBE_SIZE)
        self._notdef = self._render(_NOTDEF_PROBE)
        self._cache = _COVERAGE.setdefault(_coverage_key(spec), {})

    def _render(self, ch: str) -> tuple:
        mask = self.font.getmask(ch, mode="L")
        return mask.getbbox(), mask.size, bytes(mask)

    def draws(self, ch: str) -> bool:
        """True if ``ch`` renders with ink and is not the .notdef glyph."""
        hit = self._cache.get(ch)
        if hit is None:
            bbox, size, data = self._render(ch)
            hit = bbox is not None and (bbox, size, data) != self._notdef
            self._cache[ch] = hit
        return hit

    def missing(self, chars: Iterable[str]) -> list[str]:
        """The characters of ``chars`` this face cannot draw, in input order."""
        return [ch for ch in chars if not self.draws(ch)]


def _covering(paths: Sequence[str], probe: str, *, prefer_sc: bool) -> list[FontSpec]:
    specs = []
    for path in paths:
        spec = preferred_face(path) if prefer_sc else (faces(path) or [None])[0]
        if spec is None:
            continue
        try:
            if not GlyphChecker(spec).missing(probe):
                specs.append(spec)
        except OSError:
            continue
    return specs


def discover(
    explicit: Sequence[str] = (),
    font_dirs: Sequence[str] = (),
    *,
    probe: str = "的一是在不了有和人这中大为上个国我以要他",
    system: bool = True,
) -> tuple[list[FontSpec], str]:
    """Fonts to render with, and where they came from.

    Args:
        explicit: ``--font`` arguments (``PATH`` or ``PATH:INDEX``).
        font_dirs: ``--font-dir`` folders.
        probe: characters a discovered font must draw (the corpus's most
            frequent ones); explicit fonts are never filtered here.
        system: look at system fonts before pip-installed ones.

    Raises:
        UsageError: no usable font anywhere, with what to do about it.
    """
    if explicit or font_dirs:
        specs = [parse_font_arg(a) for a in explicit]
        for directory in font_dirs:
            found = fonts_in_dir(directory)
            if not found:
                raise UsageError(f"--font-dir {directory}: no .ttf/.otf/.ttc fonts inside")
            specs.extend(found)
        return _dedupe(specs), "command line"
    cjk = any(ord(ch) >= 0x2E80 for ch in probe)
    if system:
        specs = _covering(system_font_files("zh" if cjk else None), probe, prefer_sc=cjk)
        if specs:
            return _dedupe(specs), "system"
    specs = _covering(pip_font_files(), probe, prefer_sc=cjk)
    if specs:
        return specs, "pip package"
    raise UsageError(
        "no usable font: none found that draws "
        f"{probe[:8]!r}...; pass --font PATH, or install the CJK fonts with "
        "pip install 'ocrkit[fonts]'"
    )


def _dedupe(specs: Sequence[FontSpec]) -> list[FontSpec]:
    seen, out = set(), []
    for spec in specs:
        key = (os.path.realpath(spec.path), spec.index)
        if key not in seen:
            seen.add(key)
            out.append(spec)
    return out


def describe(specs: Sequence[FontSpec]) -> str:
    return ", ".join(s.label for s in specs)

