"""Regenerate Yu & Zhang's Tables 2-5 with ocrkit's own synthetic data, from the CLI.

    python bench/paper_tables.py --scale cpu  --out bench-out/paper-cpu   # ~1 h, 2 cores
    python bench/paper_tables.py --scale paper --out bench-out/paper --device cuda
    python bench/paper_tables.py --scale smoke   # every stage with 40 images, 3 steps

Every stage is an ``ocrkit`` command (synth -> train / train-denoiser -> evaluate),
run as a subprocess; its JSON is kept under OUT, and a stage whose result exists is
not run again, so an interrupted run continues where it stopped. The end prints
our CLP / ILP next to the paper's (Markdown; also OUT/results.md and
OUT/results.json).

Selection and seeds, the same for every row of every table: each dataset has a
validation set of its own (the same renderer and settings, another seed, never
trained on); every run - teacher, student alone, each distilled student, each
denoiser - validates on it and keeps its best checkpoint by validation CLP (PSNR
for denoisers); the test split is read once per run, by ``ocrkit evaluate`` on
that checkpoint. ``--seeds 0,1,2`` (the default) trains every model with each
seed on the same data (the model's initialisation and batch order; a distilled
student of seed k learns from the teacher of seed k) and reports the mean with
the minimum and maximum.

Tables (paper §4.4, data: §4.1 / Table 1, recipes: Appendix A.1):

* Table 2, single-row: CAP (column average pooling over a feature map of height
  > 1) vs "CRNN" (the same network whose last pool leaves height 1, the classic
  hand-tuned design; CAP then has nothing to average).
* Table 3, 7-row images without box lines: MultiRow Stretching vs row attention
  (the paper's full convolution; at cpu scale also the light ``column`` variant),
  each row attention also with ``--row-sequence reading-order`` (the BiLSTM reads
  the rows in reading order, per-row CTC unchanged), and in reading order with
  ``features=input`` (Eq. 6 as printed: the mask gates the backbone's own rows).
  A row named "gated stretching" is row attention read in reading order with one
  joined CTC loss: MultiRow Stretching with a sigmoid gate on its rows, not the
  paper's row attention (per-row CTC over rows read on their own).
  ``--t3-methods`` picks rows.
* Table 4, multi-row images with box lines: MultiRow Stretching alone, after a
  DDeCAE, after a Line-DDeCAE (both denoisers trained first on the same
  training images and their clean twins).
* Table 5, distillation (single rows, and 7-row images read by MultiRow
  Stretching): the teacher; the half-width student (``--student-preset half``:
  half the CNN widths, one BiLSTM layer: 30 % of this teacher's weights) trained
  alone; the same student distilled offline from the trained teacher and online
  (teacher trained from scratch alongside, the paper's setting: no gate, no
  warm-up); and the two peers' options, DML and ctc-mean-kl. Single rows also at
  the teacher's longer schedule (student alone and online), multi-row also
  offline without the BiLSTM-state term. Parameters, recognition ms per image
  (``evaluate``'s ``ms_per_image``, batch 64) and training seconds next to CLP /
  ILP.

``--scale paper`` is the paper's setting: 5k single-row images at 64x128, 30k
224x224 7-row and 10-row images (80/20 split), VGG16 cut, 2x BiLSTM-256,
AMSGrad/Nesterov at 1e-4 halved every 60 epochs, 200 epochs (denoisers: Adam
1e-3, batch 64, 100 epochs). Row attention's full convolution would have
(28*512)^2*8 = 1.6 G weights per convolution with VGG16 at 224 px, so the paper
scale uses the ``column`` variant (see ocrkit/models/necks/multirow.py); at cpu
scale that variant did not leave the CTC plateau in 800 steps (the full one did),
so treat the paper-scale Attention row as untested until it has run on a GPU.

``--scale cpu`` keeps the structure and shrinks everything for 2 CPU cores: a
100-character alphabet, 5,000 images per table (4,000 train / 1,000 test) and
500 validation images, 112x112 7-row images (16-px rows) for Tables 3 and 4 (the
paper's Table 4 uses 10 rows; at 112 px they would be 11 px high), the small VGG
(32-64-128-128, height /16 so the 7 rows give a 7-row feature map as in the
paper), one BiLSTM-128, Adam 1e-3 with one-cycle (10 % warm-up; at 2e-3 with
2 % warm-up some runs never left the CTC plateau), 800 steps of batch 32, small
denoisers (base 16, depth 3: 112 px -> 14 px, so 10-px glyphs survive the
bottleneck; 3,000 steps of batch 32). Table 5 at 3 seeds: single rows (10,000
lines, 300 characters) teacher 1,200 steps, students 800 (long: 2,400); 7-row
images teacher 1,200, students 800. Run each Table 5 half alone: about 1.5 h
each on 2 idle cores (another process on the cores slows it several times).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time

from stages import Stages, amp_flags, format_spread, speed_options, spread

PAPER = {  # CLP, ILP in % (Table 5's "CRNN" rows are the teachers)
    ("5", "single: teacher"): (89.29, 71.17), ("5", "single: distilled online"): (91.74, 78.20),
    ("5", "multi: teacher"): (80.52, 60.17), ("5", "multi: distilled online"): (80.74, 60.40),
    ("2", "CRNN"): (97.31, 91.33), ("2", "CAP"): (97.20, 91.25),
    ("3", "MultiRow Stretching"): (80.52, 60.17), ("3", "Attention"): (81.31, 60.04),
    ("4", "CRNN"): (50.77, 35.98), ("4", "DDeCAE+CRNN"): (70.38, 50.14),
    ("4", "Line-DDeCAE+CRNN"): (75.47, 59.65),
}

SMALL_VGG = ["--backbone", "vgg-small", "--backbone-arg", "channels=(32,64,128,128)",
             "--backbone-arg", "width_stride=8", "--sequence-arg", "hidden=128",
             "--sequence-arg", "layers=1"]
# The paper trains without augmentation, and these tables test on their own training
# design (bench/generalisation_bench.py measures what augmentation buys elsewhere).
CPU_RECIPE = ["--optimizer", "adam", "--lr", "1e-3", "--schedule", "onecycle", "--warmup",
              "0.1", "-b", "32", "--max-steps", "800", "--no-augment"]
# Table 3's three rows that are also run at 3x the steps (2,400: the schedule stretched)
T3_STRETCH = [*SMALL_VGG, "--neck", "multirow-stretch", *CPU_RECIPE]
T3_STRETCH_PER_ROW = [*SMALL_VGG, "--neck", "multirow-stretch", "--row-loss", "per-row",
                      *CPU_RECIPE]
T3_ATTENTION = [*SMALL_VGG, "--neck", "row-attention", *CPU_RECIPE]
PAPER_RECIPE = ["--optimizer", "amsgrad", "--lr", "1e-4", "--schedule", "paper",
                "--decay-epochs", "60", "--weight-decay", "1e-6", "--epochs", "200",
                "--no-augment"]
VGG16 = ["--backbone", "vgg16-cut", "--sequence-arg", "hidden=256", "--sequence-arg", "layers=2"]
# Table 5's teacher at cpu scale: the small VGG with the paper's two BiLSTM layers.
TEACHER_VGG = ["--backbone", "vgg-small", "--backbone-arg", "channels=(32,64,128,128)",
               "--backbone-arg", "width_stride=8", "--sequence-arg", "hidden=128",
               "--sequence-arg", "layers=2"]

SCALES = {
    "cpu": {
        "synth": {
            "s1": ["--rows", 1, "--cols", 8, "-n", 5000],
            "m7": ["--rows", 7, "--width", 112, "--height", 112, "--cols", 5, "-n", 5000],
            "m7box": ["--rows", 7, "--width", 112, "--height", 112, "--cols", 5, "-n", 5000,
                      "--box-lines"],
            # Table 1's S_data2: twice S_data1's images; here also a larger alphabet, so
            # that a half-width student has something to learn from its teacher.
            "s5": ["--rows", 1, "--cols", 8, "-n", 10000, "--charset-size", 300],
        },
        "synth_common": ["--charset-size", 100],
        "t2": {"data": "s1", "size": ["--height", 32, "--width", 256],
               "CRNN": [*SMALL_VGG, "--backbone-arg", "last_pool_height=4", *CPU_RECIPE,
                        "--max-steps", 600],
               "CAP": [*SMALL_VGG, *CPU_RECIPE, "--max-steps", 600]},
        # Height /16: one feature row per 16 px, so row attention's kernel is 1 here.
        # Tried: vgg-small height_stride=8 with 64 channels last (the paper's 2 feature
        # rows per text row, kernel 8): at 800 steps stretching fell to CLP 37 % and
        # full row attention was still on the CTC plateau at step 490.
        "t3": {"data": "m7", "rows": 7, "size": ["--height", 112, "--width", 112],
               "MultiRow Stretching": T3_STRETCH,
               "MultiRow Stretching, per-row loss": T3_STRETCH_PER_ROW,
               "Attention": T3_ATTENTION,
               "Attention (column)": [*SMALL_VGG, "--neck", "row-attention", "--neck-arg",
                                      "variant=column", *CPU_RECIPE],
               # the paper's row attention and per-row loss at 3x the steps: do they leave
               # the CTC plateau with time?
               "Attention, 3x steps": [*T3_ATTENTION, "--max-steps", 2400],
               "MultiRow Stretching, per-row loss, 3x steps": [*T3_STRETCH_PER_ROW,
                                                               "--max-steps", 2400],
               # its joined-loss counterpart: does the per-row loss end higher or lower?
               "MultiRow Stretching, 3x steps": [*T3_STRETCH, "--max-steps", 2400],
               "Attention, reading order": [*SMALL_VGG, "--neck", "row-attention",
                                            "--row-sequence", "reading-order", *CPU_RECIPE],
               "Attention (column), reading order": [
                   *SMALL_VGG, "--neck", "row-attention", "--neck-arg", "variant=column",
                   "--row-sequence", "reading-order", *CPU_RECIPE],
               # Eq. 6 as printed: the mask gates the backbone's own rows (features=input)
               "Attention, input rows, reading order": [
                   *SMALL_VGG, "--neck", "row-attention", "--neck-arg", "features=input",
                   "--row-sequence", "reading-order", *CPU_RECIPE],
               "Attention, input rows, scaled gate, reading order": [
                   *SMALL_VGG, "--neck", "row-attention", "--neck-arg", "features=input",
                   "--neck-arg", "gate_scale=auto", "--row-sequence", "reading-order",
                   *CPU_RECIPE],
               "Attention (column), input rows, reading order": [
                   *SMALL_VGG, "--neck", "row-attention", "--neck-arg", "variant=column",
                   "--neck-arg", "features=input", "--row-sequence", "reading-order",
                   *CPU_RECIPE],
               "Attention, input rows, zero-init gate, reading order": [
                   *SMALL_VGG, "--neck", "row-attention", "--neck-arg", "features=input",
                   "--neck-arg", "gate_init=zero", "--row-sequence", "reading-order",
                   *CPU_RECIPE],
               "Attention, input rows, zero-init scaled gate, reading order": [
                   *SMALL_VGG, "--neck", "row-attention", "--neck-arg", "features=input",
                   "--neck-arg", "gate_init=zero", "--neck-arg", "gate_scale=auto",
                   "--row-sequence", "reading-order", *CPU_RECIPE],
               "Gated stretching (attention, input rows, reading order, joined loss)": [
                   *SMALL_VGG, "--neck", "row-attention", "--neck-arg", "features=input",
                   "--row-sequence", "reading-order", "--row-loss", "joined", *CPU_RECIPE],
               "Gated stretching (column attention, input rows, reading order, joined loss)": [
                   *SMALL_VGG, "--neck", "row-attention", "--neck-arg", "variant=column",
                   "--neck-arg", "features=input", "--row-sequence", "reading-order",
                   "--row-loss", "joined", *CPU_RECIPE],
               "Attention (column), input rows, zero-init gate, reading order": [
                   *SMALL_VGG, "--neck", "row-attention", "--neck-arg", "variant=column",
                   "--neck-arg", "features=input", "--neck-arg", "gate_init=zero",
                   "--row-sequence", "reading-order", *CPU_RECIPE]},
        "t4": {"data": "m7box", "rows": 7, "size": ["--height", 112, "--width", 112],
               "recognizer": [*SMALL_VGG, "--neck", "multirow-stretch", *CPU_RECIPE],
               "denoiser": ["--base", 16, "--depth", 3, "-b", 32, "--max-steps", 3000,
                            "--lr", "2e-3"]},
        # A teacher is a model trained to the end: 3x the students' 800 steps (at 800 the
        # two-layer teacher still trails the half-width student trained alone).
        # The paper trains teacher and student together for the whole schedule: at the
        # teacher's 2,400 steps, "online" is compared with the student alone at 2,400 too.
        # Teachers at half the single-seed runs' 2,400 steps (1,200 reached 99.9 % CLP on
        # single rows at seed 0); students at 800: at 400, every single-row student but
        # the offline one was still on the CTC plateau (0 % CLP) at seed 0.
        "t5": {"single": {"data": "s5", "rows": 1, "size": ["--height", 32, "--width", 256],
                          "teacher": [*TEACHER_VGG, *CPU_RECIPE],
                          "teacher_steps": ["--max-steps", 1200],
                          "steps": ["--max-steps", 800],
                          "long": ["--max-steps", 2400]},
               "multi": {"data": "m7", "rows": 7, "size": ["--height", 112, "--width", 112],
                         "teacher": [*TEACHER_VGG, "--neck", "multirow-stretch", *CPU_RECIPE],
                         "teacher_steps": ["--max-steps", 1200],
                         "steps": ["--max-steps", 800],
                         "ablation": [("offline, no lstm term", ["--lambda-lstm", 0])]},
               "recipe": CPU_RECIPE},
    },
    "paper": {
        "synth": {
            "s1": ["--rows", 1, "--cols", 10, "-n", 5000],
            "m7": ["--rows", 7, "-n", 30000],
            "m10box": ["--rows", 10, "-n", 30000, "--box-lines"],
            "s5": ["--rows", 1, "--cols", 10, "-n", 10000],
        },
        "synth_common": [],
        "t2": {"data": "s1", "size": ["--height", 64, "--width", 128, "--resize", "stretch"],
               "CRNN": [*VGG16, "--backbone-arg", "last_pool=(8,3)", *PAPER_RECIPE,
                        "--optimizer", "sgd", "-b", 20],
               "CAP": [*VGG16, *PAPER_RECIPE, "--optimizer", "sgd", "-b", 20]},
        "t3": {"data": "m7", "rows": 7, "size": ["--height", 224, "--width", 224],
               "MultiRow Stretching": [*VGG16, "--neck", "multirow-stretch", *PAPER_RECIPE,
                                       "-b", 20],
               "Attention": [*VGG16, "--neck", "row-attention", "--neck-arg", "variant=column",
                             *PAPER_RECIPE, "-b", 20],
               "Attention (column), reading order": [
                   *VGG16, "--neck", "row-attention", "--neck-arg", "variant=column",
                   "--row-sequence", "reading-order", *PAPER_RECIPE, "-b", 20]},
        "t4": {"data": "m10box", "rows": 10, "size": ["--height", 224, "--width", 224],
               "recognizer": [*VGG16, "--neck", "multirow-stretch", *PAPER_RECIPE, "-b", 16],
               "denoiser": ["--base", 64, "--depth", 4, "-b", 64, "--epochs", 100, "--lr", "1e-3",
                            "--schedule", "paper", "--decay-epochs", 60]},
        "t5": {"single": {"data": "s5", "rows": 1,
                          "size": ["--height", 64, "--width", 128, "--resize", "stretch"],
                          "teacher": [*VGG16, *PAPER_RECIPE, "--optimizer", "sgd", "-b", 20]},
               "multi": {"data": "m7", "rows": 7, "size": ["--height", 224, "--width", 224],
                         "teacher": [*VGG16, "--neck", "multirow-stretch", *PAPER_RECIPE,
                                     "-b", 20]},
               # Table 6: KD 300 epochs, batch 16, lr 1e-4 halved every 60 epochs; PAPER_RECIPE
               # is AMSGrad (the paper's multi-row optimizer); single rows use Nesterov SGD
               # (see "single_recipe")
               "recipe": [*PAPER_RECIPE, "--epochs", 300, "-b", 16],
               "single_recipe": [*PAPER_RECIPE, "--epochs", 300, "-b", 16, "--optimizer", "sgd"]},
    },
}


def _shrunk(cfg, n: int = 40, steps: int = 3):
    """The cpu scale with tiny counts: checks the whole script in a minute."""
    if isinstance(cfg, dict):
        return {k: _shrunk(v, n, steps) for k, v in cfg.items()}
    if isinstance(cfg, list):
        out = list(cfg)
        for i, item in enumerate(out[:-1]):
            if item == "-n":
                out[i + 1] = n
            elif item == "--max-steps":
                out[i + 1] = steps
        return out
    return cfg


SCALES["smoke"] = {**_shrunk(SCALES["cpu"]), "val_count": 20}


class Bench(Stages):
    def __init__(self, out: str, device: str, seed: int, val_count: int = 500,
                 amp: list | None = None) -> None:
        super().__init__(out)
        self.device, self.seed = device, seed
        self.val_count = val_count
        # where and in what precision every training runs (--amp / --no-amp or the loop's)
        self.runs_on = ["--device", device, *(amp or [])]

    def synth(self, name: str, args: list, common: list) -> tuple[str, str]:
        """(the dataset folder with train/ and test/, its validation folder): the same
        renderer and settings, the validation set from another seed."""
        folder = os.path.join(self.out, "data", name)
        self.cached(f"synth-{name}", lambda: self.ocrkit(
            "synth", *args, *common, "--test-fraction", 0.2, "--seed", self.seed, "-q",
            "--overwrite", "--out", folder))
        val = os.path.join(self.out, "data", f"{name}-val")
        count = _with(args, "-n", self.val_count)
        self.cached(f"synth-{name}-val", lambda: self.ocrkit(
            "synth", *count, *common, "--seed", self.seed + 1000, "-q", "--overwrite",
            "--out", val))
        return folder, val

    def _evaluate(self, name: str, run: str, data: str) -> dict:
        """The test split, read once: the run's best checkpoint by validation."""
        return self.cached(f"eval-{name}", lambda: self.ocrkit(
            "evaluate", os.path.join(run, "best.pt"), os.path.join(data, "test"), "--device",
            self.device, "-q"))

    def recognizer(self, name: str, data: tuple[str, str], rows: int, size: list, args: list,
                   denoiser: str | None = None, seed: int = 0) -> dict:
        """Train (best.pt chosen on the validation set) and evaluate on the test split;
        ``seed`` seeds the model and the batch order only - the data are the bench's."""
        folder, val = data
        run = os.path.join(self.out, "runs", name)
        extra = ["--denoiser", denoiser] if denoiser else []
        train = self.cached(f"train-{name}", lambda: self.ocrkit(
            "train", "--train", os.path.join(folder, "train"), "--val", val, "-o", run,
            "--rows", rows, *size, *args, *extra, *_val_every(args), *self.runs_on,
            "--seed", seed, "--save-every", 1000, "--overwrite", "-q"))
        return {"train": train, "eval": self._evaluate(name, run, folder)}

    def distilled(self, name: str, data: tuple[str, str], args: list, seed: int = 0) -> dict:
        folder, val = data
        run = os.path.join(self.out, "runs", name)
        train = self.cached(f"train-{name}", lambda: self.ocrkit(
            "distill", "--train", os.path.join(folder, "train"), "--val", val, "-o", run, *args,
            *_val_every(args), *self.runs_on, "--seed", seed, "--save-every", 1000,
            "--overwrite", "-q"))
        return {"train": train, "eval": self._evaluate(name, run, folder)}

    def denoiser(self, name: str, data: tuple[str, str], variant: str, args: list,
                 seed: int = 0) -> tuple[str, dict]:
        """A denoiser trained on the training pairs, its best.pt chosen on the
        validation set's pairs (PSNR)."""
        folder, val = data
        run = os.path.join(self.out, "runs", name)
        result = self.cached(f"train-{name}", lambda: self.ocrkit(
            "train-denoiser", "--data", os.path.join(folder, "train"), "--val", val, "-o", run,
            "--variant", variant, *args, *self.runs_on, "--seed", seed,
            "--save-every", 1000, "--val-limit", 256, "--overwrite", "-q"))
        return os.path.join(run, "best.pt"), result


