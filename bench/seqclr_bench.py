"""SeqCLR's two evaluation protocols (Aberdam et al., CVPR 2021, Tables 1 and 2), from the CLI.

    python bench/seqclr_bench.py --out bench-out/seqclr                     # ~2 h, 2 cores
    python bench/seqclr_bench.py --out bench-out/seqclr --domains zh --protocols semi
    python bench/seqclr_bench.py --scale smoke --out /tmp/sb                # every stage
    python bench/seqclr_bench.py --scale en --data-from bench-out/english \
        --out bench-out/seqclr-en --protocols semi --pretrainings seqclr-window --fractions 0.1

Two domains, each with its own data (``ocrkit synth``):

* ``handwriting``: English handwriting-like words (``--lang en --domain handwriting``,
  RGB); training and validation images in the training font families, the test
  images in the three families the English demos hold out
  (``ocrkit.demo.HELD_OUT_FAMILIES``), scored ``--protocol lower-alnum``.
* ``zh``: ocrkit's Chinese single rows (8 characters of the 100 most frequent,
  printed, grey: the rows bench/paper_tables.py's Table 2 reads at cpu scale);
  validation and test from other seeds (other text), scored exactly.

The training images are at once the unlabelled pool (``ocrkit pretrain`` ignores
their labels) and the labelled set: ``train --label-fraction F --subset-seed 0``
keeps the same images for every method, and the 5 % subset lies inside the 10 %
one. Every ``train`` chooses best.pt on the validation split only; the test split
is read once per run, at the end, by ``ocrkit evaluate``.

Pre-trainings (``ocrkit pretrain``, one seed each: seed 0): SeqCLR on R = H with
each instance mapping (all, window with T' = 5, frame) and the projection head
``pretrain`` gives it by default (Table 4's best: BiLSTM for all and window, a
per-frame MLP for frame), and a SimCLR-style baseline: R = V, all-to-instance,
a per-frame MLP head (SimCLR's head is an MLP; a BiLSTM head on V would put back
the context SimCLR lacks), with SeqCLR's sequence-preserving augmentations (the
paper's SimCLR used SimCLR's own; ``pretrain`` has Appendix B's only).

Protocol 1, decoder evaluation (Table 1): the encoder frozen (``--freeze-encoder``:
weights and BatchNorm statistics fixed), a CTC classifier or an attention decoder
trained on 100 % of the labels; one row per pre-training and a floor, a frozen
encoder at its random initialisation (``pretrain --lr 1e-12 --augment-ops 0``:
weights untouched, BatchNorm statistics measured on the clean pool). With the
SimCLR-style encoder (R = V) only backbone and neck are frozen: the BiLSTM was
never part of its f, so it trains with the decoder.

Protocol 2, semi-supervised (Table 2): the whole recognizer fine-tuned from each
pre-trained encoder, and supervised-only from a random initialisation, with 5 %,
10 % and 100 % of the labels: the same images, steps and recipe (train's
defaults: Adam 1e-3, one-cycle, batch 32, its augmentation) for every method.
``--recipe paper`` trains every method with Appendix D's optimizer instead
(AdaDelta, learning rate 10, x0.1 at 60 % and 80 %; runs named ``...-paper``, so
they share an OUT and its pre-trainings with the scale's recipe).
``--lpft-steps N`` adds, for each pre-training, the same fine-tuning after a probe:
N steps of the decoder alone on the frozen encoder (``--freeze-encoder``), then the
whole recognizer from it (``train --init-from``), rows ``<pre-training>+lpft``
("linear probing, then fine-tuning": Kumar et al., ICLR 2022, found that a random
head's first gradients can spoil pre-trained features).
The 10 % rows of supervised-only and of each SeqCLR mapping are trained with
``--seed`` 0, 1 and 2 (initialisation of what is not pre-trained, batch order,
augmentation) and reported as mean (min-max); the other rows with seed 0 only.
The decoder is CTC (``--semi-heads ctc,attention`` adds the attention decoder).

Metrics: word accuracy and 1 - NED on the test split, in %. The issue's target is
printed as a conclusion computed from the numbers: SeqCLR + 10 % labels beats
supervised-only with the same 10 % by at least 5 points (word accuracy or
1 - NED) beyond the seeds' spread, which here means that its *worst* seed is
at least 5 points above supervised-only's *best* seed.

``--scale en`` is handwriting past the English learning threshold: the English
bench's data (60,000 training words, so 10 % = 6,000 labels; ``--data-from`` reads
them from a bench/english_bench.py OUT), its encoder (1.9 M parameters), geometry
(192 px wide, up to 20 characters), recipe and bucketed batches; pre-training 2,000
steps of batch 64 (about 37 minutes in bfloat16 here: 57 images a second, two views
each), fine-tuning 4,000 steps (about 11 minutes each). The command above, the
target's rows alone (supervised-only and SeqCLR-window at 10 %, 3 seeds each), takes
about 1 h 45 min. ``--pretrainings``, ``--fractions`` and ``--domains`` choose a part
of the tables; a later run into the same OUT adds the rest.

``--scale cpu`` (the default) is sized to run both domains and both protocols in
about 2 hours on 2 idle cores: a 0.28 M-parameter encoder (VGG (16, 32, 64, 96)
+ CAP + one BiLSTM of 64 units per direction, 32 px high), 8,000 training images
per domain, 300 validation and 500 test images, pre-training 400 steps of batch
64, decoder evaluation and fine-tuning 800 steps of batch 32. See
docs/pretraining.md ("Bench") for how the time was estimated; the Chinese rows
alone took 107 minutes in float32. Pre-training and training run in bfloat16 where
the CPU computes in it (``--amp``, auto as in the English demos; ``--no-amp`` for
float32, which the Chinese rows in docs/results.md used). ``--scale smoke`` runs
every stage on a few images for a few steps.

Every stage is an ``ocrkit`` command run as a subprocess; its JSON is kept under
OUT, and a stage whose result exists is not run again, so an interrupted run
continues where it stopped (stages are known by name, not by their settings: give
other settings a new OUT). The tables (Markdown) are printed at the end and
written to OUT/results.md; OUT/results.json has every number with the command,
the commit and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial

from stages import Stages, amp_flags, format_spread, provenance, speed_options, spread

DOMAINS = ("handwriting", "zh")
PROTOCOLS = ("decoder", "semi")
HEADS = ("ctc", "attention")
# name: (row label, pretrain options)
PRETRAININGS = {
    "seqclr-all": ("SeqCLR all-to-instance", ["--mapping", "all"]),
    "seqclr-window": ("SeqCLR window-to-instance", ["--mapping", "window"]),
    "seqclr-frame": ("SeqCLR frame-to-instance", ["--mapping", "frame"]),
    "simclr-v": ("SimCLR-style (R = V, all, MLP)",
                 ["--representation", "visual", "--mapping", "all", "--projection", "mlp"]),
    # not in the paper: SimCLR's colour distortion on top (pretrain --colour-distortion)
    "seqclr-window-colour": ("SeqCLR window-to-instance + colour distortion",
                             ["--mapping", "window", "--colour-distortion", 1]),
    # Issue 29's "why" at a fixed budget of images: the batch (more negatives per anchor)
    # and the augmentation strength (at least 4 of Appendix B's 7 operations per view)
    "seqclr-window-b4x": ("SeqCLR window-to-instance, 4x batch, 1/4 steps",
                          ["--mapping", "window"]),
    "seqclr-window-strong": ("SeqCLR window-to-instance, 4-7 augmentations per view",
                             ["--mapping", "window", "--augment-ops", "4:7"]),
    # ... and the steps: a quarter of them, so that the frozen encoder's readout at 1/4
    # and at the whole budget shows whether it still grows with pre-training steps
    "seqclr-window-short": ("SeqCLR window-to-instance, 1/4 steps", ["--mapping", "window"]),
}
# pre-trainings with another budget: name -> (steps divisor, batch factor)
BUDGET = {"seqclr-window-b4x": (4, 4), "seqclr-window-short": (4, 1)}
DEFAULT_PRETRAININGS = ("seqclr-all", "seqclr-window", "seqclr-frame", "simclr-v")
SEQCLR = tuple(k for k in PRETRAININGS if k.startswith("seqclr-"))  # SimCLR's is a baseline
# --lpft-steps: each pre-training also fine-tuned after a probe (decoder on the frozen
# encoder first; Kumar et al., ICLR 2022), as the method "<pre-training>+lpft"
LPFT = "+lpft"
LABELS = {"random": "random encoder (frozen floor)", "supervised": "supervised only",
          "control": "supervised-only encoder, 10 % of the labels, CTC (positive control)",
          **{k: v[0] for k, v in PRETRAININGS.items()},
          **{k + LPFT: v[0] + ", probe then fine-tune" for k, v in PRETRAININGS.items()}}


# The encoders: "small" (0.28 M parameters, the cpu scale's) and "demo" (the English
# demos' and bench/english_bench.py's: 1.9 M with its CTC classifier).
ENCODERS = {"small": {"channels": "(16,32,64,96)", "hidden": 64, "layers": 1},
            "demo": {"channels": "(32,64,128,256)", "hidden": 128, "layers": 2}}


def encoder_args(width_stride: int, encoder: str = "small") -> list:
    """The encoder's model options (pretrain and train must be given the same)."""
    e = ENCODERS[encoder]
    return ["--backbone", "vgg-small", "--backbone-arg", f"channels={e['channels']}",
            "--backbone-arg", f"width_stride={width_stride}", "--neck", "cap",
            "--sequence-arg", f"hidden={e['hidden']}", "--sequence-arg", f"layers={e['layers']}"]


