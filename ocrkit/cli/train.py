"""`ocrkit train`: supervised CTC training of an assembled recognizer."""

from __future__ import annotations

import ast

import click

from ocrkit.cli._common import (
    FiniteFloat,
    adopt_run_config,
    config_option,
    json_line,
    replayable,
)


def parse_kv(ctx, param, values) -> dict:
    """``k=v`` options -> dict; values parsed as Python literals when they can be."""
    out = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected key=value", ctx=ctx, param=param)
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        out[key.replace("-", "_")] = value
    return out


def model_options(f=None, *, exclude: tuple[str, ...] = ()):
    """Component selection shared by train and the methods built on it (``exclude``:
    option names a command sets itself, e.g. train-emu's classifier)."""
    if f is None:
        return lambda g: model_options(g, exclude=exclude)
    options = [
        click.option("--backbone", default="vgg-small", show_default=True,
                     help="Backbone name (ocrkit list backbones)."),
        click.option("--backbone-arg", "backbone_args", multiple=True, callback=parse_kv,
                     metavar="K=V", help="Backbone keyword argument (repeatable)."),
        click.option("--neck", default="cap", show_default=True, help="Neck name."),
        click.option("--neck-arg", "neck_args", multiple=True, callback=parse_kv, metavar="K=V"),
        click.option("--sequence", default="bilstm", show_default=True,
                     help="Sequence stage (a neck, e.g. bilstm) or 'none'."),
        click.option("--sequence-arg", "sequence_args", multiple=True, callback=parse_kv,
                     metavar="K=V", help="e.g. hidden=128, layers=1."),
        click.option("--classifier", default="linear", show_default=True),
        click.option("--classifier-arg", "classifier_args", multiple=True, callback=parse_kv,
                     metavar="K=V"),
        click.option("--head", default="ctc", show_default=True),
        click.option("--head-arg", "head_args", multiple=True, callback=parse_kv, metavar="K=V"),
        click.option("--row-sequence", type=click.Choice(["per-row", "reading-order"]),
                     default="per-row", show_default=True,
                     help="Necks that return text rows (row-attention): the sequence stage "
                          "reads each row alone (the paper), or all rows in reading order as "
                          "one sequence, cut back per row (context crosses rows; per-row CTC "
                          "loss unchanged)."),
    ]
    for option in reversed(options):
        if option(lambda: None).__click_params__[0].name not in exclude:
            f = option(f)
    return f


def _apply(f, options):
    for option in reversed(options):
        f = option(f)
    return f


