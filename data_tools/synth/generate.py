"""`ocrkit synth`: plan the text, check the fonts, render in parallel, write a dataset.

Output folder (one per split when ``test_fraction > 0``: ``OUT/train``, ``OUT/test``)::

    images/0000/00000000.png      the samples (``_clean.png`` and ``_mask.png`` twins
                                  with box lines)
    labels.jsonl                  {"image", "rows", "font"[, "clean", "mask"]} per image,
                                  written in index order as images land
    gt.txt                        path<TAB>label (single-row sets)
    charset.txt                   characters used, one per line
    meta.json                     corpus, fonts, seed, settings, counts, charset

Images are written before their label line, so a label never names a missing
image. ``meta.json`` is written first with ``"complete": false`` and the run's
settings, and rewritten at the end; an interrupted run (Ctrl-C, SIGTERM, a full
disk, kill -9) therefore leaves a dataset that every reader refuses as
incomplete, and ``ocrkit synth --resume --out OUT`` finishes it: it keeps the
images whose labels landed, renders the rest, and gives the same bytes as an
uninterrupted run (generation is deterministic per image index).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import random
import shutil
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from data_tools.synth.corpus import EmbeddedCorpus, char_counts, read_corpus_file
from data_tools.synth.fonts import FontSpec, GlyphChecker, discover
from data_tools.synth.layout import Layout, Plan, derive_layout, plan_lines, plan_running, row_lengths
from data_tools.synth.render import Appearance, Renderer
from ocrkit import __version__
from ocrkit.charset import Charset
from ocrkit.errors import OcrkitError, UsageError

CHUNK = 32  # images per worker task
REFERENCE_CHARS = "国Hgy"  # vertical metrics: ideograph height plus Latin descenders
OUTPUT_NAMES = ("images", "labels.jsonl", "gt.txt", "charset.txt", "meta.json", "preview.png",
                "train", "test")


@dataclass
class SynthConfig:
    """Everything that decides the output (and a few things that do not: workers, quiet)."""

    out: str
    count: int
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
    system_fonts: bool = True
    appearance: Appearance = field(default_factory=Appearance)
    jpeg_quality: tuple[int, int] | None = None
    test_fraction: float = 0.0
    split_order: str = "tail"
    shard: tuple[int, int] | None = None  # (k, n), k in 1..n
    preview: bool = False
    overwrite: bool = False


@dataclass
class SynthResult:
    out: str
    images: int
    splits: dict[str, int]
    fonts: list[str]
    font_source: str
    charset_size: int
    warnings: list[str]


# ----------------------------------------------------------------------------- checks
def _check_config(cfg: SynthConfig) -> None:
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


def _is_synth_folder(folder: str) -> bool:
    """True if ``folder`` holds a dataset ``ocrkit synth`` wrote (complete or not)."""
    meta = os.path.join(folder, "meta.json")
    if os.path.isfile(meta):
        try:
            with open(meta, encoding="utf-8") as fh:
                return str(json.load(fh).get("generator", "")).startswith("ocrkit synth")
        except (OSError, ValueError, AttributeError):
            return False
    labels = os.path.join(folder, "labels.jsonl")
    if os.path.isfile(labels):
        try:
            with open(labels, encoding="utf-8") as fh:
                first = json.loads(fh.readline() or "{}")
            return isinstance(first, dict) and "font" in first and "rows" in first
        except (OSError, ValueError):
            return False
    return False


def interrupted_state(out: str) -> str | None:
    """Whether ``out`` holds a dataset an interrupted synth left: ``"resumable"``
    (its meta.json says incomplete and keeps the run's settings: ``--resume``
    finishes it), ``"not resumable"`` (incomplete without saved settings, or synth's
    labels without a meta.json: an older ocrkit was interrupted), or None (complete,
    or not synth's)."""
    metas = [os.path.join(out, sub, "meta.json") for sub in ("", "train", "test")]
    metas = [m for m in metas if os.path.isfile(m)]
    if not metas:
        return "not resumable" if _is_synth_folder(out) else None
    try:
        with open(metas[0], encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not str(meta.get("generator", "")).startswith(
            "ocrkit synth"):
        return None
    if all(_meta_complete(m) for m in metas):
        return None
    return "resumable" if isinstance(meta.get("resume"), dict) else "not resumable"


def _meta_complete(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh).get("complete") is not False
    except (OSError, ValueError, AttributeError):
        return True


def prepare_out_dir(out: str, overwrite: bool) -> None:
    """Create ``out`` (must be writable); refuse to clobber an earlier dataset.

    With ``overwrite`` only a dataset that synth itself wrote is replaced (its
    ``images/``, label files, ``meta.json`` ..., and ``train/``/``test/`` splits);
    files of the same names that synth did not write are refused, never deleted.
    """
    from ocrkit.outputs import check_writable

    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: exists and is not a directory")
    check_writable(out, flag="--out", folder=True)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    existing = [n for n in OUTPUT_NAMES if os.path.lexists(os.path.join(out, n))]
    if existing and not overwrite:
        state = interrupted_state(out)
        if state == "resumable":
            raise UsageError(
                f"--out {out}: holds a dataset an interrupted synth left (incomplete); finish "
                f"it with `ocrkit synth --resume --out {out}` (its own settings, the same "
                "bytes as an uninterrupted run), or start over with --overwrite")
        if state == "not resumable":
            raise UsageError(
                f"--out {out}: holds a dataset an interrupted synth left (incomplete) that "
                "cannot be resumed (its meta.json keeps no settings to resume with); start over "
                "with --overwrite, or choose another --out")
        raise UsageError(
            f"--out {out}: already holds a dataset ({', '.join(existing[:3])}); "
            "pass --overwrite or another --out"
        )
    if not existing:
        return
    splits = [n for n in ("train", "test") if n in existing]
    ours = (_is_synth_folder(out) or bool(splits)) and all(
        _is_synth_folder(os.path.join(out, n)) for n in splits)
    if not ours:
        raise UsageError(f"--out {out}: holds {', '.join(existing[:3])} that ocrkit synth did "
                         "not write; --overwrite replaces only synth's own datasets: choose "
                         "another --out")
    for name in existing:
        path = os.path.join(out, name)
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)


def _fmt_chars(chars: Sequence[str], limit: int = 12) -> str:
    shown = " ".join(repr(c) for c in chars[:limit])
    return shown + (f" and {len(chars) - limit} more" if len(chars) > limit else "")


# ----------------------------------------------------------------------------- text
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


def _build_plan(cfg: SynthConfig, layout: Layout, warnings: list[str]
                ) -> tuple[Plan, list[FontSpec], str, dict]:
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


# ----------------------------------------------------------------------------- workers
_STATE: dict = {}


def _init_pool_worker(state: dict) -> None:
    import signal

    # Pool.terminate() sends SIGTERM: die quietly, not through the CLI's handler.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    _init_worker(state)


def _init_worker(state: dict) -> None:
    _STATE.clear()
    _STATE.update(state)
    _STATE["renderer"] = Renderer(state["fonts"], state["layout"], state["look"],
                                  state["seed"], state["reference"])
    _STATE["made_dirs"] = set()


def _save(image: Image.Image, path: str, quality: int | None) -> None:
    if quality is None:
        image.save(path, format="PNG", compress_level=1, compress_type=3)  # zlib Z_RLE: fastest here
    else:
        image.save(path, format="JPEG", quality=quality)


def _render_range(bounds: tuple[int, int]) -> list[tuple[int, dict]]:
    """Render images ``bounds[0]..bounds[1]-1`` to disk; return their label records."""
    st = _STATE
    renderer: Renderer = st["renderer"]
    plan: Plan = st["plan"]
    out = []
    for i in range(*bounds):
        split = int(st["splits"][i])
        base = st["split_dirs"][split]
        bucket = f"images/{i // 1000:04d}"
        folder = os.path.join(base, bucket)
        if folder not in st["made_dirs"]:
            os.makedirs(folder, exist_ok=True)
            st["made_dirs"].add(folder)
        rows = plan.rows(i)
        sample = renderer.render(i, rows)
        quality = None
        if st["jpeg"] is not None:
            quality = random.Random(f"{st['seed']}:{i}:jpeg").randint(*st["jpeg"])
        name = f"{bucket}/{i:08d}.{'jpg' if quality else 'png'}"
        _save(sample.image, os.path.join(base, name), quality)
        record = {"image": name, "rows": rows, "font": sample.font}
        if sample.clean is not None:
            record["clean"] = f"{bucket}/{i:08d}_clean.png"
            record["mask"] = f"{bucket}/{i:08d}_mask.png"
            _save(sample.clean, os.path.join(base, record["clean"]), None)
            _save(sample.mask, os.path.join(base, record["mask"]), None)
        out.append((split, record))
    return out


# ----------------------------------------------------------------------------- main
def _split_assignment(n: int, cfg: SynthConfig) -> np.ndarray:
    splits = np.zeros(n, dtype=np.int8)
    n_test = int(round(n * cfg.test_fraction))
    if n_test:
        if cfg.split_order == "tail":
            splits[n - n_test:] = 1
        else:
            rng = np.random.Generator(np.random.PCG64([cfg.seed, 0x73706C74]))
            splits[rng.choice(n, size=n_test, replace=False)] = 1
    return splits


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=1, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


RESUME_FIELDS = ("count", "rows", "seed", "width", "height", "cols", "min_cols", "box_lines",
                 "corpus", "corpus_mode", "on_exhausted", "charset", "charset_size", "unknown",
                 "replacement", "fonts", "font_dirs", "system_fonts", "appearance",
                 "jpeg_quality", "test_fraction", "split_order", "shard", "preview")


def _file_digest(path: str | None) -> str | None:
    if not path:
        return None
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def _resume_point(split_dirs: list[str], splits: np.ndarray, lo: int, hi: int,
                  single_row: bool) -> tuple[int, list[list[dict]]]:
    """First index from which the interrupted run must render again, and the label
    records it keeps (complete lines whose image exists, contiguous from ``lo``).
    The label files are rewritten to hold exactly those records."""
    kept_all, present = [], set()
    for d in split_dirs:
        records = []
        path = os.path.join(d, "labels.jsonl")
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                for raw in fh:
                    if not raw.endswith(b"\n"):
                        break
                    try:
                        rec = json.loads(raw)
                        index = int(os.path.basename(rec["image"]).split(".")[0])
                    except (ValueError, KeyError, TypeError):
                        break
                    if not os.path.isfile(os.path.join(d, rec["image"])):
                        break
                    records.append((index, rec))
        kept_all.append(records)
        present.update(i for i, _ in records)
    k = lo
    while k < hi and k in present:
        k += 1
    kept = [[rec for i, rec in records if i < k] for records in kept_all]
    for d, records in zip(split_dirs, kept):
        _write_lines(os.path.join(d, "labels.jsonl"),
                     [json.dumps(r, ensure_ascii=False) for r in records])
        if single_row:
            _write_lines(os.path.join(d, "gt.txt"),
                         [f"{r['image']}\t{r['rows'][0]}" for r in records])
    return k, kept


def _absolute_font(arg: str) -> str:
    head, sep, tail = arg.rpartition(":")
    if sep and tail.isdigit() and head:
        return f"{os.path.abspath(head)}:{tail}"
    return os.path.abspath(arg)


def _write_lines(path: str, lines: list[str]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)


def synthesize(cfg: SynthConfig, *, on_start: Callable[[int], None] | None = None,
               on_progress: Callable[[int], None] | None = None,
               resume: bool = False) -> SynthResult:
    """Generate the dataset described by ``cfg``; see the module docstring.

    ``resume``: finish the interrupted run in ``cfg.out`` (``cfg`` from
    :func:`load_resume_config`)."""
    from ocrkit.errors import Interrupted, Terminated
    from ocrkit.outputs import FolderLock, check_writable

    _check_config(cfg)
    spacing_hi = max(cfg.appearance.spacing)
    layout = derive_layout(cfg.rows, cfg.width, cfg.height, cfg.cols, cfg.min_cols,
                           box_lines=cfg.box_lines, max_spacing=spacing_hi)
    warnings: list[str] = []
    plan, fonts, font_source, corpus_info = _build_plan(cfg, layout, warnings)
    font_list = [{"path": f.path, "index": f.index, "name": f.name} for f in fonts]
    if os.path.exists(cfg.out) and not os.path.isdir(cfg.out):
        raise UsageError(f"--out {cfg.out}: exists and is not a directory")
    if not resume:
        check_writable(cfg.out, flag="--out", folder=True)
        os.makedirs(cfg.out, exist_ok=True)
    lock = FolderLock(cfg.out, "synth").acquire()  # before anything there is replaced
    try:
        if not resume:
            prepare_out_dir(cfg.out, cfg.overwrite)
        return _synthesize(cfg, layout, plan, fonts, font_source, corpus_info, font_list,
                           warnings, on_start, on_progress, resume)
    except KeyboardInterrupt as exc:
        code = 143 if isinstance(exc, Terminated) else 130
        raise Interrupted(f"{'terminated' if code == 143 else 'interrupted'}: {cfg.out} is "
                          f"incomplete; finish it with `ocrkit synth --resume --out {cfg.out}`",
                          exit_code=code) from None
    finally:
        lock.release()


def _synthesize(cfg, layout, plan, fonts, font_source, corpus_info, font_list, warnings,
                on_start, on_progress, resume) -> SynthResult:
    n = len(plan)
    splits = _split_assignment(n, cfg)
    lo, hi = 0, n
    if cfg.shard is not None:
        k, parts = cfg.shard
        lo, hi = (k - 1) * n // parts, k * n // parts
    names = ["train", "test"] if cfg.test_fraction > 0 else [""]
    split_dirs = [os.path.join(cfg.out, s) if s else cfg.out for s in names]
    for d in split_dirs:
        os.makedirs(d, exist_ok=True)
    settings = {k: v for k, v in asdict(cfg).items()
                if k not in ("out", "workers", "overwrite", "preview", "fonts", "font_dirs",
                             "corpus", "count")}
    counts_base = {"requested": cfg.count, "planned": n, "shard_range": [lo, hi]}
    start = lo
    kept: list[list[dict]] = [[] for _ in split_dirs]
    if resume:
        with open(os.path.join(split_dirs[0], "meta.json"), encoding="utf-8") as fh:
            saved_fonts = json.load(fh).get("fonts")
        if saved_fonts != font_list:
            raise UsageError(f"--resume: the fonts found now differ from the run's "
                             f"({', '.join(f['name'] for f in saved_fonts or [])}); the rest "
                             "would not match: rerun with --overwrite")
        start, kept = _resume_point(split_dirs, splits, lo, hi, cfg.rows == 1)
    else:
        resume_state = {k: getattr(cfg, k) for k in RESUME_FIELDS}
        resume_state["appearance"] = asdict(cfg.appearance)
        resume_state["corpus"] = os.path.abspath(cfg.corpus) if cfg.corpus else None
        resume_state["corpus_sha256"] = _file_digest(cfg.corpus)
        resume_state["charset"] = os.path.abspath(cfg.charset) if cfg.charset else None
        resume_state["fonts"] = [_absolute_font(f) for f in cfg.fonts]
        resume_state["font_dirs"] = [os.path.abspath(d) for d in cfg.font_dirs]
        for d, name in zip(split_dirs, names):
            _write_json(os.path.join(d, "meta.json"), {
                "generator": f"ocrkit synth {__version__}", "complete": False,
                "split": name or "all", "fonts": font_list, "font_source": font_source,
                "counts": counts_base, "resume": resume_state})
    checkers = [GlyphChecker(f) for f in fonts]
    reference = "".join(c for c in REFERENCE_CHARS if all(ck.draws(c) for ck in checkers))
    state = {"fonts": fonts, "layout": layout, "look": cfg.appearance, "seed": cfg.seed,
             "reference": reference, "plan": plan, "splits": splits, "split_dirs": split_dirs,
             "jpeg": cfg.jpeg_quality}
    tasks = [(s, min(s + CHUNK, hi)) for s in range(start, hi, CHUNK)]

    mode = "a" if resume else "w"
    label_fhs = [open(os.path.join(d, "labels.jsonl"), mode, encoding="utf-8") for d in split_dirs]
    gt_fhs = ([open(os.path.join(d, "gt.txt"), mode, encoding="utf-8") for d in split_dirs]
              if cfg.rows == 1 else [])
    counts = [len(records) for records in kept]
    chars: list[Counter] = [Counter() for _ in split_dirs]
    for counter, records in zip(chars, kept):
        for rec in records:
            for row in rec["rows"]:
                counter.update(row)
    if on_start:
        on_start(hi - start)
    pool = None
    try:
        if cfg.workers > 1 and len(tasks) > 1:
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            pool = mp.get_context(method).Pool(min(cfg.workers, len(tasks)), _init_pool_worker, (state,))
            results = pool.imap(_render_range, tasks)
        else:
            _init_worker(state)
            results = map(_render_range, tasks)
        for batch in results:
            for split, record in batch:
                label_fhs[split].write(json.dumps(record, ensure_ascii=False) + "\n")
                if gt_fhs:
                    gt_fhs[split].write(f"{record['image']}\t{record['rows'][0]}\n")
                counts[split] += 1
                for row in record["rows"]:
                    chars[split].update(row)
            for fh in label_fhs + gt_fhs:
                fh.flush()
            if on_progress:
                on_progress(len(batch))
    except OSError as exc:
        done = sum(counts)
        raise OcrkitError(
            f"writing to {cfg.out} failed ({exc.strerror or exc}) after {done} images; "
            f"finish it with `ocrkit synth --resume --out {cfg.out}` once that is fixed"
        ) from None
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        for fh in label_fhs + gt_fhs:
            with contextlib.suppress(OSError):
                fh.close()
        _STATE.clear()

    for d, name, cnt, ch in zip(split_dirs, names, counts, chars):
        charset = sorted(ch)
        with open(os.path.join(d, "charset.txt"), "w", encoding="utf-8") as fh:
            fh.writelines(c + "\n" for c in charset if c not in "\n\r")
        _write_json(os.path.join(d, "meta.json"), {
            "generator": f"ocrkit synth {__version__}",
            "complete": True,
            "split": name or "all",
            "corpus": corpus_info,
            "fonts": font_list,
            "font_source": font_source,
            "seed": cfg.seed,
            "settings": settings,
            "layout": asdict(layout),
            "counts": {"images": cnt, **counts_base},
            "charset": "".join(charset),
        })
    if cfg.preview:
        write_preview(split_dirs[0], os.path.join(cfg.out, "preview.png"))
    return SynthResult(cfg.out, sum(counts), dict(zip([s or "all" for s in names], counts)),
                       [f.label for f in fonts], font_source,
                       len(set().union(*chars)), warnings)


def write_preview(dataset_dir: str, path: str, limit: int = 16, columns: int = 4) -> None:
    """Contact sheet of the first ``limit`` samples (with twin and mask for box lines)."""
    cells = []
    with open(os.path.join(dataset_dir, "labels.jsonl"), encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            parts = [rec["image"]] + [rec[k] for k in ("clean", "mask") if k in rec]
            ims = [Image.open(os.path.join(dataset_dir, p)).convert("L") for p in parts]
            cell = Image.new("L", (sum(i.width for i in ims) + 4 * (len(ims) - 1),
                                   max(i.height for i in ims)), 128)
            x = 0
            for im in ims:
                cell.paste(im, (x, 0))
                x += im.width + 4
            cells.append(cell)
            if len(cells) >= limit:
                break
    if not cells:
        return
    cw = max(c.width for c in cells) + 6
    ch = max(c.height for c in cells) + 6
    cols = min(columns, len(cells))
    sheet = Image.new("L", (cw * cols, ch * ((len(cells) + cols - 1) // cols)), 96)
    for k, cell in enumerate(cells):
        sheet.paste(cell, ((k % cols) * cw + 3, (k // cols) * ch + 3))
    sheet.save(path)