# Per domain: images, geometry, scoring. Handwriting words run up to 16 characters
# in 160 px (40 frames at width stride 4); Chinese rows are 8 characters in 212 px
# (26 frames at width stride 8, 3 per character).
DOMAIN = {
    "handwriting": {"synth": ["--lang", "en", "--domain", "handwriting", "--cols", 16,
                              "--no-system-fonts"],
                    "height": 32, "width": 160, "channels": 3, "width_stride": 4,
                    "max_length": 16, "protocol": "lower-alnum"},
    "zh": {"synth": ["--rows", 1, "--cols", 8, "--charset-size", 100],
           "height": 32, "width": 224, "channels": 1, "width_stride": 8, "max_length": 8,
           "protocol": "exact"},
}
# Fine-tuning and decoder training: train's defaults, written out so they are on record.
RECIPE = ["--optimizer", "adam", "--lr", "1e-3", "--schedule", "onecycle", "--warmup", "0.1"]
# bench/english_bench.py's recipe (keep-ratio and RGB are in the domain's geometry).
ENGLISH_RECIPE = ["--optimizer", "adam", "--lr", "1e-3", "--schedule", "onecycle",
                  "--warmup", "0.05"]
# --recipe paper: Appendix D's decoder-evaluation and fine-tuning optimizer (AdaDelta,
# decay rate 0.95, learning rate 10, x0.1 at 60 % and 80 % of the steps, weight decay
# 1e-4, gradient clipping 5) for every method alike; the paper's batch of 256 and 50K
# iterations are not (the scale's batch and steps stay). Runs are named "...-paper",
# so both recipes' rows can share an OUT and its pre-trainings.
PAPER_RECIPE = ["--optimizer", "adadelta", "--lr", "10", "--schedule", "steps",
                "--weight-decay", "1e-4", "--grad-clip", "5"]
