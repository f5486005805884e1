"""The run's configuration: `SynthConfig`, its checks, and the settings a run saves
so that ``ocrkit synth --resume`` can finish it with exactly the same ones.

Language and domain: ``lang`` picks the text and the fonts (``zh``: the Chinese
corpus or embedded word stream and CJK fonts; ``en``: English words, names and
places and Latin fonts), ``domain`` the renderer (``print``: grey text on paper,
every setting of earlier ocrkit versions unchanged; ``scene``: RGB word crops
that look photographed; ``handwriting``: RGB handwritten words). The domain
defaults to ``print`` for Chinese and to ``scene`` for English: the English text
ocrkit learns to read is on signs and labels, and a user who asks for English
images without naming a domain expects word crops like MJSynth's, not lines of
grey print (``--domain print`` still gives those).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from data_tools.synth.look import Appearance
from ocrkit.errors import UsageError

# The settings an interrupted run needs to continue: everything that decides the output.
RESUME_FIELDS = ("lang", "domain", "count", "rows", "seed", "width", "height", "cols", "min_cols",
                 "box_lines",
                 "corpus", "corpus_mode", "on_exhausted", "charset", "charset_size", "unknown",
                 "replacement", "fonts", "font_dirs", "font_families", "exclude_font_families",
                 "system_fonts", "appearance",
                 "jpeg_quality", "test_fraction", "split_order", "shard", "preview")
LANGS = ("zh", "en")
DOMAINS = ("print", "scene", "handwriting")
# Options that shape only the print renderer's look; scene and handwriting draw their own.
PRINT_ONLY = ("size_jitter", "spacing", "background", "ink", "weight", "texture", "rotate",
              "skew", "blur", "noise", "line_width", "line_ink")


def default_domain(lang: str) -> str:
    """``print`` for Chinese (what ocrkit always drew), ``scene`` for English."""
    return "scene" if lang == "en" else "print"


@dataclass
class SynthConfig:
    """Everything that decides the output (and a few things that do not: workers, quiet)."""

    out: str
    count: int
    lang: str = "zh"
    domain: str = "print"
    rows: int = 1
    seed: int = 0
    workers: int = 1
    width: int | None = None
    height: int | None = None
    cols: int | None = None
    min_cols: int | None = None
    box_lines: bool = False
    corpus: str | None = None
    corpus_mode: str = "running"
    on_exhausted: str = "wrap"
    charset: str | None = None
    charset_size: int = 0
    unknown: str = "error"
    replacement: str = "?"
    fonts: tuple[str, ...] = ()
    font_dirs: tuple[str, ...] = ()
    font_families: tuple[str, ...] = ()  # --lang en: only these Latin families
    exclude_font_families: tuple[str, ...] = ()  # --lang en: never these
    system_fonts: bool = True
    appearance: Appearance = field(default_factory=Appearance)
    jpeg_quality: tuple[int, int] | None = None
    test_fraction: float = 0.0
    split_order: str = "tail"
    shard: tuple[int, int] | None = None  # (k, n), k in 1..n
    preview: bool = False
    overwrite: bool = False


def check_config(cfg: SynthConfig) -> None:
    if cfg.count < 1:
        raise UsageError(f"-n/--count {cfg.count}: must be at least 1")
    if cfg.workers < 1:
        raise UsageError(f"--workers {cfg.workers}: must be at least 1")
    if not 0.0 <= cfg.test_fraction < 1.0:
        raise UsageError(f"--test-fraction {cfg.test_fraction}: must be in [0, 1)")
    if cfg.shard is not None:
        k, n = cfg.shard
        if not (n >= 1 and 1 <= k <= n):
            raise UsageError(f"--shard {k}/{n}: K must be in 1..N")
    if len(cfg.replacement) != 1:
        raise UsageError(f"--replacement {cfg.replacement!r}: must be one character")
    if (cfg.font_families or cfg.exclude_font_families) and (
            cfg.lang != "en" or cfg.fonts or cfg.font_dirs):
        raise UsageError("--font-family / --exclude-font-family pick among the Latin fonts of "
                         "--lang en (not with --font or --font-dir)")
    if cfg.lang not in LANGS:
        raise UsageError(f"--lang {cfg.lang}: choose from {', '.join(LANGS)}")
    if cfg.domain not in DOMAINS:
        raise UsageError(f"--domain {cfg.domain}: choose from {', '.join(DOMAINS)}")
    if cfg.domain != "print":
        if cfg.rows != 1:
            raise UsageError(f"--domain {cfg.domain} draws single words or lines: --rows must "
                             f"be 1 (multi-row images: --domain print)")
        if cfg.box_lines:
            raise UsageError(f"--box-lines draws printed tables: use it with --domain print, "
                             f"not {cfg.domain}")
    if cfg.lang == "en" and cfg.box_lines:
        raise UsageError("--box-lines draws column lines between characters (Chinese table "
                         "cells), which would cut English words apart: not with --lang en")
    if cfg.lang == "en" and cfg.corpus and cfg.corpus_mode == "running":
        raise UsageError("--corpus-mode running removes all whitespace: English corpora are "
                         "read with --corpus-mode lines (one label per line)")
    if cfg.lang == "en" and not cfg.corpus:
        if cfg.charset_size:
            raise UsageError("--charset-size limits the embedded Chinese corpus; with --lang en "
                             "pass --charset FILE to limit the characters")
        if cfg.min_cols is not None:
            raise UsageError("--min-cols: --lang en draws one word, name or place per image "
                             "(its own length); --cols N sets the longest label")
        if cfg.cols is not None and cfg.cols < 4:
            raise UsageError(f"--cols {cfg.cols}: English labels need at least 4 characters")


def settings_of(cfg: SynthConfig) -> dict:
    """The settings a finished dataset's meta.json records (paths, counts and the
    run's own housekeeping stand elsewhere, or nowhere)."""
    return {k: v for k, v in asdict(cfg).items()
            if k not in ("out", "workers", "overwrite", "preview", "fonts", "font_dirs",
                         "corpus", "count")}