def loop_options(*, batch_size: int = 32, optimizer: str = "adam", lr: float = 1e-3,
                 weight_decay: float = 1e-6, schedule: str = "onecycle", warmup: float = 0.1,
                 decay_epochs: float = 60.0,
                 out_help: str = "Run folder: last.pt, best.pt, metrics.jsonl, curve.png."):
    """Options of the shared training loop (train, train-denoiser, later methods)."""
    options = [
        click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
                     help=out_help),
        click.option("--max-steps", type=click.IntRange(min=1), default=None,
                     help="Train this many optimizer steps..."),
        click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="... or this many epochs."),
        click.option("-b", "--batch-size", type=click.IntRange(min=1), default=batch_size,
                     show_default=True),
        click.option("--optimizer",
                     type=click.Choice(["adam", "amsgrad", "adamw", "sgd", "adadelta"]),
                     default=optimizer, show_default=True,
                     help="amsgrad and sgd (Nesterov) are the CAP paper's (Appendix A.1); "
                          "adadelta (rho 0.95) SeqCLR's, with --lr 10 --schedule steps."),
        click.option("--lr", type=FiniteFloat(0, open_min=True), default=lr, show_default=True,
                     help="Peak learning rate."),
        click.option("--weight-decay", type=FiniteFloat(0), default=weight_decay,
                     show_default=True),
        click.option("--schedule",
                     type=click.Choice(["onecycle", "cosine", "paper", "constant", "steps"]),
                     default=schedule, show_default=True,
                     help="paper = halve every --decay-epochs epochs; steps = x0.1 at 60 % "
                          "and 80 % of the steps (SeqCLR)."),
        click.option("--warmup", type=click.FloatRange(0, 0.9), default=warmup, show_default=True,
                     help="Warm-up fraction of the steps (onecycle, cosine)."),
        click.option("--decay-epochs", type=FiniteFloat(0, open_min=True), default=decay_epochs,
                     show_default=True),
        click.option("--grad-clip", type=FiniteFloat(0), default=5.0, show_default=True,
                     help="Clip the gradient norm to this (0: no clipping)."),
        click.option("--device", default="auto", show_default=True,
                     help="auto, cpu, cuda, cuda:N or mps."),
        click.option("--amp/--no-amp", default=None, help="Mixed precision (default: on CUDA): bfloat16 where the GPU has it, "
                          "else float16; on a CPU bfloat16, faster only where the CPU has "
                          "bfloat16 instructions (AMX, AVX512-BF16)."),
        click.option("-w", "--workers", type=int, default=None,
                     help="Data-loading worker processes (default: cores - 1; at most the "
                          "cores)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--val-every", type=click.IntRange(min=1), default=200, show_default=True),
        click.option("--save-every", type=click.IntRange(min=1), default=200, show_default=True,
                     help="Write last.pt every N steps (and at the end, and on Ctrl-C)."),
        click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True,
                     help="Write a metrics.jsonl record every N steps."),
        click.option("--val-limit", type=click.IntRange(min=1), default=None,
                     help="Validate on at most this many samples."),
        click.option("--resume", is_flag=True,
                     help="Continue the run in OUT from its last.pt (same options)."),
        click.option("--overwrite", is_flag=True,
                     help="Start over in OUT, an earlier run's folder: its run files "
                          "(last.pt, best.pt, metrics.jsonl, config.json, curve.png) are "
                          "deleted first."),
        click.option("-q", "--quiet", is_flag=True),
    ]
    return lambda f: _apply(f, options)