def gate_stats(checkpoint: str, data: str, limit: int = 256) -> dict | None:
    """How open a row-attention model's sigmoid mask is on ``data``'s images: its mean
    and the shares of values above 0.95 and below 0.05 (None for other necks). A mask
    that stays open (all near 1) makes row attention the network without a gate."""
    import torch

    from ocrkit.checkpoint import load_checkpoint
    from ocrkit.data import open_dataset
    from ocrkit.data.batch import InputSpec
    from ocrkit.models.recognizer import build_model

    ckpt = load_checkpoint(checkpoint)
    model, _ = build_model(ckpt)
    if not hasattr(model.neck, "mask_and_features"):
        return None
    spec = InputSpec(**ckpt["input"])
    dataset = open_dataset(data)
    resize = spec.transform("fixed")
    images = [dataset[i].image for i in range(min(limit, len(dataset)))]
    x = spec.to_tensor([resize(im)[0] for im in images if im is not None])
    with torch.no_grad():
        _, mask = model.neck.mask_and_features(model.backbone(model.clean(x)))
    return {"gate_mean": round(float(mask.mean()), 4),
            "gate_above_0.95": round(float((mask > 0.95).float().mean()), 4),
            "gate_below_0.05": round(float((mask < 0.05).float().mean()), 4)}


