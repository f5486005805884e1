"""`ocrkit synth`: plan the text, check the fonts, render in parallel, write a dataset.

A run, step by step: check the configuration (:mod:`.config`), derive the
geometry (:mod:`.layout`) and plan the text and its fonts (:mod:`.plan`), claim
the output folder (:mod:`.folder`: what is written where, what an interrupted run
leaves there), record the settings a ``--resume`` needs, render ranges of image
indices in worker processes (:mod:`.workers`, which draw each sample with
:mod:`.render`), append the labels in index order as the images land, and
finally write ``charset.txt`` and the finished ``meta.json``.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import sys
from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Callable

from data_tools.synth.config import SynthConfig, check_config, resume_state, settings_of
from data_tools.synth.folder import (
    prepare_out_dir,
    resume_point,
    split_folders,
    write_json,
    write_preview,
)
from data_tools.synth.fonts import GlyphChecker
from data_tools.synth.layout import DEFAULT_SINGLE, Layout, derive_layout
from data_tools.synth.plan import build_plan, split_assignment
from data_tools.synth.workers import (
    init_pool_worker,
    init_worker,
    release_worker,
    render_range,
)
from ocrkit import __version__
from ocrkit.errors import OcrkitError, UsageError

CHUNK = 32  # images per worker task
REFERENCE_CHARS = "国Hgy"  # vertical metrics: ideograph height plus Latin descenders


@dataclass
class SynthResult:
    out: str
    images: int
    splits: dict[str, int]
    fonts: list[str]
    font_source: str
    charset_size: int
    warnings: list[str]


def synthesize(cfg: SynthConfig, *, on_start: Callable[[int], None] | None = None,
               on_progress: Callable[[int], None] | None = None,
               resume: bool = False) -> SynthResult:
    """Generate the dataset described by ``cfg``; see :mod:`data_tools.synth.folder`.

    ``resume``: finish the interrupted run in ``cfg.out`` (``cfg`` from
    :func:`~data_tools.synth.config.load_resume_config`)."""
    from ocrkit.errors import Interrupted, Terminated
    from ocrkit.outputs import FolderLock, check_writable

    check_config(cfg)
    layout = run_layout(cfg)
    warnings: list[str] = []
    text = build_plan(cfg, layout, warnings)
    fonts = text.fonts
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
        return _synthesize(cfg, layout, text, font_list, warnings, on_start, on_progress, resume)
    except KeyboardInterrupt as exc:
        code = 143 if isinstance(exc, Terminated) else 130
        raise Interrupted(f"{'terminated' if code == 143 else 'interrupted'}: {cfg.out} is "
                          f"incomplete; finish it with `ocrkit synth --resume --out {cfg.out}`",
                          exit_code=code) from None
    finally:
        lock.release()


def run_layout(cfg: SynthConfig) -> Layout:
    """The run's geometry. The word domains (scene, handwriting) make images as wide as
    their text: ``--width`` is the widest (default 8 heights, at least 256 px, or what
    ``--cols`` Chinese characters need), and a Chinese run's rows vary in length
    (``--min-cols`` default 2). English labels bring their own lengths: ``--cols`` is
    the longest (see plan.english_max_chars), not a count that must fit the width."""
    english = cfg.lang == "en"
    width = cfg.width
    if cfg.domain != "print" and width is None and (english or cfg.cols is None):
        width = max(DEFAULT_SINGLE[0], 8 * (cfg.height or DEFAULT_SINGLE[1]))
    layout = derive_layout(cfg.rows, width, cfg.height, None if english else cfg.cols,
                           None if english else cfg.min_cols, box_lines=cfg.box_lines,
                           max_spacing=max(cfg.appearance.spacing))
    if cfg.domain != "print" and not english and cfg.min_cols is None and layout.cols > 2:
        layout = replace(layout, min_cols=2)
    return layout


def _synthesize(cfg, layout, text, font_list, warnings, on_start, on_progress, resume
                ) -> SynthResult:
    plan, fonts = text.plan, text.fonts
    n = len(plan)
    splits = split_assignment(n, cfg)
    lo, hi = 0, n
    if cfg.shard is not None:
        k, parts = cfg.shard
        lo, hi = (k - 1) * n // parts, k * n // parts
    names, split_dirs = split_folders(cfg.out, cfg.test_fraction)
    for d in split_dirs:
        os.makedirs(d, exist_ok=True)
    counts_base = {"requested": cfg.count, "planned": n, "shard_range": [lo, hi]}
    if resume:
        start, kept = _resume(split_dirs, font_list, lo, hi, cfg.rows == 1)
    else:
        start, kept = lo, [[] for _ in split_dirs]
        saved = resume_state(cfg)
        for d, name in zip(split_dirs, names):
            write_json(os.path.join(d, "meta.json"), _meta(
                name, False, font_list, text.font_source, counts=counts_base, resume=saved))
    checkers = [GlyphChecker(f) for f in fonts]
    reference = "".join(c for c in REFERENCE_CHARS if all(ck.draws(c) for ck in checkers))
    state = {"fonts": fonts, "layout": layout, "look": cfg.appearance, "seed": cfg.seed,
             "reference": reference, "plan": plan, "splits": splits, "split_dirs": split_dirs,
             "jpeg": cfg.jpeg_quality, "domain": cfg.domain,
             "options": {"traits": text.traits, "neighbours": text.neighbours}}
    tasks = [(s, min(s + CHUNK, hi)) for s in range(start, hi, CHUNK)]
    counts, chars = _render_all(cfg, state, tasks, split_dirs, kept, resume,
                                on_start, on_progress, todo=hi - start)

    settings = settings_of(cfg)
    for d, name, cnt, ch in zip(split_dirs, names, counts, chars):
        charset = sorted(ch)
        with open(os.path.join(d, "charset.txt"), "w", encoding="utf-8") as fh:
            fh.writelines(c + "\n" for c in charset if c not in "\n\r")
        write_json(os.path.join(d, "meta.json"), _meta(
            name, True, font_list, text.font_source, counts={"images": cnt, **counts_base},
            corpus=text.info, seed=cfg.seed, settings=settings, layout=asdict(layout),
            charset="".join(charset)))
    if cfg.preview:  # word crops are small: show twice as many
        write_preview(split_dirs[0], os.path.join(cfg.out, "preview.png"),
                      limit=16 if cfg.domain == "print" else 32)
    return SynthResult(cfg.out, sum(counts), dict(zip([s or "all" for s in names], counts)),
                       [f.label for f in fonts], text.font_source,
                       len(set().union(*chars)), warnings)


def _meta(split: str, complete: bool, font_list: list[dict], font_source: str, **more) -> dict:
    """A split's meta.json: what every version holds, and ``more``."""
    return {"generator": f"ocrkit synth {__version__}", "complete": complete,
            "split": split or "all", "fonts": font_list, "font_source": font_source, **more}


