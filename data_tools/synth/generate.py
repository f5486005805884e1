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
image; an interrupted run leaves a valid dataset prefix (``meta.json`` is
written last).
"""

from __future__ import annotations

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


def prepare_out_dir(out: str, overwrite: bool) -> None:
    """Create ``out`` (must be writable); refuse to clobber an earlier dataset."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: exists and is not a directory")
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, f".ocrkit-write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    existing = [n for n in OUTPUT_NAMES if os.path.exists(os.path.join(out, n))]
    if existing and not overwrite:
        raise UsageError(
            f"--out {out}: already holds a dataset ({', '.join(existing[:3])}); "
            "pass --overwrite or another --out"
        )
    for name in existing:
        path = os.path.join(out, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


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


def synthesize(cfg: SynthConfig, *, on_start: Callable[[int], None] | None = None,
               on_progress: Callable[[int], None] | None = None) -> SynthResult:
    """Generate the dataset described by ``cfg``; see the module docstring."""
    _check_config(cfg)
    spacing_hi = max(cfg.appearance.spacing)
    layout = derive_layout(cfg.rows, cfg.width, cfg.height, cfg.cols, cfg.min_cols,
                           box_lines=cfg.box_lines, max_spacing=spacing_hi)
    warnings: list[str] = []
    plan, fonts, font_source, corpus_info = _build_plan(cfg, layout, warnings)
    prepare_out_dir(cfg.out, cfg.overwrite)

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
    checkers = [GlyphChecker(f) for f in fonts]
    reference = "".join(c for c in REFERENCE_CHARS if all(ck.draws(c) for ck in checkers))
    state = {"fonts": fonts, "layout": layout, "look": cfg.appearance, "seed": cfg.seed,
             "reference": reference, "plan": plan, "splits": splits, "split_dirs": split_dirs,
             "jpeg": cfg.jpeg_quality}
    tasks = [(s, min(s + CHUNK, hi)) for s in range(lo, hi, CHUNK)]

    label_fhs = [open(os.path.join(d, "labels.jsonl"), "w", encoding="utf-8") for d in split_dirs]
    gt_fhs = ([open(os.path.join(d, "gt.txt"), "w", encoding="utf-8") for d in split_dirs]
              if cfg.rows == 1 else [])
    counts = [0] * len(split_dirs)
    chars: list[Counter] = [Counter() for _ in split_dirs]
    if on_start:
        on_start(hi - lo)
    pool = None
    try:
        if cfg.workers > 1 and len(tasks) > 1:
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            pool = mp.get_context(method).Pool(min(cfg.workers, len(tasks)), _init_worker, (state,))
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
            "labels.jsonl lists those written"
        ) from None
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        for fh in label_fhs + gt_fhs:
            fh.close()
        _STATE.clear()

    settings = {k: v for k, v in asdict(cfg).items()
                if k not in ("out", "workers", "overwrite", "preview", "fonts", "font_dirs",
                             "corpus", "count")}
    for d, name, cnt, ch in zip(split_dirs, names, counts, chars):
        charset = sorted(ch)
        with open(os.path.join(d, "charset.txt"), "w", encoding="utf-8") as fh:
            fh.writelines(c + "\n" for c in charset if c not in "\n\r")
        _write_json(os.path.join(d, "meta.json"), {
            "generator": f"ocrkit synth {__version__}",
            "complete": True,
            "split": name or "all",
            "corpus": corpus_info,
            "fonts": [{"path": f.path, "index": f.index, "name": f.name} for f in fonts],
            "font_source": font_source,
            "seed": cfg.seed,
            "settings": settings,
            "layout": asdict(layout),
            "counts": {"images": cnt, "requested": cfg.count, "planned": n,
                       "shard_range": [lo, hi]},
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