def _with(args: list, flag: str, value) -> list:
    """``args`` with ``flag``'s value replaced (the last occurrence counts)."""
    out = list(args)
    for i in range(len(out) - 1):
        if out[i] == flag:
            out[i + 1] = value
    return out


def _val_every(args: list) -> list:
    """Validate 8 times per run (runs of --epochs keep the loop's default)."""
    steps = [int(args[i + 1]) for i in range(len(args) - 1) if args[i] == "--max-steps"]
    return ["--val-every", max(1, steps[-1] // 8)] if steps else []


def _tag(seed: int) -> str:
    return f"-s{seed}"


T3_TAGS = {"MultiRow Stretching": "stretch",
           "MultiRow Stretching, per-row loss": "stretch-per-row-loss", "Attention": "attention",
           "Attention, 3x steps": "attention-3x",
           "MultiRow Stretching, per-row loss, 3x steps": "stretch-per-row-loss-3x",
           "MultiRow Stretching, 3x steps": "stretch-3x",
           "Attention (column)": "attention-column",
           "Attention, reading order": "attention-reading-order",
           "Attention (column), reading order": "attention-column-reading-order",
           "Attention, input rows, reading order": "attention-input-reading-order",
           "Attention, input rows, scaled gate, reading order":
               "attention-input-scaled-reading-order",
           "Attention (column), input rows, reading order":
               "attention-column-input-reading-order",
           "Attention, input rows, zero-init gate, reading order":
               "attention-input-zero-reading-order",
           "Attention, input rows, zero-init scaled gate, reading order":
               "attention-input-zero-scaled-reading-order",
           "Attention (column), input rows, zero-init gate, reading order":
               "attention-column-input-zero-reading-order",
           "Gated stretching (attention, input rows, reading order, joined loss)":
               "attention-input-reading-order-joined",
           "Gated stretching (column attention, input rows, reading order, joined loss)":
               "attention-column-input-reading-order-joined"}


def summary(results: list[dict]) -> dict:
    """Several seeds' results -> the mean of each metric with its minimum and maximum
    (``{"clp": (mean, lo, hi), ...}``, in %) and the mean training seconds."""
    evs = [r["eval"] for r in results]

    out = {k: spread([e[k] for e in evs], 100) for k in ("clp", "clp_ed", "ilp")}
    out["row_ilp"] = (spread([e["row_level"]["ilp"] for e in evs], 100)
                      if all("row_level" in e for e in evs) else None)
    ms = [e.get("ms_per_image") for e in evs]
    out["ms_per_image"] = sum(ms) / len(ms) if all(m is not None for m in ms) else None
    trains = [r["train"] for r in results]
    out["train_s"] = sum(t["_seconds"] for t in trains) / len(trains)
    out["parameters"] = trains[0].get("parameters")
    out["steps"] = trains[0].get("steps")
    out["seeds"] = len(results)
    return out


def row(table: str, method: str, results: list[dict], note: str = "") -> dict:
    paper = PAPER.get((table, method), (None, None))
    return {"table": table, "method": method, "paper_clp": paper[0], "paper_ilp": paper[1],
            **summary(results), "note": note}


def _cell(stat, seeds: int) -> str:
    """``mean (min-max)``, or the value alone for one seed."""
    return "" if stat is None else format_spread(*stat, seeds, digits=2)


# Offline distillation with terms switched off: which of Eq. 16's terms help.
ABLATION = (("offline, no lstm term", ["--lambda-lstm", 0]),
            ("offline, no hints", ["--lambda-hint", 0]),
            ("offline, soft targets only", ["--lambda-lstm", 0, "--lambda-hint", 0]))


def table5(bench: "Bench", cfg: dict, seeds: list[int], kinds=("single", "multi"),
           ablation: bool = False) -> list[dict]:
    """Table 5: teacher, student alone, distilled offline / online, DML, ctc-mean-kl
    (with ``ablation``, offline with each KD term switched off; a half's own
    ``ablation`` list is always run), every row at every seed."""
    t5, out = cfg["t5"], []
    for kind in kinds:
        t = t5[kind]
        recipe = [*t5.get(f"{kind}_recipe", t5["recipe"]), *t.get("steps", [])]
        data = bench.synth(t["data"], cfg["synth"][t["data"]], cfg["synth_common"])
        rows = ["--rows", t["rows"]] if t["rows"] > 1 else []
        # The student alone: the half preset's architecture, trained like the students.
        alone_spec = [*_half_args(t["teacher"]), *t.get("steps", [])]
        extra = dict(t.get("ablation", []))
        if ablation:
            extra.update(ABLATION)
        results: dict[str, list] = {}
        for seed in seeds:
            tag = _tag(seed)
            t_run = os.path.join(bench.out, "runs", f"t5-{kind}-teacher{tag}")
            results.setdefault("teacher", []).append(bench.recognizer(
                f"t5-{kind}-teacher{tag}", data, t["rows"], t["size"],
                [*t["teacher"], *t.get("teacher_steps", [])], seed=seed))
            results.setdefault("student alone", []).append(bench.recognizer(
                f"t5-{kind}-student{tag}", data, t["rows"], t["size"], alone_spec, seed=seed))
            offline = ["--teacher", os.path.join(t_run, "best.pt")]
            online = ["--teacher", os.path.join(t_run, "config.json"), "--online"]
            for label, args in (
                    ("distilled offline", offline),
                    *((f"distilled {name}", [*offline, *more]) for name, more in extra.items()),
                    ("distilled online", online),
                    # two half-width peers learning from each other (no teacher)
                    ("dml", ["--kd-mode", "dml", *rows, *t["size"], "--student-preset", "none",
                             *alone_spec]),
                    ("ctc-mean-kl", [*offline, "--kd-mode", "ctc-mean-kl"])):
                name = f"t5-{kind}-" + re.sub(r"[^a-z0-9]+", "-", label) + tag
                results.setdefault(label, []).append(
                    bench.distilled(name, data, [*args, *recipe], seed=seed))
            if t.get("long"):  # the paper's online setting over the teacher's whole schedule
                results.setdefault("student alone, long", []).append(bench.recognizer(
                    f"t5-{kind}-student-long{tag}", data, t["rows"], t["size"],
                    [*alone_spec, *t["long"]], seed=seed))
                results.setdefault("distilled online, long", []).append(bench.distilled(
                    f"t5-{kind}-distilled-online-long{tag}", data, [*online, *recipe, *t["long"]],
                    seed=seed))
        for label, runs in results.items():
            paper = PAPER.get(("5", f"{kind}: {label}"), (None, None))
            out.append({"data": kind, "method": label, "paper_clp": paper[0],
                        "paper_ilp": paper[1], **summary(runs)})
    return out


def _half_args(teacher: list) -> list:
    """The model options of --student-preset half for a teacher given as options:
    half the widths and one BiLSTM layer (the student trained alone)."""
    args = list(teacher)
    for i, item in enumerate(args[:-1]):
        value = str(args[i + 1])
        if item == "--backbone-arg" and value.startswith("channels="):
            widths = [int(v) // 2 for v in value[len("channels=("):-1].split(",")]
            args[i + 1] = f"channels=({','.join(map(str, widths))})"
        elif item == "--sequence-arg" and value.startswith("layers="):
            args[i + 1] = "layers=1"
    if "--backbone" in args and args[args.index("--backbone") + 1] == "vgg16-cut":
        args += ["--backbone-arg", "width=0.5"]
    return args


def markdown5(rows: list[dict]) -> str:
    out = ["Table 5 (distillation): mean (min-max) over seeds, %; paper CLP / ILP are its "
           "teacher (\"CRNN\") and online distilled student", "",
           "| data | method | parameters | steps | seeds | paper CLP | paper ILP | CLP | ILP "
           "| row ILP | ms / image | train s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def f(v):
            return "" if v is None else f"{v:.2f}"

        def c(stat, seeds=r["seeds"]):
            return _cell(stat, seeds)
        params = f"{r['parameters'] / 1e6:.2f} M" if r["parameters"] else ""
        out.append(f"| {r['data']} | {r['method']} | {params} | {r.get('steps') or ''} "
                   f"| {r['seeds']} | {f(r['paper_clp'])} | {f(r['paper_ilp'])} "
                   f"| {c(r['clp'])} | {c(r['ilp'])} | {c(r['row_ilp'])} "
                   f"| {f(r['ms_per_image'])} | {r['train_s']:.0f} |")
    return "\n".join(out)


def markdown(rows: list[dict], scale: str, seconds: float, stage_seconds: float) -> str:
    out = [f"Yu & Zhang Tables 2-4 regenerated by bench/paper_tables.py --scale {scale}: "
           f"mean (min-max) over seeds, % (all stages: {stage_seconds / 60:.0f} min; this "
           f"invocation: {seconds / 60:.0f} min)", "",
           "| table | method | seeds | paper CLP | paper ILP | CLP | CLP (edit) | ILP | row ILP "
           "| train s | note |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def f(v):
            return "" if v is None else f"{v:.2f}"

        def c(stat, seeds=r["seeds"]):
            return _cell(stat, seeds)
        out.append(f"| {r['table']} | {r['method']} | {r['seeds']} | {f(r['paper_clp'])} "
                   f"| {f(r['paper_ilp'])} | {c(r['clp'])} | {c(r['clp_ed'])} "
                   f"| {c(r['ilp'])} | {c(r['row_ilp'])} | {r['train_s']:.0f} "
                   f"| {r['note']} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--out", default=None, help="work folder [bench-out/paper-SCALE]")
    parser.add_argument("--tables", default="2,3,4,5", help="comma-separated subset of 2,3,4,5")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0, help="the data's seed")
    parser.add_argument("--seeds", default="0,1,2",
                        help="train every model with each of these seeds (its initialisation "
                             "and batch order; the data stay --seed's); rows report the mean "
                             "and the min-max")
    parser.add_argument("--val-count", type=int, default=None,
                        help="images in each dataset's validation set (best.pt is chosen on "
                             "it) [default: 500; smoke scale 20]")
    parser.add_argument("--t5-data", default="single,multi",
                        choices=["single", "multi", "single,multi"],
                        help="Table 5's data: single rows, multi-row images, or both")
    parser.add_argument("--t5-ablation", action="store_true",
                        help="Table 5: add offline runs with each KD term switched off")
    parser.add_argument("--t3-methods", default=None,
                        help="Table 3: a comma-separated subset of "
                             + ", ".join(T3_TAGS.values()))
    speed_options(parser, auto=False)
    args = parser.parse_args()
    cfg = SCALES[args.scale]
    seeds = [int(s) for s in args.seeds.split(",")]
    methods3 = set(args.t3_methods.split(",")) if args.t3_methods else None
    unknown = (methods3 or set()) - set(T3_TAGS.values())
    if unknown:
        parser.error(f"--t3-methods: unknown {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join(T3_TAGS.values())}")
    tables = set(args.tables.split(","))
    bench = Bench(args.out or f"bench-out/paper-{args.scale}", args.device, args.seed,
                  args.val_count or cfg.get("val_count", 500),
                  amp_flags(args.amp, args.device, auto=False))
    rows: list[dict] = []
    if "2" in tables:
        t = cfg["t2"]
        data = bench.synth(t["data"], cfg["synth"][t["data"]], cfg["synth_common"])
        for method in ("CRNN", "CAP"):
            rows.append(row("2", method, [
                bench.recognizer(f"t2-{method.lower()}{_tag(seed)}", data, 1, t["size"],
                                 t[method], seed=seed) for seed in seeds]))
    if "3" in tables:
        t = cfg["t3"]
        data = bench.synth(t["data"], cfg["synth"][t["data"]], cfg["synth_common"])
        for method, tag in T3_TAGS.items():
            if method not in t or (methods3 and tag not in methods3):
                continue
            runs = [bench.recognizer(f"t3-{tag}{_tag(seed)}", data, t["rows"], t["size"],
                                     t[method], seed=seed) for seed in seeds]
            gates = [bench.cached(f"gates-t3-{tag}{_tag(seed)}", lambda: gate_stats(
                os.path.join(bench.out, "runs", f"t3-{tag}{_tag(seed)}", "best.pt"), data[1])
                or {}) for seed in seeds] if "row-attention" in t[method] else []
            note = ("gate on validation images: mean " + " / ".join(
                f"{g['gate_mean']:.2f}" for g in gates) + ", share > 0.95 " + " / ".join(
                f"{g['gate_above_0.95']:.2f}" for g in gates)) if gates and gates[0] else ""
            rows.append(row("3", method, runs, note))
    if "4" in tables:
        t = cfg["t4"]
        data = bench.synth(t["data"], cfg["synth"][t["data"]], cfg["synth_common"])
        rows.append(row("4", "CRNN", [
            bench.recognizer(f"t4-crnn{_tag(seed)}", data, t["rows"], t["size"], t["recognizer"],
                             seed=seed) for seed in seeds]))
        for method, variant in (("DDeCAE+CRNN", "plain"), ("Line-DDeCAE+CRNN", "line")):
            runs, notes = [], []
            for seed in seeds:
                path, den = bench.denoiser(f"t4-{variant}-denoiser{_tag(seed)}", data, variant,
                                           t["denoiser"], seed=seed)
                val = den.get("last_val") or {}
                if "psnr" in val:
                    notes.append(f"{val['psnr']:.1f}")
                runs.append(bench.recognizer(f"t4-{variant}-crnn{_tag(seed)}", data, t["rows"],
                                             t["size"], t["recognizer"], path, seed=seed))
            note = f"denoiser validation PSNR {' / '.join(notes)} dB" if notes else ""
            rows.append(row("4", method, runs, note))
    rows5 = (table5(bench, cfg, seeds, args.t5_data.split(","), args.t5_ablation)
             if "5" in tables else [])
    seconds = time.perf_counter() - bench.t0
    text = markdown(rows, args.scale, seconds, bench.stage_seconds)
    if rows5:
        text += "\n\n" + markdown5(rows5)
    with open(os.path.join(bench.out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump(rows + rows5, fh, indent=1)
    with open(os.path.join(bench.out, "results.md"), "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