def data_options(*, denoiser: bool = True, input_help: str = "", width_help: str = ""):
    """Data, input size and charset options shared by train and distill."""
    options = [
        click.option("--train", "train_paths", multiple=True,
                     type=click.Path(exists=True),
                     help="Training data: LMDB, folder of LMDBs or labelled folder (repeatable; "
                          "required, except with --resume, which takes the run's own)."),
        click.option("--val", "val_paths", multiple=True, type=click.Path(exists=True),
                     help="Validation data (repeatable); best.pt is chosen on it."),
        click.option("--height", type=int, default=None,
                     help=input_help or "Input height [default: 32; 224 with --rows > 1] "
                                        "(paper: 64 single-row, 224 multi-row)."),
        click.option("--width", type=int, default=None,
                     help=width_help or "Input width after resize/pad [default: 256; 224 with "
                                        "--rows > 1]."),
        click.option("--resize", type=click.Choice(["keep-ratio", "stretch", "fit"]),
                     default=None,
                     help="[default: keep-ratio; stretch with --rows > 1]"),
        click.option("--channels", type=click.Choice(["1", "3"]), default="1",
                     show_default=True, callback=lambda ctx, param, value: int(value),
                     help="Image channels the model reads: 1 grey, 3 RGB (Light-Former's "
                          "input, scene text); stored in the checkpoint."),
        click.option("--rows", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Text rows per image (multi-row necks: multirow-stretch, "
                          "row-attention); stored in the checkpoint."),
        click.option("--charset", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="Dictionary file (default: the training labels' characters)."),
        click.option("--unknown", type=click.Choice(["skip", "error", "replace"]), default=None,
                     help="Label characters outside the charset (--charset, a teacher's or a "
                          "resumed run's): drop them, refuse the data, or map them to "
                          "--replacement. How many labels change is reported before training "
                          "[default: skip, but refuse when more than 5 % of the labels would "
                          "change]."),
        click.option("--replacement", default=None, metavar="CHAR",
                     help="The charset character --unknown replace maps unknown ones to."),
        click.option("--augment/--no-augment", default=True, show_default=True,
                     help="Text-safe augmentation of training images (margins, width, small "
                          "rotation and shear, stroke weight, blur, levels, noise, JPEG; see "
                          "ocrkit/data/augment.py), drawn per seed, epoch and sample."),
        click.option("--bucket-widths", type=click.IntRange(min=0), default=0,
                     show_default=True, metavar="N",
                     help="Batches of images of similar width (keep-ratio single rows, whose "
                          "batches pad to their widest image): every N batches of the "
                          "shuffled order are sorted by aspect ratio, cut into batches again "
                          "and shuffled; fewer padded pixels per step. Image sizes are read "
                          "from their headers at the start. 0 = off."),
        click.option("--label-fraction", type=click.FloatRange(0, 1, min_open=True),
                     default=None,
                     help="Train on this random share of the training images (e.g. 0.1): the "
                          "same images for every method and --seed, chosen by --subset-seed "
                          "[default: all]."),
        click.option("--subset-seed", type=int, default=None,
                     help="Seed of the --label-fraction subset [default: 0]. With one seed, "
                          "a smaller fraction's images are part of a larger one's."),
    ]
    if denoiser:
        options.insert(6, click.option(
            "--denoiser", type=click.Path(exists=True, dir_okay=False), default=None,
            help="A train-denoiser checkpoint: images are cleaned by it (frozen) before "
                 "recognition; it is stored in the recognizer's checkpoint."))
    return lambda f: _apply(f, options)


def row_loss_option(f):
    return click.option(
        "--row-loss", type=click.Choice(["per-row", "joined"]), default=None,
        help="Multi-row models: one CTC loss per text row (row attention's Eq. 10; with "
             "multirow-stretch over each row's frames) or one over the rows joined in "
             "reading order (stretching's Eq. 3; with row-attention its rows joined) "
             "[default: the neck's own].")(f)


def encoder_options(f):
    """``--init-encoder`` / ``--freeze-encoder``: start from an `ocrkit pretrain` encoder."""
    options = [
        click.option("--init-encoder", type=click.Path(exists=True, dir_okay=False),
                     default=None,
                     help="An encoder checkpoint from `ocrkit pretrain` (or a recognizer's "
                          "checkpoint: its encoder, not its classifier or head): the "
                          "backbone, neck and sequence stage (not the last with --representation "
                          "visual) start from its weights; the model options must be its own."),
        click.option("--freeze-encoder", is_flag=True,
                     help="Keep that encoder (train: or --init-from's backbone, neck and "
                          "sequence stage) fixed, weights and BatchNorm statistics: the "
                          "rest trains, classifier and head (the paper's decoder "
                          "evaluation)."),
    ]
    return _apply(f, options)


# What a recognizer given with --init-from brings with it: given here too, refused.
INIT_FROM_FIXED = ("backbone", "backbone_args", "neck", "neck_args", "sequence",
                   "sequence_args", "classifier", "classifier_args", "head", "head_args",
                   "row_sequence", "max_length", "height", "width", "resize", "channels",
                   "rows", "denoiser", "charset")


def init_from_option(f):
    return click.option(
        "--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
        metavar="MODEL.pt",
        help="Fine-tune: start from a trained recognizer's weights (a best.pt or last.pt; "
             "EMU models from last.pt). Its architecture, input size and charset come "
             "with it (model, input and --charset options are refused); the optimizer, "
             "schedule and step start afresh (--resume continues a run instead). With "
             "--freeze-encoder only the classifier and head train.")(f)


def check_init_from(ctx: click.Context, opts: dict) -> None:
    """``--init-from``: no option that the recognizer brings with it; the path kept
    absolute; the model options left out of the replayable config (they are the file's)."""
    import os

    from click.core import ParameterSource

    from ocrkit.errors import UsageError

    if not opts.get("init_from"):
        return
    given = [p.opts[0] for p in ctx.command.params if p.name in INIT_FROM_FIXED
             and ctx.get_parameter_source(p.name) in (ParameterSource.COMMANDLINE,
                                                      ParameterSource.ENVIRONMENT)]
    if given:
        raise UsageError(f"--init-from {opts['init_from']} brings its model, input size and "
                         f"charset; leave out {', '.join(given)}")
    opts["init_from"] = os.path.abspath(opts["init_from"])


def train_options(f):
    return data_options()(loop_options()(encoder_options(row_loss_option(f))))


def domain_options(f):
    """``--balance-domains`` and ``--domain-weight`` (train, distill)."""
    return _apply(f, [
        click.option("--balance-domains", is_flag=True,
                     help="Draw the training samples' domains (labels.jsonl \"domain\", LMDB "
                          "domain-%09d) equally often, not in their share of the data."),
        click.option("--domain-weight", "domain_weights", multiple=True, metavar="NAME=N",
                     help="Draw domain NAME N times as often as a domain of weight 1 "
                          "(repeatable; unnamed domains weigh 1; implies --balance-domains), "
                          "e.g. --domain-weight handwriting=2."),
    ])


def max_length_option(f):
    return click.option(
        "--max-length", type=click.IntRange(min=1), default=None,
        help="Longest text an autoregressive head (attention, lightformer) reads, in "
             "characters (its max_length argument; the end symbol is one more step) "
             "[default: the head's own, 25 attention, 32 lightformer].")(f)


def apply_max_length(opts: dict) -> None:
    """``--max-length`` into the head's arguments (``max_length``), refused for a CTC
    head and when ``--head-arg max_length`` says otherwise."""
    from ocrkit.errors import UsageError

    value = opts.get("max_length")
    if value is None:
        return
    if opts["head"] == "ctc":
        raise UsageError("--max-length is for autoregressive heads (--head attention or "
                         "lightformer): a CTC head reads as many characters as it has frames")
    given = opts["head_args"].get("max_length")
    if given is not None and given != value:
        raise UsageError(f"--max-length {value} contradicts --head-arg max_length={given}; "
                         "give one of them")
    opts["head_args"] = {**opts["head_args"], "max_length": value}


@click.command(context_settings={"max_content_width": 100}, epilog="""\b
Examples:
  ocrkit train --train data/s1-train.lmdb --val data/s1-val.lmdb -o runs/cap --max-steps 3000
  ocrkit train --train a.lmdb --val b.lmdb -o runs/paper --backbone vgg16-cut \\
      --height 64 --width 128 --optimizer sgd --lr 1e-4 --schedule paper --epochs 200
  ocrkit train --train m7/train --val m7-val -o runs/m7 --rows 7 --neck multirow-stretch \\
      --max-steps 3000
  ocrkit train --train box/train --val box-val -o runs/box --rows 10 --neck multirow-stretch \\
      --denoiser runs/den/best.pt
  ocrkit train --train scene/train --val scene-val -o runs/attn --channels 3 \\
      --head attention --max-length 25
  ocrkit train --train hw/train --val hw-val -o runs/ft10 --label-fraction 0.1 \\
      --init-encoder runs/seqclr/best.pt --max-steps 3000
  ocrkit train --train mine/train --val mine-val -o runs/mine --init-from runs/cap/best.pt \\
      --lr 3e-4 --max-steps 1000
  torchrun --nproc_per_node 4 -m ocrkit train --train big/ --val val.lmdb -o runs/ddp --device cuda
""")
@train_options
@init_from_option
@model_options
@max_length_option
@domain_options
@config_option("train")
@click.pass_context
def train(ctx: click.Context, **opts) -> None:
    """Train a recognizer (CAP-CRNN by default) with CTC.

    Writes OUT/last.pt (resumable), OUT/best.pt (best validation CLP),
    OUT/metrics.jsonl, OUT/config.json and OUT/curve.png; prints a JSON summary.
    """
    import os

    from ocrkit.methods.supervised import train_supervised

    adopt_run_config(ctx, opts, "train")
    if opts.get("init_encoder"):  # recorded absolute: a --config rerun finds it anywhere
        opts["init_encoder"] = os.path.abspath(opts["init_encoder"])
    check_init_from(ctx, opts)
    opts["_config"] = replayable("train", opts)
    if opts.get("init_from"):  # the model is the file's: its options are not the run's
        for key in INIT_FROM_FIXED:
            opts["_config"]["options"].pop(key, None)
    apply_max_length(opts)
    result = train_supervised(opts)
    if result is not None:
        click.echo(json_line(result))
