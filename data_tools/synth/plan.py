"""Planning the run's text: which rows each image shows, drawn with which fonts, and
which split it lands in.

The text comes from ``--corpus`` (read in book order; characters that no font can
draw, or that lie outside ``--charset``, follow ``--unknown``) or from the embedded
word list; :mod:`data_tools.synth.layout` cuts it into rows.

``--lang en`` plans one label per image instead: English words, names, places and
numbers from :class:`~data_tools.synth.english.EnglishText` (or the lines of a
corpus), drawn by Latin faces. Those faces differ in what they draw (a script
without ``ß``, a display face with capitals only), so a character is unusable
only when *no* face draws it, and each label goes to a face that draws all of it
(:mod:`data_tools.synth.wordfonts`).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from data_tools.synth.config import SynthConfig
from data_tools.synth.corpus import EmbeddedCorpus, char_counts, read_corpus_file
from data_tools.synth.fonts import FontSpec, GlyphChecker, discover
from data_tools.synth.layout import (
    Layout,
    Plan,
    plan_labels,
    plan_lines,
    plan_running,
    row_lengths,
)
from data_tools.synth.wordfonts import FontTraits
from ocrkit.charset import Charset
from ocrkit.errors import UsageError


@dataclass
class TextPlan:
    """The run's text and the fonts that draw it."""

    plan: Plan
    fonts: list[FontSpec]
    font_source: str
    info: dict  # what meta.json says of the corpus
    traits: FontTraits | None = None  # None: every font draws every character
    neighbours: str = ""  # characters for bits of neighbouring text (word renderers)


def build_plan(cfg: SynthConfig, layout: Layout, warnings: list[str]) -> TextPlan:
    """The text plan and the fonts that draw it; what had to give way is appended to
    ``warnings``."""
    if cfg.lang == "en":
        made = _english_plan(cfg, layout, warnings)
    else:
        made = _chinese_plan(cfg, layout, warnings)
        if cfg.domain != "print":
            made.traits = FontTraits.uniform(made.fonts)
            made.neighbours = _frequent_chars(made.plan.stream)
    plan = made.plan
    wrap = cfg.on_exhausted == "wrap"
    if plan.wrapped:
        warnings.append("the corpus ran out and " + (
            "wrapped around to its start" if wrap else f"generation stopped at {len(plan)} images"))
    if plan.skipped_lines:
        warnings.append(f"{plan.skipped_lines} corpus lines wider than a row were skipped")
    if len(plan) == 0:
        raise UsageError("--corpus: too short for a single image with --on-exhausted stop")
    return made


def _chinese_plan(cfg: SynthConfig, layout: Layout, warnings: list[str]) -> TextPlan:
    """Chinese text: the corpus in book order, or the embedded word stream; every font
    draws every character (``--unknown`` decides what happens to the others)."""
    charset = set(Charset.load(cfg.charset).chars) if cfg.charset else None
    wrap = cfg.on_exhausted == "wrap"
    if cfg.corpus:
        corpus = read_corpus_file(cfg.corpus, cfg.corpus_mode)
        counts = char_counts(corpus)
        probe = "".join(c for c, _ in counts.most_common(40) if c.isalnum() or ord(c) > 0x2E80)[:20]
        fonts, source = discover(cfg.fonts, cfg.font_dirs, probe=probe or "A",
                                 system=cfg.system_fonts)
        checkers = [GlyphChecker(f) for f in fonts]
        bad = _strict_unknowns(corpus, fonts, checkers, charset)
        corpus = _apply_unknown_policy(
            corpus, bad, lambda rep: rep not in bad and all(ck.draws(rep) for ck in checkers),
            cfg, warnings)
        if cfg.corpus_mode == "running":
            plan = plan_running(corpus, layout, cfg.count, cfg.seed, wrap=wrap)
        else:
            plan = plan_lines(corpus, layout, cfg.count, wrap=wrap)
        info = {"source": os.path.abspath(cfg.corpus), "mode": cfg.corpus_mode,
                "characters": len(corpus) if isinstance(corpus, str) else sum(map(len, corpus))}
    else:
        if cfg.corpus_mode != "running":
            raise UsageError("--corpus-mode lines needs --corpus FILE")
        fonts, source = discover(cfg.fonts, cfg.font_dirs, system=cfg.system_fonts)
        checkers = [GlyphChecker(f) for f in fonts]

        def allowed(ch: str) -> bool:
            return (charset is None or ch in charset) and all(c.draws(ch) for c in checkers)

        embedded = EmbeddedCorpus.load(allowed, cfg.charset_size)
        total = int(row_lengths(layout, cfg.count, cfg.seed).sum())
        text = embedded.stream(total, cfg.seed, allowed)
        plan = plan_running(text, layout, cfg.count, cfg.seed)
        info = {"source": "embedded: jieba dictionary, frequency-weighted words",
                "mode": "running", "vocabulary": len(embedded.words),
                "charset_size_limit": cfg.charset_size}
    return TextPlan(plan, fonts, source, info)