# ----------------------------------------------------------------------------- resume
def resume_state(cfg: SynthConfig) -> dict:
    """What an unfinished dataset's meta.json keeps to be resumed: the run's settings,
    its paths made absolute, and the corpus digest that tells whether it changed."""
    state = {k: getattr(cfg, k) for k in RESUME_FIELDS}
    state["appearance"] = asdict(cfg.appearance)
    state["corpus"] = os.path.abspath(cfg.corpus) if cfg.corpus else None
    state["corpus_sha256"] = _file_digest(cfg.corpus)
    state["charset"] = os.path.abspath(cfg.charset) if cfg.charset else None
    state["fonts"] = [_absolute_font(f) for f in cfg.fonts]
    state["font_dirs"] = [os.path.abspath(d) for d in cfg.font_dirs]
    return state


def load_resume_config(out: str, workers: int = 1) -> SynthConfig:
    """The settings of the interrupted run in ``out`` (from its ``meta.json``)."""
    for sub in ("", "train", "test"):
        meta_path = os.path.join(out, sub, "meta.json")
        if os.path.isfile(meta_path):
            break
    else:
        raise UsageError(f"--resume: {out} has no meta.json; it was not written by this "
                         "ocrkit's synth (rerun the command with --overwrite)")
    try:
        with open(meta_path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--resume: cannot read {meta_path} ({exc})") from None
    if not str(meta.get("generator", "")).startswith("ocrkit synth"):
        raise UsageError(f"--resume: {out} was not written by ocrkit synth")
    if meta.get("complete"):
        raise UsageError(f"--resume: {out} is complete; nothing to resume")
    saved = meta.get("resume")
    if not isinstance(saved, dict):
        raise UsageError(f"--resume: {meta_path} holds no resumable settings; rerun the "
                         "command with --overwrite")
    args = {k: saved[k] for k in RESUME_FIELDS if k in saved}
    look = Appearance(**{k: tuple(v) if isinstance(v, list) else v
                         for k, v in args.pop("appearance").items()})
    for key in ("fonts", "font_dirs"):
        args[key] = tuple(args.get(key) or ())
    for key in ("jpeg_quality", "shard"):
        args[key] = tuple(args[key]) if args.get(key) else None
    cfg = SynthConfig(out=out, workers=workers, appearance=look, **args)
    if _file_digest(cfg.corpus) != saved.get("corpus_sha256"):
        raise UsageError(f"--resume: the corpus {cfg.corpus} changed since the run started; "
                         "the rest of the dataset would not continue it: rerun with --overwrite")
    return cfg


def _file_digest(path: str | None) -> str | None:
    from ocrkit.outputs import file_sha256

    return file_sha256(path) if path else None


def _absolute_font(arg: str) -> str:
    head, sep, tail = arg.rpartition(":")
    if sep and tail.isdigit() and head:
        return f"{os.path.abspath(head)}:{tail}"
    return os.path.abspath(arg)
