"""Latin fonts for English scene text and handwriting: where they come from,
what they look like, and which characters each one draws.

Sources, both used (unlike Chinese discovery in fonts.py, where the first that
yields wins, a Latin renderer wants every design it can get):

1. pip packages of ``ocrkit[fonts]`` (``LATIN_FONT_PACKAGES``): 49 Google Fonts
   families repackaged unmodified by fontpkg, each wheel with a
   ``metadata.json`` naming its files, weights and axes. Licences: SIL OFL-1.1,
   Apache-2.0 for Permanent Marker, Roboto Slab, Satisfy and Yellowtail.
2. system fonts that fontconfig lists for English (or all fonts of the usual
   folders when fontconfig is absent), except CJK fonts: they draw Latin too,
   but as a borrowed second design. Their style is guessed from the face name.

A family gives several faces: regular, bold and black weights, italic, and a
condensed width where a variable font has a width axis (variable fonts are
*instanced* by ``LatinFont.load``, which sets their axes; a variable font left at
its default instance is often its thinnest weight). Each face records its roles
(``print`` for scene text, ``handwriting``), its style class, its weight and
whether it is caps-only (Bebas Neue, Bungee, Permanent Marker draw lowercase as
capitals, so they may only render labels without lowercase letters).

Coverage is checked by rendering (``GlyphChecker``): ``latin_fonts`` returns every
face of a role that draws ASCII letters and digits, each with the set of
requested characters it ``missing``; ``LatinFont.draws(text)`` and
``choose_font`` pick a face that draws a given label.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageFont

from data_tools.synth.english import EN_CHARSET
from data_tools.synth.fonts import FontSpec, GlyphChecker, faces, system_font_files
from ocrkit.errors import UsageError

ROLES = ("print", "handwriting")
STYLE_CLASSES = ("serif", "sans", "display", "condensed", "mono", "script", "handwriting")

_P, _H, _B = ("print",), ("handwriting",), ("print", "handwriting")
# pip module -> (style class, roles). Pinned in setup.py's "fonts" extra. Scripts
# that shops also paint on signs (Pacifico, Dancing Script, ...) serve both roles.
LATIN_FONT_PACKAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    # handwriting and script
    "fontpkg_caveat": ("handwriting", _H), "fontpkg_kalam": ("handwriting", _H),
    "fontpkg_indie_flower": ("handwriting", _H), "fontpkg_shadows_into_light": ("handwriting", _H),
    "fontpkg_zeyada": ("handwriting", _H), "fontpkg_delius": ("handwriting", _H),
    "fontpkg_permanent_marker": ("handwriting", _B), "fontpkg_dancing_script": ("script", _B),
    "fontpkg_pacifico": ("script", _B), "fontpkg_satisfy": ("script", _B),
    "fontpkg_yellowtail": ("script", _B), "fontpkg_great_vibes": ("script", _H),
    # sans
    "fontpkg_roboto": ("sans", _P), "fontpkg_open_sans": ("sans", _P),
    "fontpkg_source_sans_3": ("sans", _P), "fontpkg_ibm_plex_sans": ("sans", _P),
    "fontpkg_montserrat": ("sans", _P), "fontpkg_arimo": ("sans", _P),
    # condensed
    "fontpkg_roboto_condensed": ("condensed", _P), "fontpkg_oswald": ("condensed", _P),
    "fontpkg_barlow_condensed": ("condensed", _P), "fontpkg_fjalla_one": ("condensed", _P),
    "fontpkg_pt_sans_narrow": ("condensed", _P), "fontpkg_yanone_kaffeesatz": ("condensed", _P),
    "fontpkg_teko": ("condensed", _P),
    # serif and slab
    "fontpkg_libre_baskerville": ("serif", _P), "fontpkg_eb_garamond": ("serif", _P),
    "fontpkg_pt_serif": ("serif", _P), "fontpkg_bitter": ("serif", _P),
    "fontpkg_roboto_slab": ("serif", _P), "fontpkg_playfair_display": ("serif", _P),
    # display, bold and black
    "fontpkg_anton": ("display", _P), "fontpkg_archivo_black": ("display", _P),
    "fontpkg_alfa_slab_one": ("display", _P), "fontpkg_abril_fatface": ("display", _P),
    "fontpkg_titan_one": ("display", _P), "fontpkg_black_ops_one": ("display", _P),
    "fontpkg_bebas_neue": ("display", _P), "fontpkg_bungee": ("display", _P),
    "fontpkg_lobster": ("display", _P), "fontpkg_righteous": ("display", _P),
    "fontpkg_comfortaa": ("display", _P), "fontpkg_fredoka": ("display", _P),
    "fontpkg_press_start_2p": ("display", _P), "fontpkg_orbitron": ("display", _P),
    # monospace
    "fontpkg_roboto_mono": ("mono", _P), "fontpkg_ibm_plex_mono": ("mono", _P),
    "fontpkg_source_code_pro": ("mono", _P), "fontpkg_space_mono": ("mono", _P),
}

# Weights made from each family: regular, bold, black (when the family has them).
_WEIGHTS = (400, 700, 900)
# A variable font whose width axis reaches this (percent) also gives a condensed face.
_CONDENSED_WIDTH = 80.0
# Axis names as FreeType reports them -> OpenType tags.
_AXIS_TAGS = {"weight": "wght", "width": "wdth", "optical size": "opsz", "italic": "ital",
              "slant": "slnt"}
_WEIGHT_NAMES = {100: "Thin", 200: "ExtraLight", 300: "Light", 400: "Regular", 500: "Medium",
                 600: "SemiBold", 700: "Bold", 800: "ExtraBold", 900: "Black"}
# Every face must draw these; faces that do not are dropped, not reported.
BASIC_LATIN = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
# A common Han character: a system font that draws it is a CJK font.
_HAN_PROBE = "的"
# System font names that are not text faces for Latin words.
_NOT_TEXT = re.compile(r"math|symbol|emoji|dingbat|icon|awesome|wingding|braille|cjk|fallback",
                       re.IGNORECASE)


@dataclass(frozen=True)
class LatinFont(FontSpec):
    """One Latin face: a font file (and face index), an instance of a variable
    font (``axes``), and what the renderer needs to know about its look."""

    family: str = ""
    style_class: str = "sans"
    roles: tuple[str, ...] = ("print",)
    weight: int = 400
    italic: bool = False
    width: float = 100.0
    axes: tuple[tuple[str, float], ...] = ()   # (tag, value) set on variable fonts
    caps_only: bool = False
    licence: str = ""
    source: str = "pip"                         # "pip" or "system"
    missing: frozenset[str] = frozenset()       # asked-for characters it cannot draw
    drawn: frozenset[str] = frozenset()         # asked-for characters it draws

    def load(self, size: int) -> ImageFont.FreeTypeFont:
        """Open the face at ``size`` pixels, instanced at its weight and width."""
        font = super().load(size)
        if self.axes:
            wanted = dict(self.axes)
            values = []
            for axis in font.get_variation_axes():
                name = axis["name"]
                name = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
                tag = _AXIS_TAGS.get(name.strip().lower(), name)
                value = wanted.get(tag, axis["default"])
                values.append(float(min(max(value, axis["minimum"]), axis["maximum"])))
            font.set_variation_by_axes(values)
        return font

    @property
    def bold(self) -> bool:
        return self.weight >= 600

    def draws(self, text: str) -> bool:
        """True if this face renders ``text`` correctly: every character but
        whitespace is one ``latin_fonts`` checked and found drawn (a character
        it was not asked about counts as not drawn) and, for a caps-only face,
        no letter is lowercase."""
        if not self.drawn.issuperset(ch for ch in text if not ch.isspace()):
            return False
        return not (self.caps_only and any(ch.islower() for ch in text))


def _metadata(module: str) -> tuple[str, dict] | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "metadata.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                return root, json.load(fh)
    return None


def _axis_ranges(path: str) -> dict[str, tuple[float, float]]:
    """``{tag: (min, max)}`` of a variable font; {} for a static one."""
    try:
        axes = ImageFont.truetype(path, 16).get_variation_axes()
    except OSError:
        return {}
    out = {}
    for axis in axes:
        name = axis["name"]
        name = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
        out[_AXIS_TAGS.get(name.strip().lower(), name)] = (axis["minimum"], axis["maximum"])
    return out


def _face_name(family: str, weight: int, italic: bool, condensed: bool) -> str:
    parts = [family, "Condensed" if condensed else "", _WEIGHT_NAMES.get(weight, str(weight)),
             "Italic" if italic else ""]
    return " ".join(p for p in parts if p)


def _package_faces(module: str, style_class: str, roles: tuple[str, ...]) -> list[LatinFont]:
    """The faces made from one installed fontpkg package (none if not installed)."""
    found = _metadata(module)
    if found is None:
        return []
    root, meta = found
    family, licence = meta.get("family", module), meta.get("license", "")
    base = {"family": family, "style_class": style_class, "roles": roles, "licence": licence}
    out: list[LatinFont] = []
    for entry in meta.get("files", []):
        path = os.path.join(root, entry["path"])
        if not os.path.isfile(path):
            continue
        italic = entry.get("style") == "italic"
        if entry.get("variable"):
            ranges = _axis_ranges(path)
            lo, hi = ranges.get("wght", (400, 400))
            weights = [w for w in _WEIGHTS if lo <= w <= hi or (w == 400)]
            if italic:
                weights = weights[:1]
            for w in weights:
                value = min(max(w, lo), hi)
                out.append(LatinFont(path, 0, _face_name(family, w, italic, False), weight=w,
                                     italic=italic, axes=(("wght", value),), **base))
            wlo = ranges.get("wdth", (100, 100))[0]
            if not italic and wlo <= _CONDENSED_WIDTH:
                width = max(wlo, 75.0)
                out.append(LatinFont(path, 0, _face_name(family, 400, False, True), weight=400,
                                     width=width, axes=(("wght", 400), ("wdth", width)),
                                     **{**base, "style_class": "condensed"
                                        if style_class == "sans" else style_class}))
        else:
            weight = int(entry.get("weight") or 400)
            if weight in _WEIGHTS and (not italic or weight == 400):
                out.append(LatinFont(path, 0, _face_name(family, weight, italic, False),
                                     weight=weight, italic=italic, **base))
    if not any(f.weight == 400 and not f.italic for f in out):
        # A family without a 400 file (e.g. only Light/Bold): keep the nearest weight.
        statics = [e for e in meta.get("files", []) if e.get("style") != "italic"]
        if statics:
            entry = min(statics, key=lambda e: abs(int(e.get("weight") or 400) - 400))
            weight = int(entry.get("weight") or 400)
            out.append(LatinFont(os.path.join(root, entry["path"]), 0,
                                 _face_name(family, weight, False, False), weight=weight, **base))
    return out


def _guess_style(name: str) -> dict:
    """Style of a face from its name (system fonts, ``--font`` files)."""
    low = name.lower()
    if re.search(r"hand|script|comic|marker|brush|chalk|pen\b|cursive", low):
        style_class = "handwriting"
    elif re.search(r"mono|courier|code|console|typewriter", low):
        style_class = "mono"
    elif re.search(r"condensed|narrow|compressed", low):
        style_class = "condensed"
    elif re.search(r"serif", low) and "sans" not in low or re.search(
            r"times|georgia|garamond|roman|baskerville", low):
        style_class = "serif"
    else:
        style_class = "sans"
    weight = 400
    for pattern, value in ((r"thin|hairline", 100), (r"extra ?light|ultra ?light", 200),
                           (r"light", 300), (r"medium", 500), (r"semi ?bold|demi", 600),
                           (r"extra ?bold|ultra ?bold", 800), (r"black|heavy", 900),
                           (r"bold", 700)):
        if re.search(pattern, low):
            weight = value
            break
    return {"style_class": style_class, "weight": weight,
            "italic": bool(re.search(r"italic|oblique", low))}


def _system_faces() -> list[LatinFont]:
    """Latin text faces installed on this system, outside any pip package."""
    out = []
    for path in system_font_files("en"):
        for spec in faces(path):
            if _NOT_TEXT.search(spec.name) or _NOT_TEXT.search(os.path.basename(path)):
                continue
            try:
                if GlyphChecker(spec).draws(_HAN_PROBE):
                    continue  # a CJK font: its Latin is a borrowed second design
            except OSError:
                continue
            style = _guess_style(spec.name)
            roles = _B if style["style_class"] == "handwriting" else _P
            family = ImageFont.truetype(path, 16, index=spec.index).getname()[0] or spec.name
            out.append(LatinFont(spec.path, spec.index, spec.name, family=family, roles=roles,
                                 source="system", **style))
    return out


def caps_only(font: FontSpec) -> bool:
    """True if the face draws lowercase letters as (small) capitals.

    Compares the shapes of a, e, g, r with A, E, G, R, each glyph cropped to its
    ink and scaled to 24x24: near-identical shapes mean caps-only.
    """
    loaded = font.load(48)

    def shape(ch: str) -> np.ndarray | None:
        mask = loaded.getmask(ch, mode="L")
        img = Image.frombytes("L", mask.size, bytes(mask)) if mask.size[0] else None
        if img is None or img.getbbox() is None:
            return None
        return np.asarray(img.crop(img.getbbox()).resize((24, 24)), dtype=np.float32) / 255.0

    same = 0
    for low in "aegr":
        a, b = shape(low), shape(low.upper())
        if a is not None and b is not None and float(np.abs(a - b).mean()) < 0.12:
            same += 1
    return same >= 3


@functools.lru_cache(maxsize=1)
def _all_faces(system: bool) -> tuple[LatinFont, ...]:
    """Every usable Latin face (pip, then system), caps-only flagged; cached."""
    found: list[LatinFont] = []
    for module, (style_class, roles) in LATIN_FONT_PACKAGES.items():
        found.extend(_package_faces(module, style_class, roles))
    if system:
        found.extend(_system_faces())
    out = []
    for face in found:
        try:
            checker = _checker(face)
        except OSError:
            continue
        if checker.missing(BASIC_LATIN):
            continue
        out.append(replace(face, caps_only=caps_only(face)))
    return tuple(out)


_CHECKERS: dict[tuple, GlyphChecker] = {}


def _checker(face: LatinFont) -> GlyphChecker:
    """One renderer-based checker per face instance (file, index, axes), per process."""
    key = (face.path, face.index, face.axes)
    if key not in _CHECKERS:
        _CHECKERS[key] = GlyphChecker(face)
    return _CHECKERS[key]


def latin_fonts(role: str, chars: str | None = None, *, system: bool = True) -> list[LatinFont]:
    """All Latin faces for ``role``, each with the characters of ``chars`` it cannot draw.

    Args:
        role: ``"print"`` (scene text) or ``"handwriting"``.
        chars: characters to check (default ``EN_CHARSET``); whitespace is never
            missing. Faces that miss some are kept, with ``missing`` set:
            ``LatinFont.draws(label)`` or ``choose_font`` picks one for a label.
        system: add system fonts to the pip packages' faces.

    Raises:
        UsageError: unknown role, or no face at all for it (fonts not installed).
    """
    if role not in ROLES:
        raise UsageError(f"unknown font role {role!r}; choose from {', '.join(ROLES)}")
    wanted = sorted(set(EN_CHARSET if chars is None else chars) - {" ", "\t", "\n"})
    out = []
    for face in _all_faces(system):
        if role in face.roles:
            missing = frozenset(_checker(face).missing(wanted))
            out.append(replace(face, missing=missing, drawn=frozenset(wanted) - missing))
    if not out:
        raise UsageError(f"no Latin {role} font found; install them with "
                         "pip install 'ocrkit[fonts]', or pass --font PATH")
    return out


def choose_font(fonts: Sequence[LatinFont], rng: random.Random, text: str) -> LatinFont | None:
    """A face that draws ``text``: a family first (uniformly, so a family with many
    faces is not favoured), then one of its faces. None if no face draws it."""
    usable = [f for f in fonts if f.draws(text)]
    if not usable:
        return None
    families = sorted({f.family for f in usable})
    family = families[rng.randrange(len(families))]
    members = [f for f in usable if f.family == family]
    return members[rng.randrange(len(members))]


def font_style(spec: FontSpec) -> dict:
    """What a face looks like: family, class, weight, bold, italic, caps-only, ...

    A ``LatinFont`` says it from its record; any other ``FontSpec`` (a ``--font``
    file, a CJK font) is guessed from its face name.
    """
    if isinstance(spec, LatinFont):
        return {"family": spec.family, "class": spec.style_class, "bold": spec.bold,
                "weight": spec.weight, "italic": spec.italic, "width": spec.width,
                "caps_only": spec.caps_only, "roles": spec.roles, "source": spec.source,
                "licence": spec.licence}
    style = _guess_style(spec.name)
    return {"family": spec.name.split(" ")[0] if spec.name else os.path.basename(spec.path),
            "class": style["style_class"], "bold": style["weight"] >= 600,
            "weight": style["weight"], "italic": style["italic"], "width": 100.0,
            "caps_only": False, "roles": ("print",), "source": "user", "licence": ""}


def describe_latin(fonts: Iterable[LatinFont]) -> str:
    """One line per family: its faces' count and class, for logs and reports."""
    by_family: dict[str, list[LatinFont]] = {}
    for face in fonts:
        by_family.setdefault(face.family, []).append(face)
    return "\n".join(f"{fam}: {len(fs)} face(s), {fs[0].style_class}, {fs[0].source}"
                     for fam, fs in by_family.items())