def _resume(split_dirs: list[str], font_list: list[dict], lo: int, hi: int,
            single_row: bool) -> tuple[int, list[list[dict]]]:
    """Where the interrupted run goes on, and the label records it keeps; refused when
    the fonts found now are not the run's."""
    with open(os.path.join(split_dirs[0], "meta.json"), encoding="utf-8") as fh:
        saved_fonts = json.load(fh).get("fonts")
    if saved_fonts != font_list:
        raise UsageError(f"--resume: the fonts found now differ from the run's "
                         f"({', '.join(f['name'] for f in saved_fonts or [])}); the rest "
                         "would not match: rerun with --overwrite")
    return resume_point(split_dirs, lo, hi, single_row)


def _render_all(cfg: SynthConfig, state: dict, tasks: list[tuple[int, int]],
                split_dirs: list[str], kept: list[list[dict]], resume: bool,
                on_start, on_progress, todo: int) -> tuple[list[int], list[Counter]]:
    """Render ``tasks`` (ranges of indices; in worker processes where there are several)
    and append their labels in index order as they land. Returns the images and the
    characters of each split, the records a resumed run kept included."""
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
        on_start(todo)
    pool = None
    try:
        if cfg.workers > 1 and len(tasks) > 1:
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            pool = mp.get_context(method).Pool(min(cfg.workers, len(tasks)), init_pool_worker,
                                               (state,))
            results = pool.imap(render_range, tasks)
        else:
            init_worker(state)
            results = map(render_range, tasks)
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
        release_worker()
    return counts, chars
