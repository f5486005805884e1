"""Which fonts may draw which word (scene and handwriting renderers).

The print renderer needs every font to draw every character of the corpus
(``--unknown`` decides what happens otherwise). Latin display and handwriting
fonts are much less complete: many lack ``ß``, ``€``, ``@`` or even digits.
Dropping such a font loses a design; dropping the characters loses words. So
these renderers draw each word with a font that draws *all* of that word,
decided by rendering (:class:`~data_tools.synth.fonts.GlyphChecker`, never a
tofu box), and the plan only has to make sure that some font draws every
character, and every label whole. A caps-only face (it draws lowercase letters as
capitals) never draws a word with a lowercase letter.

A family with many faces (regular, bold, black, italic, condensed) would be drawn
more often than a family with one if faces were picked uniformly, so the
chooser picks a family first, then one of its faces, as
``latin_fonts.choose_font`` does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Sequence

from data_tools.synth.fonts import FontSpec, GlyphChecker
from ocrkit.errors import OcrkitError


def font_coverage(fonts: Sequence[FontSpec], chars: Iterable[str]) -> list[frozenset[str]]:
    """For each font, the characters of ``chars`` it draws."""
    chars = sorted(set(chars) - {" "})
    out = []
    for spec in fonts:
        checker = GlyphChecker(spec)
        out.append(frozenset(ch for ch in chars if checker.draws(ch)) | {" "})
    return out


class FontChooser:
    """Picks, per word, one of the fonts that draw all of it: a family (uniformly, or in
    proportion to ``weights``), then one of its faces uniformly.

    Args:
        count: number of fonts.
        coverage: per font, the characters it draws (None: all of them).
        caps_only: per font, whether it draws lowercase as capitals.
        families: per font, its family name (default: each font its own family).
        weights: per font, its family's weight (the first face of a family counts).
    """

    def __init__(self, count: int, coverage: Sequence[frozenset[str] | None] | None = None,
                 caps_only: Sequence[bool] | None = None,
                 families: Sequence[str] | None = None,
                 weights: Sequence[float] | None = None) -> None:
        self.count = count
        self.coverage = list(coverage) if coverage is not None else [None] * count
        self.caps_only = list(caps_only) if caps_only is not None else [False] * count
        names = list(families) if families is not None else [str(i) for i in range(count)]
        self._family = [names.index(n) for n in names]  # family id: its first face's index
        self._weight = list(weights) if weights is not None else [1.0] * count
        self._cache: dict[tuple[frozenset[str], bool], tuple[list[list[int]], list[float]]] = {}

    def draws(self, font: int, text: str) -> bool:
        cov = self.coverage[font]
        if cov is not None and not cov.issuperset(text):
            return False
        return not (self.caps_only[font] and any(ch.islower() for ch in text))

    def candidates(self, text: str) -> list[list[int]]:
        """The fonts that draw ``text``, grouped by family."""
        return self._groups(text)[0]

    def _groups(self, text: str) -> tuple[list[list[int]], list[float]]:
        key = (frozenset(text), any(ch.islower() for ch in text))
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) > 50000:
                self._cache.clear()
            groups: dict[int, list[int]] = {}
            for i in range(self.count):
                if self.draws(i, text):
                    groups.setdefault(self._family[i], []).append(i)
            faces = list(groups.values())
            hit = self._cache[key] = (faces, [self._weight[f[0]] for f in faces])
        return hit

    def pick(self, rng: random.Random, text: str) -> int:
        groups, weights = self._groups(text)
        if not groups:
            raise OcrkitError(f"no font draws every character of {text!r} (the plan should "
                              "have refused it)")
        if all(w == 1.0 for w in weights):
            faces = groups[rng.randrange(len(groups))]
        else:
            faces = rng.choices(groups, weights=weights)[0]
        return faces[rng.randrange(len(faces))]


@dataclass(frozen=True)
class FontTraits:
    """What the word renderers need to know of each font: the characters it draws
    (None: every character the run uses), whether it is caps-only, its family, and
    whether it is a joined-up script (whose letters should touch)."""

    coverage: tuple[frozenset[str] | None, ...]
    caps_only: tuple[bool, ...]
    families: tuple[str, ...]
    script: tuple[bool, ...]
    weights: tuple[float, ...]  # how often a font's family is chosen, relative to others

    @classmethod
    def uniform(cls, fonts: Sequence[FontSpec]) -> "FontTraits":
        """Fonts that all draw everything (checked by the plan), each its own family."""
        n = len(fonts)
        return cls((None,) * n, (False,) * n, tuple(f.label for f in fonts), (False,) * n,
                   (1.0,) * n)

    @classmethod
    def latin(cls, fonts: Sequence[FontSpec], chars: Iterable[str], *,
              script_weight: float = 1.0) -> "FontTraits":
        """Latin faces (``latin_fonts`` or ``--font`` files): coverage of ``chars`` by
        rendering, the rest from ``latin.font_style``; joined-up script families are
        chosen ``script_weight`` times as often as the others."""
        from data_tools.synth.latin import font_style

        styles = [font_style(f) for f in fonts]
        script = tuple(s.get("class") == "script" for s in styles)
        wanted = set(chars) - {" "}
        coverage = []
        for f in fonts:  # latin_fonts checked its faces already: reuse what it found
            drawn, missing = getattr(f, "drawn", None), getattr(f, "missing", None)
            if drawn is not None and wanted <= (drawn | missing):
                coverage.append(frozenset(drawn & wanted) | {" "})
            else:
                coverage.append(font_coverage([f], wanted)[0])
        return cls(tuple(coverage),
                   tuple(bool(s.get("caps_only")) for s in styles),
                   tuple(str(s.get("family") or f.label) for s, f in zip(styles, fonts)),
                   script, tuple(script_weight if sc else 1.0 for sc in script))

    def chooser(self) -> FontChooser:
        return FontChooser(len(self.coverage), self.coverage, self.caps_only, self.families,
                           self.weights)


class WordRenderer:
    """What the word renderers (scene, handwriting) share: the fonts, a glyph cache,
    which font draws which word, and the characters of neighbouring words.
    Subclasses implement ``render(index, rows)`` (the
    :class:`~data_tools.synth.render.Renderer` contract)."""

    domain = ""

    def __init__(self, fonts: Sequence[FontSpec], layout, look, seed: int, reference: str, *,
                 traits: "FontTraits | None" = None, neighbours: str = "") -> None:
        from data_tools.synth.raster import Glyphs

        self.fonts = list(fonts)
        self.layout = layout
        self.seed = seed
        self.glyphs = Glyphs(self.fonts)
        self.traits = traits or FontTraits.uniform(self.fonts)
        self.chooser = self.traits.chooser()
        self.neighbours = neighbours