SCALES = {
    # ~2 h on 2 cores (docs/pretraining.md, "Bench"). 800 steps of training: at 400 a
    # supervised zh run on 800 rows (the 10 % subset) was still on the CTC plateau (loss
    # 4.5, 0 % CLP), as were bench/paper_tables.py's Table 5 students at 400 steps.
    "cpu": {"domains": DOMAINS, "train": 8000, "val": 300, "test": 500, "pretrain_steps": 400,
            "pretrain_batch": 64, "floor_steps": 50, "decoder_steps": 800,
            "finetune_steps": 800, "batch": 32, "fractions": (0.05, 0.1, 1.0),
            "seeds": (0, 1, 2), "encoder": "small", "recipe": RECIPE, "buckets": 0},
    # Handwriting past the learning threshold: the English bench's data (60,000 words,
    # 10 % = 6,000 labelled; --data-from reads that bench's OUT instead of synthesising
    # them again), its encoder, geometry and recipe, so the 100 % supervised row is that
    # bench's handwriting CTC row at 4,000 steps instead of 5,000. On the 8,000-word
    # cpu scale the 0.28 M encoder never left the plateau in 800 steps (docs/results.md).
    "en": {"domains": ("handwriting",), "train": 60000, "val": 500, "test": 1000,
           "pretrain_steps": 2000, "pretrain_batch": 64, "floor_steps": 50,
           "decoder_steps": 4000, "finetune_steps": 4000, "batch": 32,
           "fractions": (0.05, 0.1, 1.0), "seeds": (0, 1, 2), "encoder": "demo",
           "recipe": ENGLISH_RECIPE, "buckets": 16,
           "geometry": {"handwriting": {"width": 192, "max_length": 20, "cols": 20}}},
    "smoke": {"domains": DOMAINS, "train": 40, "val": 8, "test": 8, "pretrain_steps": 2,
              "pretrain_batch": 8, "floor_steps": 1, "decoder_steps": 2, "finetune_steps": 2,
              "batch": 8, "fractions": (0.05, 0.1, 1.0), "seeds": (0, 1, 2),
              "encoder": "small", "recipe": RECIPE, "buckets": 0},
}


def domain_spec(scale: dict, domain: str) -> dict:
    """``DOMAIN[domain]`` with the scale's geometry over it (synth's --cols too)."""
    d = {**DOMAIN[domain], **scale.get("geometry", {}).get(domain, {})}
    if "cols" in d:
        synth = list(d["synth"])
        synth[synth.index("--cols") + 1] = d["cols"]
        d["synth"] = synth
    return d