def _strict_unknowns(corpus, fonts: list[FontSpec], checkers: list[GlyphChecker],
                     charset: set[str] | None) -> dict[str, str]:
    """Characters some font cannot draw (every font draws every character in the print
    renderer), or outside --charset, with the reason."""
    counts = char_counts(corpus)
    chars = sorted(counts, key=lambda c: (-counts[c], c))
    bad: dict[str, str] = {}
    for spec, checker in zip(fonts, checkers):
        for ch in checker.missing(c for c in chars if c != " "):
            bad.setdefault(ch, f"font {spec.label} has no glyph")
    if charset is not None:
        for ch in chars:
            if ch not in charset and ch != " ":
                bad.setdefault(ch, "not in --charset")
    return bad


def _apply_unknown_policy(corpus, bad: dict[str, str], replacement_ok: Callable[[str], bool],
                          cfg: SynthConfig, warnings: list[str]):
    """Apply --unknown to the characters of ``bad`` (character -> why it cannot be used)."""
    if not bad:
        return corpus
    counts = char_counts(corpus)
    chars = sorted(counts, key=lambda c: (-counts[c], c))
    missing = [c for c in chars if c in bad]
    occurrences = sum(counts[c] for c in missing)
    first = missing[0]
    detail = f"{len(missing)} distinct characters ({occurrences} occurrences) cannot be used: " \
             f"{_fmt_chars(missing)}; e.g. {first!r}: {bad[first]}"
    if cfg.unknown == "error":
        raise UsageError(f"--corpus: {detail}. Pass --unknown skip|replace or another --font")
    if cfg.unknown == "replace":
        rep = cfg.replacement
        if not replacement_ok(rep):
            raise UsageError(f"--replacement {rep!r}: not drawable by every font / not in "
                             "--charset")
        table = {ord(c): rep for c in missing}
    else:
        table = {ord(c): None for c in missing}
    warnings.append(f"{cfg.unknown}: {detail}")
    if isinstance(corpus, str):
        out = corpus.translate(table)
        if not out:
            raise UsageError("--corpus: nothing left after --unknown skip")
        return out
    lines = [ln.translate(table).strip() for ln in corpus]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise UsageError("--corpus: nothing left after --unknown skip")
    return lines


# ----------------------------------------------------------------------------- English
ENGLISH_MAX_CHARS = 25  # longest English label by default: deep-text-recognition-benchmark's


def english_max_chars(cfg: SynthConfig) -> int:
    """The longest English label: ``--cols`` when given, else 25."""
    return cfg.cols if cfg.cols is not None else ENGLISH_MAX_CHARS


def _english_plan(cfg: SynthConfig, layout: Layout, warnings: list[str]) -> TextPlan:
    """English labels (one per image) from ``EnglishText`` or a corpus of lines, drawn by
    Latin fonts; a label goes only to fonts that draw all of it (see wordfonts)."""
    from data_tools.synth.latin import EN_CHARSET

    charset = set(Charset.load(cfg.charset).chars) if cfg.charset else None
    max_chars = english_max_chars(cfg)
    corpus = read_corpus_file(cfg.corpus, cfg.corpus_mode) if cfg.corpus else None
    chars = set(char_counts(corpus)) if corpus is not None else set(EN_CHARSET)
    fonts, source = _latin_fonts(cfg, chars)
    # Calligraphic scripts (Great Vibes, Pacifico, ...) are rarer in handwriting people
    # fill in than in a font list: half the share of the other families there.
    traits = FontTraits.latin(fonts, chars,
                              script_weight=0.5 if cfg.domain == "handwriting" else 1.0)
    chooser = traits.chooser()
    drawn = frozenset().union(*(c for c in traits.coverage if c is not None))

    def usable(ch: str) -> bool:
        return ch == " " or (ch in drawn and (charset is None or ch in charset))

    if corpus is not None:
        bad = {ch: ("no font draws it" if ch not in drawn else "not in --charset")
               for ch in chars if not usable(ch)}
        corpus = _apply_unknown_policy(corpus, bad, usable, cfg, warnings)
        lines = [ln for ln in corpus if chooser.candidates(ln)]
        if len(lines) < len(corpus):
            warnings.append(f"{len(corpus) - len(lines)} corpus lines were skipped: no single "
                            "font draws every character of them")
        if not lines:
            raise UsageError("--corpus: no line is drawn whole by any one font; pass --font")
        plan = plan_lines(lines, layout, cfg.count, wrap=cfg.on_exhausted == "wrap",
                          limit=max_chars)
        info = {"source": os.path.abspath(cfg.corpus), "mode": "lines",
                "characters": sum(map(len, lines)), "max_chars": max_chars}
    else:
        plan, info = _english_labels(cfg, max_chars, usable, chooser)
    neighbours = "".join(c for c in _NEIGHBOUR_CHARS if usable(c)) or "".join(sorted(drawn))
    return TextPlan(plan, fonts, source, info, traits, neighbours.strip())


