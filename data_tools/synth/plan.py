"""Planning the run's text: which rows each image shows, drawn with which fonts, and
which split it lands in.

The text comes from ``--corpus`` (read in book order; characters that no font can
draw, or that lie outside ``--charset``, follow ``--unknown``) or from the embedded
word list; :mod:`data_tools.synth.layout` cuts it into rows.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from data_tools.synth.config import SynthConfig
from data_tools.synth.corpus import EmbeddedCorpus, char_counts, read_corpus_file
from data_tools.synth.fonts import FontSpec, GlyphChecker, discover
from data_tools.synth.layout import Layout, Plan, plan_lines, plan_running, row_lengths
from ocrkit.charset import Charset
from ocrkit.errors import UsageError


def build_plan(cfg: SynthConfig, layout: Layout, warnings: list[str]
               ) -> tuple[Plan, list[FontSpec], str, dict]:
    """The text plan, the fonts that draw it, where the fonts came from, and what
    meta.json says of the corpus; what had to give way is appended to ``warnings``."""
    charset = set(Charset.load(cfg.charset).chars) if cfg.charset else None
    wrap = cfg.on_exhausted == "wrap"
    if cfg.corpus:
        corpus = read_corpus_file(cfg.corpus, cfg.corpus_mode)
        counts = char_counts(corpus)
        probe = "".join(c for c, _ in counts.most_common(40) if c.isalnum() or ord(c) > 0x2E80)[:20]
        fonts, source = discover(cfg.fonts, cfg.font_dirs, probe=probe or "A",
                                 system=cfg.system_fonts)
        checkers = [GlyphChecker(f) for f in fonts]
        corpus = _apply_unknown_policy(corpus, fonts, checkers, charset, cfg, warnings)
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
    if plan.wrapped:
        warnings.append("the corpus ran out and " + (
            "wrapped around to its start" if wrap else f"generation stopped at {len(plan)} images"))
    if plan.skipped_lines:
        warnings.append(f"{plan.skipped_lines} corpus lines wider than a row were skipped")
    if len(plan) == 0:
        raise UsageError("--corpus: too short for a single image with --on-exhausted stop")
    return plan, fonts, source, info


def _apply_unknown_policy(corpus, fonts: list[FontSpec], checkers: list[GlyphChecker],
                          charset: set[str] | None, cfg: SynthConfig, warnings: list[str]):
    """Find characters no font can draw (or outside --charset) and apply --unknown."""
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
    if not bad:
        return corpus
    missing = [c for c in chars if c in bad]
    occurrences = sum(counts[c] for c in missing)
    first = missing[0]
    detail = f"{len(missing)} distinct characters ({occurrences} occurrences) cannot be used: " \
             f"{_fmt_chars(missing)}; e.g. {first!r}: {bad[first]}"
    if cfg.unknown == "error":
        raise UsageError(f"--corpus: {detail}. Pass --unknown skip|replace or another --font")
    if cfg.unknown == "replace":
        rep = cfg.replacement
        if rep in bad or any(not ck.draws(rep) for ck in checkers):
            raise UsageError(f"--replacement {rep!r}: not drawable by every font / not in --charset")
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