class Bench(Stages):
    """The stages of one bench run (data, pre-trainings, trainings, evaluations)."""

    def __init__(self, out: str, scale: dict, device: str, amp: list[str],
                 data_from: str | None = None) -> None:
        super().__init__(out)
        self.scale, self.device, self.amp, self.data_from = scale, device, amp, data_from
        self.speed = [*amp, *(["--bucket-widths", scale["buckets"]] if scale["buckets"] else [])]

    def path(self, *parts: str) -> str:
        return os.path.join(self.out, *parts)

    def data(self, domain: str) -> dict[str, str]:
        """train / val / test folders of ``domain`` and the charset every run learns."""
        if self.data_from:
            return english_bench_data(self.data_from, domain)
        d, s = domain_spec(self.scale, domain), self.scale
        common = [*d["synth"], "--height", d["height"], "-q", "--overwrite"]
        if domain == "handwriting":
            common += ["--width", d["width"]]
            families = held_out()
            fonts = {"train": [a for f in families for a in ("--exclude-font-family", f)]}
            fonts["val"] = fonts["train"]
            fonts["test"] = [a for f in families for a in ("--font-family", f)]
        else:
            fonts = {"train": [], "val": [], "test": []}
        sets = {}
        for split, seed in (("train", 1), ("val", 4), ("test", 2)):
            folder = self.path("data", f"{domain}-{split}")
            self.cached(f"{domain}-synth-{split}", partial(
                self.ocrkit, "synth", "-n", s[split], "--seed", seed, *fonts[split], *common,
                "--out", folder))
            sets[split] = folder
        sets["charset"] = charset_file(self, domain, dict(sets))
        return sets

    def model_args(self, domain: str) -> list:
        d = domain_spec(self.scale, domain)
        return ["--height", d["height"], "--width", d["width"], "--channels", d["channels"],
                *encoder_args(d["width_stride"], self.scale["encoder"])]

    def pretrain(self, domain: str, data: dict, name: str) -> dict:
        """One pre-training (seed 0) on the training images, best.pt by validation
        NT-Xent; ``random`` is the floor (no update: see the module doc)."""
        s, run = self.scale, self.path("runs", domain, f"pretrain-{name}")
        if name == "random":
            args = ["--max-steps", s["floor_steps"], "--lr", "1e-12", "--augment-ops", "0",
                    "-b", s["pretrain_batch"]]
        else:
            steps, batch = pretrain_budget(s, name)
            args = [*PRETRAININGS[name][1], "--max-steps", steps, "-b", batch,
                    "--val", data["val"], "--val-every", max(1, steps // 4)]
        result = self.cached(f"{domain}-pretrain-{name}", partial(
            self.ocrkit, "pretrain", "--data", data["train"], "-o", run,
            *self.model_args(domain), *args, "--seed", 0, "--device", self.device, *self.amp,
            "--save-every", 10 ** 6, "--overwrite", "-q"))
        return {**result, "checkpoint": os.path.join(run, "best.pt")}

    def recognizer(self, domain: str, data: dict, name: str, args: list, steps: int,
                   head: str, seed: int) -> dict:
        """Train (best.pt on the validation split), then read the test split once."""
        d = domain_spec(self.scale, domain)
        heads = ["--head", "attention", "--max-length", d["max_length"]] \
            if head == "attention" else []
        recipe = self.scale["recipe"]
        if self.scale.get("finetune_recipe") == "paper":
            recipe, name = PAPER_RECIPE, f"{name}-paper"
        run = self.path("runs", domain, name)
        # a run that starts from a whole recognizer (--init-from) has its model and charset
        model = [] if "--init-from" in args else \
            ["--charset", data["charset"], *self.model_args(domain), *heads]
        train = self.cached(f"{domain}-train-{name}", partial(
            self.ocrkit, "train", "--train", data["train"], "--val", data["val"], "-o", run,
            *model, *recipe, *args, "-b", self.scale["batch"], "--max-steps", steps,
            "--val-every", max(1, steps // 5), "--save-every", 10 ** 6, "--seed", seed,
            "--device", self.device, *self.speed,
            "--overwrite", "-q"))
        test = self.cached(f"{domain}-eval-{name}", partial(
            self.ocrkit, "evaluate", os.path.join(run, "best.pt"), data["test"], "--protocol",
            d["protocol"], "--device", self.device, "-q"))
        return {"train_seconds": train["_seconds"], "best_step": train.get("best_step"),
                "accuracy": 100 * test["accuracy"], "one_minus_ned": 100 * test["one_minus_ned"],
                "samples": test["samples"], "checkpoint": os.path.join(run, "best.pt")}

    def probe_then_finetune(self, domain: str, data: dict, name: str, encoder: str,
                            subset: list, head: str, seed: int) -> dict:
        """LP-FT: the decoder trained on the frozen encoder for ``lpft_steps``
        (``--freeze-encoder``), then the whole recognizer fine-tuned from it
        (``--init-from``) for the scale's fine-tuning steps; the second run's result,
        with the probe's seconds added."""
        probe = self.recognizer(domain, data, f"probe-{name}",
                                ["--init-encoder", encoder, "--freeze-encoder", *subset],
                                self.scale["lpft_steps"], head, seed)
        whole = self.recognizer(domain, data, name, ["--init-from", probe["checkpoint"], *subset],
                                self.scale["finetune_steps"], head, seed)
        return {**whole, "train_seconds": whole["train_seconds"] + probe["train_seconds"],
                "probe": {k: probe[k] for k in ("accuracy", "one_minus_ned", "best_step")}}


def english_bench_data(folder: str, domain: str) -> dict[str, str]:
    """The splits and charset bench/english_bench.py wrote under ``folder``."""
    if domain != "handwriting":
        sys.exit(f"--data-from holds English handwriting only; not {domain}")
    sets = {split: os.path.join(folder, "data", f"handwriting-{split}.lmdb")
            for split in ("train", "val", "test")}
    sets["charset"] = os.path.join(folder, "charset.txt")
    missing = [p for p in sets.values() if not os.path.exists(p)]
    if missing:
        sys.exit(f"--data-from {folder}: no {', '.join(missing)} (run bench/english_bench.py "
                 f"--out {folder} --domains handwriting first)")
    return sets


def held_out() -> tuple[str, ...]:
    from ocrkit.demo import HELD_OUT_FAMILIES

    return HELD_OUT_FAMILIES["handwriting-en"]


def charset_file(bench: Bench, domain: str, splits: dict[str, str]) -> str:
    """The classes every run of ``domain`` learns, whatever its fraction: handwriting,
    ocrkit's whole English charset (as the English demos and bench); zh, the
    characters synth drew in any split (the 100 most frequent and punctuation)."""
    from ocrkit.charset import Charset

    path = bench.path("data", f"{domain}-charset.txt")
    if os.path.isfile(path):
        return path
    if domain == "zh":
        chars: dict[str, None] = {}
        for folder in splits.values():
            chars.update(dict.fromkeys(Charset.load(os.path.join(folder, "charset.txt")).chars))
        Charset(list(chars)).save(path)
    else:
        from data_tools.synth.latin import EN_CHARSET

        Charset(list(EN_CHARSET)).save(path)
    return path


def fraction_tag(fraction: float) -> str:
    return f"{round(100 * fraction):d}pct"


def stat(values: list[float]) -> dict:
    mean, lo, hi = spread(values)
    return {"mean": mean, "min": lo, "max": hi, "seeds": len(values), "values": values}


def summarise(runs: list[dict]) -> dict:
    """Several seeds' test results -> mean, min and max of each metric."""
    return {"accuracy": stat([r["accuracy"] for r in runs]),
            "one_minus_ned": stat([r["one_minus_ned"] for r in runs]),
            "train_seconds": sum(r["train_seconds"] for r in runs) / len(runs)}


def subset_args(fraction: float) -> list:
    """The labelled share every method of one fraction trains on (the same subset)."""
    return ["--label-fraction", fraction, "--subset-seed", 0]


def finetune_name(method: str, head: str, fraction: float) -> str:
    """A protocol-2 run's name without its seed (``-s<seed>`` follows)."""
    return f"ft-{method}-{head}-{fraction_tag(fraction)}"


def control_encoder(bench: Bench, domain: str, data: dict) -> dict:
    """Protocol 1's positive control: protocol 2's supervised-only recognizer (CTC,
    10 % of the labels, seed 0: the same stage, trained once for both protocols),
    whose encoder is readable by construction. Decoders on it, frozen, show what the
    protocol reads from an encoder that carries the text; without it, a floor-level
    reading could be the protocol's as well as the encoder's."""
    return bench.recognizer(domain, data, f"{finetune_name('supervised', 'ctc', 0.1)}-s0",
                            subset_args(0.1), bench.scale["finetune_steps"], "ctc", 0)


def decoder_protocol(bench: Bench, domain: str, data: dict, encoders: dict) -> list[dict]:
    """Table 1: every encoder frozen, a CTC and an attention decoder on all labels;
    and the positive control (:func:`control_encoder`)."""
    rows = []
    encoders = {**encoders, "control": control_encoder(bench, domain, data)}
    for name, encoder in encoders.items():
        for head in HEADS:
            run = bench.recognizer(domain, data, f"dec-{name}-{head}",
                                   ["--init-encoder", encoder["checkpoint"], "--freeze-encoder"],
                                   bench.scale["decoder_steps"], head, seed=0)
            rows.append({"domain": domain, "method": name, "head": head, **summarise([run])})
    return rows


def semi_protocol(bench: Bench, domain: str, data: dict, encoders: dict,
                  heads: list[str]) -> list[dict]:
    """Table 2: fine-tuned from each pre-training and supervised-only, per fraction;
    3 seeds at 10 % for supervised-only and the SeqCLR mappings."""
    rows, s = [], bench.scale
    pretrained = [m for m in encoders if m != "random"]
    methods = ["supervised", *pretrained,
               *(f"{m}{LPFT}" for m in pretrained if s.get("lpft_steps"))]
    for head in heads:
        for method in methods:
            base = method.removesuffix(LPFT)
            init = [] if method == "supervised" else \
                ["--init-encoder", encoders[base]["checkpoint"]]
            for fraction in s["fractions"]:
                seeds = s["seeds"] if fraction == 0.1 and base in ("supervised", *SEQCLR) \
                    else s["seeds"][:1]
                subset = subset_args(fraction)
                steps = s["lpft_steps"] if method.endswith(LPFT) else ""  # in the run's name
                name = finetune_name(f"{method}{steps}", head, fraction)
                runs = [bench.probe_then_finetune(domain, data, f"{name}-s{seed}",
                                                  encoders[base]["checkpoint"], subset, head,
                                                  seed) if method.endswith(LPFT)
                        else bench.recognizer(domain, data, f"{name}-s{seed}", [*init, *subset],
                                              s["finetune_steps"], head, seed)
                        for seed in seeds]
                rows.append({"domain": domain, "method": method, "head": head,
                             "fraction": fraction, **summarise(runs)})
    return rows


METRICS = (("accuracy", "word accuracy"), ("one_minus_ned", "1 - NED"))
TARGET_POINTS = 5.0  # the margin, in points of either metric


def pretrain_budget(scale: dict, name: str) -> tuple[int, int]:
    """(steps, batch) of pre-training ``name``: the scale's, or (BUDGET) 1/d of its steps
    with a batch k times larger (d = k: as many images with more negatives per anchor)."""
    d, k = BUDGET.get(name, (1, 1))
    return max(1, scale["pretrain_steps"] // d), scale["pretrain_batch"] * k


def target(rows: list[dict], margin: float = TARGET_POINTS) -> dict:
    """The issue's target from the 10 % rows: for every domain, head, SeqCLR mapping
    and metric, the gap of the means and the worst SeqCLR seed minus the best
    supervised seed; met where the latter is at least ``margin`` points."""
    at10 = {(r["domain"], r["head"], r["method"]): r for r in rows if r.get("fraction") == 0.1}
    cases = []
    for (domain, head, method), r in at10.items():
        base = at10.get((domain, head, "supervised"))
        if method.removesuffix(LPFT) not in SEQCLR or base is None:
            continue
        for key, label in METRICS:
            ours, theirs = r[key], base[key]
            cases.append({"domain": domain, "head": head, "mapping": method, "metric": label,
                          "gap": ours["mean"] - theirs["mean"],
                          "beyond_spread": ours["min"] - theirs["max"],
                          "seqclr": (ours["min"], ours["max"]),
                          "supervised": (theirs["min"], theirs["max"]),
                          "seeds": min(ours["seeds"], theirs["seeds"])})
    met = [c for c in cases if c["beyond_spread"] >= margin]
    best = max(cases, key=lambda c: c["beyond_spread"], default=None)
    return {"met": bool(met), "cases_met": len(met), "best": best, "cases": cases}


def conclusion(result: dict) -> str:
    """The target as one line: yes/no, then the case that decides it (the one with the
    largest margin; when no case meets the target, the closest)."""
    line = ("SeqCLR + 10 % labels beats supervised-only with the same 10 % by >= 5 points "
            "beyond the seeds' spread: ")
    best = result["best"]
    if best is None:
        return line + "not measured (no 10 % rows of both supervised-only and SeqCLR)"
    others = result["cases_met"] - 1
    lo, hi = best["seqclr"]
    slo, shi = best["supervised"]
    return (line + ("yes (" if result["met"] else "no (closest: ")
            + f"{best['domain']}, {LABELS[best['mapping']].replace('SeqCLR ', '')}, "
            f"{best['head']} decoder, {best['metric']}: gap {best['gap']:+.1f} points; "
            f"spread over {best['seeds']} seeds: SeqCLR {lo:.1f}-{hi:.1f}, supervised "
            f"{slo:.1f}-{shi:.1f}; worst SeqCLR seed - best supervised seed = "
            f"{best['beyond_spread']:+.1f}" + (f"; {others} more cases" if others > 0 else "")
            + ")")


def _cell(s: dict) -> str:
    """``mean (min-max)``, or the value alone for one seed."""
    return format_spread(s["mean"], s["min"], s["max"], s["seeds"])


def pretraining_table(pre: list[dict]) -> list[str]:
    out = [("Pre-training (one seed, 0): validation NT-Xent of best.pt, and NT-Xent and "
            "positive-pair top-1 accuracy (%) at the last validation"), "",
           ("| domain | pre-training | steps | best step | best NT-Xent | last NT-Xent "
            "| last top-1 | s |"),
           "|---|---|---|---|---|---|---|---|"]
    for p in pre:
        val = p.get("last_val") or {}
        best = f"{-p['best_metric']:.3f}" if p.get("best_metric") is not None else ""
        last = f"{val['loss']:.3f}" if "loss" in val else ""
        top1 = f"{100 * val['top1']:.1f}" if "top1" in val else ""
        out.append(f"| {p['domain']} | {LABELS[p['method']]} | {p.get('steps', '')} "
                   f"| {p.get('best_step', '')} | {best} | {last} | {top1} "
                   f"| {p['_seconds']:.0f} |")
    return out


def decoder_table(dec: list[dict], domains: list[str], scale: dict) -> list[str]:
    out = [(f"Protocol 1, decoder evaluation (Table 1): frozen encoder, decoder trained on "
            f"100 % of the labels, {scale['decoder_steps']} steps, seed 0"), "",
           "| pre-training | decoder | "
           + " | ".join(f"{d}: word acc | {d}: 1 - NED" for d in domains) + " |",
           "|---|---|" + "---|---|" * len(domains)]
    by = {(r["domain"], r["method"], r["head"]): r for r in dec}
    for method in ("random", *PRETRAININGS, "control"):
        for head in HEADS:
            cells = []
            for d in domains:
                r = by.get((d, method, head))
                cells += [_cell(r["accuracy"]), _cell(r["one_minus_ned"])] if r else ["", ""]
            if any(cells):
                out.append(f"| {LABELS[method]} | {head} | " + " | ".join(cells) + " |")
    return out


def semi_tables(semi: list[dict], domains: list[str], scale: dict) -> list[str]:
    fractions, seeds = scale["fractions"], scale["seeds"]
    out = [(f"Protocol 2, semi-supervised (Table 2): fine-tuned, {scale['finetune_steps']} "
            f"steps at every fraction; the 10 % rows of supervised-only and SeqCLR: mean "
            f"(min-max) over seeds {', '.join(map(str, seeds))}; other rows seed {seeds[0]}"
            + (f"; '+lpft': {scale['lpft_steps']} steps of the decoder alone on the frozen "
               "encoder first" if scale.get("lpft_steps") else ""))]
    by = {(r["domain"], r["head"], r["method"], r["fraction"]): r for r in semi}
    for d in domains:
        for head in [h for h in HEADS if any(r["head"] == h for r in semi if r["domain"] == d)]:
            out += ["", f"{d}, {head} decoder:", "",
                    "| method | " + " | ".join(f"{round(100 * f)} %: word acc | "
                                              f"{round(100 * f)} %: 1 - NED"
                                              for f in fractions) + " |",
                    "|---|" + "---|---|" * len(fractions)]
            for method in ("supervised", *PRETRAININGS, *(m + LPFT for m in PRETRAININGS)):
                cells = []
                for f in fractions:
                    r = by.get((d, head, method, f))
                    cells += [_cell(r["accuracy"]), _cell(r["one_minus_ned"])] if r else ["", ""]
                if any(cells):
                    out.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    return out


def render(dec: list[dict], semi: list[dict], pre: list[dict], domains: list[str],
           scale_name: str, scale: dict, stage_seconds: float) -> str:
    """The Markdown tables and, with protocol 2, the target's conclusion line."""
    recipe = "" if scale.get("finetune_recipe", "scale") == "scale" else \
        f" --recipe {scale['finetune_recipe']}"
    out = [(f"SeqCLR bench (bench/seqclr_bench.py --scale {scale_name}{recipe}; all stages "
            f"{stage_seconds / 60:.0f} min). Test split, %: word accuracy and 1 - NED; "
            "handwriting in held-out font families scored lower-alnum, zh exactly.")]
    for part in ((pretraining_table(pre) if pre else []),
                 (decoder_table(dec, domains, scale) if dec else []),
                 (semi_tables(semi, domains, scale) if semi else [])):
        if part:
            out += ["", *part]
    if semi:
        out += ["", conclusion(target(semi))]
    return "\n".join(out)


def parse_list(value: str, allowed: tuple, what: str, parser) -> list[str]:
    items = [v for v in value.split(",") if v]
    bad = sorted(set(items) - set(allowed))
    if bad or not items:
        parser.error(f"{what}: {', '.join(bad) or 'none given'}; choose from "
                     f"{', '.join(allowed)}")
    return [a for a in allowed if a in items]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-out/seqclr")
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--domains", help="handwriting, zh or both [the scale's: cpu both, "
                        "en handwriting]")
    parser.add_argument("--pretrainings", default=",".join(DEFAULT_PRETRAININGS),
                        help="which pre-trainings, comma-separated, of "
                        + ", ".join(PRETRAININGS) + " [" + ",".join(DEFAULT_PRETRAININGS)
                        + ": the paper's]")
    parser.add_argument("--fractions", help="label fractions of protocol 2, comma-separated "
                        "[the scale's: 0.05,0.1,1]; the target reads the 0.1 rows")
    parser.add_argument("--data-from", metavar="DIR",
                        help="an English bench's OUT (bench/english_bench.py): its handwriting "
                        "train/val/test and charset instead of synthesising new ones")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS),
                        help="decoder (Table 1), semi (Table 2) or both, comma-separated")
    parser.add_argument("--semi-heads", default="ctc",
                        help="decoders of protocol 2: ctc, attention or ctc,attention [ctc]")
    parser.add_argument("--recipe", choices=("scale", "paper"), default="scale",
                        help="optimizer of decoder training and fine-tuning: the scale's "
                        "(Adam, one-cycle) or the paper's (AdaDelta lr 10, x0.1 steps; runs "
                        "named ...-paper) [scale]")
    parser.add_argument("--lpft-steps", type=int, default=0, metavar="N",
                        help="protocol 2: also fine-tune each pre-training after N steps of "
                        "its decoder alone on the frozen encoder (LP-FT; rows "
                        "'<pre-training>+lpft') [0: off]")
    parser.add_argument("--train-images", type=int, help="per domain [scale's]")
    parser.add_argument("--pretrain-steps", type=int, help="[scale's]")
    parser.add_argument("--decoder-steps", type=int, help="protocol 1 [scale's]")
    parser.add_argument("--finetune-steps", type=int, help="protocol 2 [scale's]")
    parser.add_argument("--device", default="auto")
    speed_options(parser)  # the Chinese rows of docs/results.md ran with --no-amp (float32)
    parser.add_argument("--bucket-widths", type=int, metavar="N",
                        help="batches of similar width in training (0: off) [the scale's: "
                        "en 16, cpu 0]")
    args = parser.parse_args()
    amp = amp_flags(args.amp, args.device)
    scale = dict(SCALES[args.scale])
    for key in ("pretrain_steps", "decoder_steps", "finetune_steps"):
        if getattr(args, key):
            scale[key] = getattr(args, key)
    if args.train_images:
        scale["train"] = args.train_images
    if args.bucket_widths is not None:
        scale["buckets"] = args.bucket_widths
    scale["finetune_recipe"] = args.recipe
    scale["lpft_steps"] = args.lpft_steps
    if args.fractions:
        try:
            fractions = tuple(sorted({float(f) for f in args.fractions.split(",") if f}))
        except ValueError:
            fractions = ()
        if not fractions or not all(0 < f <= 1 for f in fractions):
            parser.error(f"--fractions: numbers in (0, 1], not {args.fractions}")
        scale["fractions"] = fractions
    domains = list(scale["domains"]) if args.domains in (None, "both") else \
        parse_list(args.domains, DOMAINS, "--domains", parser)
    pretrainings = parse_list(args.pretrainings, tuple(PRETRAININGS), "--pretrainings", parser)
    protocols = parse_list(args.protocols, PROTOCOLS, "--protocols", parser)
    heads = parse_list(args.semi_heads, HEADS, "--semi-heads", parser)

    bench = Bench(args.out, scale, args.device, amp, args.data_from)
    # more pre-trainings, fractions and domains may join OUT later; other settings may not
    bench.same_settings({"scale": {k: v for k, v in scale.items()
                                   if k not in ("fractions", "domains", "finetune_recipe",
                                                "lpft_steps")},
                         "amp": amp,
                         "data_from": args.data_from and os.path.abspath(args.data_from)})
    dec, semi, pre = [], [], []
    for domain in domains:
        data = bench.data(domain)
        names = (["random"] if "decoder" in protocols else []) + pretrainings
        encoders = {name: bench.pretrain(domain, data, name) for name in names}
        pre += [{"domain": domain, "method": n, **{k: v for k, v in e.items() if k != "out"}}
                for n, e in encoders.items() if n != "random"]
        if "decoder" in protocols:
            dec += decoder_protocol(bench, domain, data, encoders)
        if "semi" in protocols:
            semi += semi_protocol(bench, domain, data, encoders, heads)
    text = render(dec, semi, pre, domains, args.scale, scale, bench.stage_seconds)
    print(text)
    with open(bench.path("results.md"), "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    with open(bench.path("results.json"), "w", encoding="utf-8") as fh:
        json.dump({**provenance(), "scale": args.scale, "settings": scale, "amp": amp,
                   "domains": domains, "protocols": protocols,
                   "pretraining": pre, "decoder": dec, "semi": semi,
                   "target": target(semi) if semi else None,
                   "stage_seconds": round(bench.stage_seconds, 1)}, fh, indent=1)


if __name__ == "__main__":
    main()