# Bits of neighbouring words: mostly lowercase letters, some capitals and digits.
_NEIGHBOUR_CHARS = "etaoinshrdlucmfwypvbgkqjxz" * 3 + "ABCDEFGHIJKLMNOPRSTUW" + "0123456789"


def _latin_fonts(cfg: SynthConfig, chars: set[str]) -> tuple[list[FontSpec], str]:
    """``--font``/``--font-dir`` faces, else the Latin faces of the domain's role."""
    if cfg.fonts or cfg.font_dirs:
        return discover(cfg.fonts, cfg.font_dirs, system=cfg.system_fonts)
    from data_tools.synth.latin import latin_fonts

    role = "handwriting" if cfg.domain == "handwriting" else "print"
    fonts = list(latin_fonts(role, "".join(sorted(chars)), system=cfg.system_fonts))
    fonts = select_families(fonts, cfg.font_families, cfg.exclude_font_families, role)
    sources = sorted({getattr(f, "source", "pip") for f in fonts})
    return fonts, f"Latin {role} fonts ({', '.join(sources)})"


def select_families(fonts: list, only: Sequence[str], exclude: Sequence[str], role: str
                    ) -> list:
    """``fonts`` of the families in ``only`` (all when empty) and not in ``exclude``
    (names compared case-insensitively); a name no face has is a usage error listing
    the families, so a typo never silently trains on every font."""
    families = sorted({f.family for f in fonts})
    known = {name.lower() for name in families}
    for name in (*only, *exclude):
        if name.lower() not in known:
            raise UsageError(f"font family {name!r}: not a Latin {role} family here "
                             f"(families: {', '.join(families)})")
    keep = {n.lower() for n in only}
    drop = {n.lower() for n in exclude}
    chosen = [f for f in fonts if (not keep or f.family.lower() in keep)
              and f.family.lower() not in drop]
    if not chosen:
        raise UsageError("--font-family / --exclude-font-family leave no font")
    return chosen


def _english_labels(cfg: SynthConfig, max_chars: int, usable: Callable[[str], bool],
                    chooser) -> tuple[Plan, dict]:
    """``cfg.count`` images of ``cfg.rows`` labels from ``EnglishText``, drawn in order
    from one generator seeded by ``--seed`` (a shorter run's labels are a longer run's
    first ones); labels that no font draws whole, or with characters outside
    --charset, are drawn again."""
    from data_tools.synth.latin import HANDWRITING_MIX, SCENE_MIX, EnglishText

    mix = HANDWRITING_MIX if cfg.domain == "handwriting" else SCENE_MIX
    text = EnglishText.load(max_chars=max_chars, mix=mix)
    rng = random.Random(f"{cfg.seed}:english")
    labels: list[str] = []
    redrawn = 0
    while len(labels) < cfg.count * cfg.rows:
        label = text.sample(rng)
        if all(usable(c) for c in label) and chooser.candidates(label):
            labels.append(label)
            continue
        redrawn += 1
        if redrawn > 1000 and redrawn > 20 * len(labels):
            raise UsageError("--lang en: hardly any English label can be drawn with these fonts "
                             "and --charset; pass another --font or a larger --charset")
    info = {"source": "embedded: English words (pyspellchecker), names and places (Faker), "
                      "numbers and signs", "mode": "labels",
            "mix": "handwriting" if cfg.domain == "handwriting" else "scene",
            "max_chars": max_chars, "redrawn": redrawn}
    return plan_labels(labels, cfg.rows), info


def _frequent_chars(stream: str, limit: int = 300, sample: int = 200_000) -> str:
    """The most frequent characters of the plan's text (bits of neighbouring text)."""
    counts = char_counts(stream[:sample])
    return "".join(c for c, _ in counts.most_common(limit) if not c.isspace())


def _fmt_chars(chars: Sequence[str], limit: int = 12) -> str:
    shown = " ".join(repr(c) for c in chars[:limit])
    return shown + (f" and {len(chars) - limit} more" if len(chars) > limit else "")


def split_assignment(n: int, cfg: SynthConfig) -> np.ndarray:
    """Which split each of the ``n`` images lands in: 0 train (or all), 1 test."""
    splits = np.zeros(n, dtype=np.int8)
    n_test = int(round(n * cfg.test_fraction))
    if n_test:
        if cfg.split_order == "tail":
            splits[n - n_test:] = 1
        else:
            rng = np.random.Generator(np.random.PCG64([cfg.seed, 0x73706C74]))
            splits[rng.choice(n, size=n_test, replace=False)] = 1
    return splits
