"""`ocrkit demo`: the whole chain on embedded defaults, on a CPU, in minutes.

``--task zh`` (the default): synthesize a single-row Chinese training set, a
validation set and a test set in the training fonts and one in a font *design*
training never saw -> build LMDBs -> train a CAP-CRNN (with augmentation; best.pt
chosen on the validation set) -> evaluate both test sets -> infer a few held-out
images. The final result is the held-out design's.

``--task scene-en`` / ``--task handwriting-en``: the same chain on English words
that look photographed (``synth --lang en --domain scene``) or handwritten
(``--domain handwriting``), RGB, with a CTC CRNN; the test set is drawn in Latin
font families training never saw (:data:`HELD_OUT_FAMILIES`) and scored both
exactly and the way English scene-text benchmarks are (``lower-alnum``).
``--head attention`` gives the same encoder an attention decoder reading up to the
task's longest word (:data:`HEADS`): the specialists unified HTR + STR distillation
learns from (docs/unified.md) must decode step by step.

Every step is the library code the subcommands use.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from typing import Callable

from ocrkit.errors import UsageError

MARKER = "demo.json"


@dataclass
class DemoConfig:
    """Defaults measured to reach CLP >= 0.9 on the training fonts within the time budget
    on 2 CPU cores (the held-out design's figures: bench/generalisation_bench.py)."""

    out: str = "demo-out"
    charset_size: int = 500
    train_images: int = 20000
    test_images: int = 500
    val_images: int = 200
    cols: int = 6
    steps: int = 2500
    batch_size: int = 32
    lr: float = 2e-3
    warmup: float = 0.02
    hidden: int = 128
    channels: tuple = (32, 64, 128, 128)
    width_stride: int = 8
    seed: int = 0
    device: str = "auto"
    workers: int = 1
    # the pip font design kept out of training. Training on a sans and a serif (Song)
    # design reads an unseen sans design at 94.8 % exact lines; training on two sans
    # designs reads the serif at 67.4 % (docs/results.md): cover both families in training
    held_out: str = "sans-wqy"
    quiet: bool = False


def _fonts(held_out: str = "sans-wqy") -> tuple[list[str], str, str]:
    """(training fonts, held-out test font, what is held out) as --font args.

    The pip fonts (``ocrkit[fonts]``) are three designs: the ``held_out`` one is the
    test font, the others train. Without them, with several system fonts the last
    is held out; with one font collection its JP face (Japanese glyph forms);
    with one font, that font (nothing is held out)."""
    from data_tools.synth.fonts import discover, faces, pip_font_files, preferred_face

    arg = lambda f: f"{f.path}:{f.index}"  # noqa: E731
    pip = dict((design, path) for path, design in pip_font_files(designs=True))
    if len(pip) > 1 and held_out not in pip:
        raise UsageError(f"--held-out {held_out}: not an installed pip font design "
                         f"(installed: {', '.join(sorted(pip))})")
    if held_out in pip and len(pip) > 1:
        train = [arg(preferred_face(p)) for d, p in pip.items() if d != held_out]
        return train, arg(preferred_face(pip[held_out])), f"design: {held_out}"
    specs, _ = discover()
    if len(specs) > 1:
        return [arg(f) for f in specs[:-1]], arg(specs[-1]), "font"
    family = [f for f in faces(specs[0].path) if "mono" not in f.name.lower()]
    held = [f for f in family if " JP" in f.name]
    if len(family) > 1 and held:
        return [arg(f) for f in family if f != held[0]], arg(held[0]), "face: JP"
    return [arg(specs[0])], arg(specs[0]), "nothing (one font)"


def _names(args: list[str]) -> str:
    from data_tools.synth.fonts import parse_font_arg

    return ", ".join(parse_font_arg(a).name for a in args)


DEMO_OUTPUTS = ("train", "test", "train.lmdb", "test.lmdb", "test-fonts", "test-fonts.lmdb",
                "val", "val.lmdb", "run", "charset.txt", MARKER)
TASKS = ("zh", "scene-en", "handwriting-en")
# The English demos' recognition heads; the Chinese demo's defaults are measured for CTC.
HEADS = ("ctc", "attention")

# Latin families kept out of an English demo's training and drawn in its test set: one
# of each kind (sans, serif, condensed, mono, display, heavy, script) for scenes, and
# 3 of the 12 handwriting families (two hands and a script) for handwriting.
HELD_OUT_FAMILIES = {
    "scene-en": ("Open Sans", "PT Serif", "Oswald", "Space Mono", "Righteous",
                 "Archivo Black", "Satisfy"),
    "handwriting-en": ("Kalam", "Shadows Into Light", "Dancing Script"),
}


@dataclass
class EnglishDemoConfig:
    """An English demo's settings (``--task scene-en`` or ``handwriting-en``): RGB
    word images ``height`` px high and up to ``max_width`` wide (keep-ratio), a
    VGG CRNN with CTC, augmentation on, best.pt chosen on a validation set in the
    training fonts. Defaults measured in docs/results.md#english-demos (CTC).

    ``head="attention"``: the same encoder with an attention decoder that reads
    ``max_chars`` characters at most (the longest word the task draws); its training
    step costs about a tenth more than CTC's on the CPU, and the defaults are CTC's."""

    task: str = "scene-en"
    out: str = "demo-out"
    train_images: int | None = None  # the task's: 28,000 scene, 25,000 handwriting
    test_images: int = 500
    val_images: int = 300
    steps: int | None = None  # 3,400 (both tasks)
    batch_size: int = 32
    lr: float = 2e-3
    warmup: float = 0.02
    height: int = 32
    max_width: int | None = None  # the task's: 128 scene, 160 handwriting (names run long)
    max_chars: int | None = None  # 16 scene, 20 handwriting
    hidden: int = 128
    channels: tuple = (32, 64, 128, 256)
    head: str = "ctc"
    bucket_widths: int = 16  # batches of similar width (train --bucket-widths)
    amp: bool | None = None  # None: bfloat16 on a CPU with bfloat16 instructions, on CUDA
    seed: int = 0
    device: str = "auto"
    workers: int = 1
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise UsageError(f"--head {self.head}: one of {', '.join(HEADS)}")
        scene = self.task == "scene-en"
        if self.train_images is None:
            self.train_images = 28000 if scene else 25000
        if self.steps is None:
            self.steps = 3400
        if self.max_width is None:
            self.max_width = 128 if scene else 160
        if self.max_chars is None:
            self.max_chars = 16 if scene else 20

    @property
    def domain(self) -> str:
        return self.task.split("-")[0]


def prepare_dir(out: str) -> None:
    """An empty folder, or an earlier demo's: only what a demo writes is removed."""
    from ocrkit.outputs import check_writable

    if os.path.exists(out):
        if not os.path.isdir(out):
            raise UsageError(f"--out {out}: exists and is not a directory")
        if os.listdir(out) and not os.path.isfile(os.path.join(out, MARKER)):
            raise UsageError(f"--out {out}: not empty and not an earlier demo; choose another --out")
        for name in DEMO_OUTPUTS:
            path = os.path.join(out, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.remove(path)
    check_writable(out, flag="--out", folder=True)
    os.makedirs(out, exist_ok=True)


def _make_set(synth_cfg, quiet: bool) -> str:
    """Synthesize a folder and its LMDB (``FOLDER.lmdb``); returns the folder."""
    from data_tools.labels import read_labels
    from data_tools.lmdb import write_lmdb
    from data_tools.synth import synthesize
    from ocrkit.console import progress_bar

    folder = synth_cfg.out
    name = os.path.basename(folder)
    with progress_bar(f"synth {name}", quiet) as (start, advance):
        synthesize(synth_cfg, on_start=start, on_progress=advance)
    with progress_bar(f"lmdb {name}", quiet) as (start, advance):
        start(synth_cfg.count)
        write_lmdb(read_labels(folder), folder + ".lmdb", sources=[folder],
                   on_item=lambda: advance(1))
    return folder


def _start(out: str, config: dict) -> None:
    prepare_dir(out)
    with open(os.path.join(out, MARKER), "w", encoding="utf-8") as fh:
        json.dump({"config": config}, fh, default=list)


def _examples(predictor, folder: str, say: Callable[[str], None], n: int = 5) -> list[dict]:
    """A few test images read by ``predictor`` (said and returned)."""
    from data_tools.images import read_image
    from data_tools.labels import read_labels

    samples = list(read_labels(folder))[:n]
    mode = "RGB" if predictor.input.channels == 3 else "L"
    out = []
    for item, (text, conf, _) in zip(samples, predictor([read_image(s.path, mode)
                                                         for s in samples])):
        out.append({"path": item.path, "label": item.label, "text": text,
                    "confidence": round(conf, 4)})
        say(f"  {os.path.basename(item.path)}: {text}  (label {item.label}, conf {conf:.2f})")
    return out


def run_demo(cfg: DemoConfig, say: Callable[[str], None]) -> dict:
    from data_tools.synth import SynthConfig
    from ocrkit.console import progress_bar
    from ocrkit.data import open_dataset
    from ocrkit.evaluate import evaluate
    from ocrkit.methods.supervised import train_supervised
    from ocrkit.predict import Predictor

    started = time.perf_counter()
    _start(cfg.out, dict(cfg.__dict__))
    train_fonts, test_font, held_out = _fonts(cfg.held_out)
    say(f"fonts: training {_names(train_fonts)}; held-out test {_names([test_font])} "
        f"({held_out})")
    sets = {}
    for name, n, seed, fonts in (("train", cfg.train_images, cfg.seed + 1, train_fonts),
                                 ("test", cfg.test_images, cfg.seed + 2, [test_font]),
                                 ("test-fonts", cfg.test_images, cfg.seed + 3, train_fonts),
                                 ("val", cfg.val_images, cfg.seed + 4, train_fonts)):
        sets[name] = _make_set(SynthConfig(
            out=os.path.join(cfg.out, name), count=n, seed=seed, cols=cfg.cols,
            charset_size=cfg.charset_size, fonts=tuple(fonts),
            workers=max(1, os.cpu_count() or 1)), cfg.quiet)
    width = json.load(open(os.path.join(sets["train"], "meta.json"), encoding="utf-8")
                      )["layout"]["width"]
    run = os.path.join(cfg.out, "run")
    opts = {
        # best.pt is picked on a validation set of the training fonts, neither test set:
        # choosing it on a test set would tune the figure reported for that very set
        "train_paths": [sets["train"] + ".lmdb"], "val_paths": [sets["val"] + ".lmdb"],
        "out": run, "max_steps": cfg.steps, "epochs": None, "batch_size": cfg.batch_size,
        "optimizer": "adam", "lr": cfg.lr, "weight_decay": 1e-6, "schedule": "onecycle",
        "warmup": cfg.warmup, "decay_epochs": 60.0, "grad_clip": 5.0, "height": 32,
        "width": width, "resize": "keep-ratio", "charset": None, "unknown": "skip",
        "device": cfg.device, "amp": None, "workers": cfg.workers, "seed": cfg.seed,
        "val_every": max(1, cfg.steps // 5), "save_every": max(1, cfg.steps // 5),
        "val_limit": None, "resume": False, "quiet": cfg.quiet, "augment": True,
        "backbone": "vgg-small", "backbone_args": {"channels": tuple(cfg.channels),
                                                   "width_stride": cfg.width_stride},
        "neck": "cap", "neck_args": {}, "sequence": "bilstm",
        "sequence_args": {"hidden": cfg.hidden, "layers": 1}, "classifier": "linear",
        "classifier_args": {}, "head": "ctc", "head_args": {},
    }
    summary = train_supervised(opts)
    predictor = Predictor(os.path.join(run, "best.pt"), cfg.device)
    with progress_bar("evaluate", cfg.quiet) as (start, advance):
        start(2 * cfg.test_images)
        result, _ = evaluate(predictor, open_dataset(sets["test"] + ".lmdb"), on_batch=advance)
        in_domain, _ = evaluate(predictor, open_dataset(sets["test-fonts"] + ".lmdb"),
                                on_batch=advance)
    examples = _examples(predictor, sets["test"], say)
    final = {"demo": cfg.out, "checkpoint": os.path.join(run, "best.pt"),
             "charset_size": summary["classes"] - 1, "train_images": cfg.train_images,
             "test_images": result["samples"], "held_out": held_out,
             "training_fonts": {k: round(in_domain[k], 4) for k in ("clp", "ilp", "one_minus_ned")},
             "train_steps": summary["steps"], "seconds": round(time.perf_counter() - started, 1),
             **{k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}}
    with open(os.path.join(cfg.out, MARKER), "w", encoding="utf-8") as fh:
        json.dump({"config": cfg.__dict__, "result": final, "examples": examples}, fh,
                  ensure_ascii=False, indent=1, default=list)
    return final


def english_amp(cfg: EnglishDemoConfig) -> bool | None:
    """The English demos' mixed precision: ``cfg.amp`` when set; else on (bfloat16) on
    a CPU that computes in bfloat16 natively (1.4-1.8x the float32 steps per second on
    this repository's 2-core machine; docs/results.md, "Batches of similar width and
    mixed precision on a CPU"), off on other CPUs (emulated bfloat16 is slower), and
    the training loop's default (on) on CUDA."""
    from ocrkit.device import cpu_has_bf16, resolve_device

    if cfg.amp is not None:
        return cfg.amp
    if resolve_device(cfg.device).type != "cpu":
        return None
    return cpu_has_bf16()


def english_train_options(cfg: EnglishDemoConfig, train: str, val: str, charset: str,
                          out: str) -> dict:
    """``train_supervised``'s options for an English demo: the VGG + CAP + 2 x BiLSTM
    encoder with ``cfg.head`` (an attention decoder reads ``cfg.max_chars`` characters
    at most, the longest label the demo draws)."""
    head_args = {"max_length": cfg.max_chars} if cfg.head == "attention" else {}
    return {
        "train_paths": [train], "val_paths": [val],
        "out": out, "max_steps": cfg.steps, "epochs": None, "batch_size": cfg.batch_size,
        "optimizer": "adam", "lr": cfg.lr, "weight_decay": 1e-6, "schedule": "onecycle",
        "warmup": cfg.warmup, "decay_epochs": 60.0, "grad_clip": 5.0, "height": cfg.height,
        "width": cfg.max_width, "resize": "keep-ratio", "channels": 3, "charset": charset,
        "unknown": "skip", "device": cfg.device, "amp": english_amp(cfg),
        "workers": cfg.workers, "seed": cfg.seed, "val_every": max(1, cfg.steps // 8),
        "save_every": max(1, cfg.steps // 8), "val_limit": None, "resume": False,
        "quiet": cfg.quiet, "augment": True, "bucket_widths": cfg.bucket_widths,
        "backbone": "vgg-small", "backbone_args": {"channels": tuple(cfg.channels),
                                                   "width_stride": 4},
        "neck": "cap", "neck_args": {}, "sequence": "bilstm",
        "sequence_args": {"hidden": cfg.hidden, "layers": 2}, "classifier": "linear",
        "classifier_args": {}, "head": cfg.head, "head_args": head_args,
    }


def run_english_demo(cfg: EnglishDemoConfig, say: Callable[[str], None]) -> dict:
    """The English chain (``--task scene-en|handwriting-en``); returns the final JSON:
    the held-out families' test set under ``lower-alnum`` (the benchmarks' scoring)
    with its exact scores under ``"exact"``, the training fonts' under
    ``"training_fonts"``."""
    from data_tools.synth import SynthConfig
    from data_tools.synth.latin import EN_CHARSET
    from ocrkit.charset import Charset
    from ocrkit.console import progress_bar
    from ocrkit.data import open_dataset
    from ocrkit.evaluate import evaluate
    from ocrkit.methods.supervised import train_supervised
    from ocrkit.predict import Predictor

    if cfg.task not in HELD_OUT_FAMILIES:
        raise UsageError(f"--task {cfg.task}: one of {', '.join(TASKS)}")
    started = time.perf_counter()
    _start(cfg.out, dict(cfg.__dict__))
    held = HELD_OUT_FAMILIES[cfg.task]
    say(f"{cfg.domain} words; font families held out for the test set: {', '.join(held)}")
    if cfg.head != "ctc":
        say(f"{cfg.head} head: words of up to {cfg.max_chars} characters, greedy decoding")
    common = dict(lang="en", domain=cfg.domain, height=cfg.height, width=cfg.max_width,
                  cols=cfg.max_chars, system_fonts=False, workers=max(1, os.cpu_count() or 1))
    sets = {}
    for name, n, seed, families in (
            ("train", cfg.train_images, cfg.seed + 1, {"exclude_font_families": held}),
            ("val", cfg.val_images, cfg.seed + 4, {"exclude_font_families": held}),
            ("test", cfg.test_images, cfg.seed + 2, {"font_families": held}),
            ("test-fonts", cfg.test_images, cfg.seed + 3, {"exclude_font_families": held})):
        sets[name] = _make_set(SynthConfig(out=os.path.join(cfg.out, name), count=n, seed=seed,
                                           **common, **families), cfg.quiet)
    run = os.path.join(cfg.out, "run")
    # the whole English charset, not the training labels' characters: a rare letter
    # (a capital accent, a currency sign) the training set happened to lack stays readable
    charset = os.path.join(cfg.out, "charset.txt")
    Charset(list(EN_CHARSET)).save(charset)
    opts = english_train_options(cfg, sets["train"] + ".lmdb", sets["val"] + ".lmdb", charset,
                                 run)
    if opts["amp"]:
        say("mixed precision (bfloat16) on: this CPU computes in bfloat16 natively")
    summary = train_supervised(opts)
    predictor = Predictor(os.path.join(run, "best.pt"), cfg.device)
    with progress_bar("evaluate", cfg.quiet) as (start, advance):
        start(2 * cfg.test_images)
        held_out, _ = evaluate(predictor, open_dataset(sets["test"] + ".lmdb"),
                               on_batch=advance, protocol="lower-alnum")
        in_domain, _ = evaluate(predictor, open_dataset(sets["test-fonts"] + ".lmdb"),
                                on_batch=advance, protocol="lower-alnum")
    examples = _examples(predictor, sets["test"], say)
    keys = ("accuracy", "cer", "one_minus_ned")
    final = {"demo": cfg.out, "task": cfg.task, "checkpoint": os.path.join(run, "best.pt"),
             "charset_size": summary["classes"] - 1, "train_images": cfg.train_images,
             "held_out_families": list(held),
             "training_fonts": {k: round(in_domain[k], 4) for k in keys},
             "train_steps": summary["steps"], "seconds": round(time.perf_counter() - started, 1),
             **{k: round(v, 4) if isinstance(v, float) else v for k, v in held_out.items()}}
    with open(os.path.join(cfg.out, MARKER), "w", encoding="utf-8") as fh:
        json.dump({"config": cfg.__dict__, "result": final, "examples": examples}, fh,
                  ensure_ascii=False, indent=1, default=list)
    return final

