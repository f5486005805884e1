"""`ocrkit distill`: a small student learns from a teacher recognizer (Yu & Zhang §3.5),
or one student from several domain specialists (unified HTR + STR distillation, Bhunia
et al. 2021: ``--teacher htr=HTR.pt --teacher str=STR.pt``)."""

from __future__ import annotations

import os

import click

from ocrkit.cli._common import (
    FiniteFloat,
    adopt_run_config,
    config_option,
    json_line,
    replayable,
)
from ocrkit.cli.train import _apply, data_options, domain_options, loop_options, model_options


class OneOrMany(click.Option):
    """A repeatable option that also takes one plain value where a list is expected
    (a run's config.json written before the option was repeatable)."""

    def type_cast_value(self, ctx: click.Context, value):
        if isinstance(value, str):
            value = (value,)
        return super().type_cast_value(ctx, value)


def kd_options(f):
    options = [
        click.option("--teacher", cls=OneOrMany, multiple=True, metavar="[NAME=]PATH",
                     help="The teacher: a recognizer checkpoint (its weights, input and "
                          "charset), or a run's config.json (architecture only: --online "
                          "from scratch). --kd-mode dml: the peer (default: the student's "
                          "architecture). NAME=PATH, repeated: unified distillation, each "
                          "sample taught by the teacher of its domain (htr: handwriting, "
                          "str: scene, other names their own domain; --teacher-domain)."),
        click.option("--student-preset", type=click.Choice(["half", "same", "none"]),
                     default="half", show_default=True,
                     help="half: the teacher's backbone at half width (about a quarter of "
                          "its weights) and one BiLSTM layer of the same size, same frames - "
                          "30 % of the weights of a small-VGG teacher with two BiLSTM layers "
                          "(the summary's parameter_share says it for yours); same: the "
                          "teacher's architecture (unified distillation's paper setting); "
                          "model options given override its parts. none: the model options "
                          "alone describe the student. Several teachers: the first one's."),
        click.option("--kd-mode", type=click.Choice(["paper", "dml", "ctc-mean-kl"]),
                     default="paper", show_default=True,
                     help="paper: Eq. 13-17 (soft targets, hints, BiLSTM states); dml: two "
                          "peers learn from each other (PP-OCRv3); ctc-mean-kl: frozen teacher, "
                          "time-averaged CTC KL, no equal frame counts needed (PP-OCRv4)."),
        click.option("--online", is_flag=True,
                     help="Train the teacher at the same time, on its own CTC loss only (the "
                          "paper's setting); teacher tensors in KD terms are detached."),
        click.option("--teacher-init", type=click.Choice(["checkpoint", "scratch"]), default=None,
                     help="Start the trained teacher from its checkpoint's weights or from "
                          "scratch [default: checkpoint when it has weights; dml: scratch]."),
        click.option("--temperature", "-T", type=FiniteFloat(0, open_min=True), default=None,
                     help="Softmax temperature [default: 1.5 paper (Table 6), 1.0 dml, "
                          "0.5 ctc-mean-kl (PaddleOCR), 2.0 unified (T^2-scaled KL)]."),
        click.option("--soft-weight", type=FiniteFloat(0), default=None,
                     help="Weight of the distillation term [default: 0.5 paper (1 - alpha of "
                          "Eq. 13; the paper gives no alpha); 1.0 dml (each peer's KL to the "
                          "other at weight 1, the DML paper's); 1.0 ctc-mean-kl (PaddleOCR "
                          "PP-OCRv4's weight)]."),
        click.option("--skd-form", type=click.Choice(["sum", "literal"]), default="sum",
                     show_default=True,
                     help="sum: L_ctc + (1-alpha) L_soft; literal: Eq. 13 inside Eq. 17 as "
                          "printed, which adds alpha * L_ctc again."),
        click.option("--t2/--no-t2", default=False, show_default=True,
                     help="Scale the soft term by T^2 (Hinton; not in the paper)."),
        click.option("--lambda-hint", type=FiniteFloat(0), default=0.5, show_default=True,
                     help="FitNets hint weight (Eq. 16's lambda1; Table 6 'alpha'); 0: off."),
        click.option("--lambda-lstm", type=FiniteFloat(0), default=0.2, show_default=True,
                     help="BiLSTM h/c weight (Eq. 16's lambda2; Table 6 'beta'); 0: off."),
        click.option("--kd-warmup", type=click.FloatRange(0, 1), default=0.0,
                     show_default=True,
                     help="Ramp every KD term from 0 to its weight over this fraction of the "
                          "steps (not in the paper; e.g. 0.3 with --online, whose teacher "
                          "starts from scratch)."),
        click.option("--kd-gate", type=click.Choice(["none", "teacher-better"]), default="none",
                     show_default=True,
                     help="teacher-better: the KD terms of a batch count only while the "
                          "teacher's CTC loss is below the student's (not in the paper; for "
                          "--online, whose teacher starts from scratch)."),
        click.option("--hint", multiple=True, metavar="S=T",
                     help="Hint pair: student tap = teacher tap (stage1..., a module path), "
                          "through a 1x1-conv regressor (repeatable; 'none': no hints) "
                          "[default: the deeper half of the backbone stages of the same size "
                          "in both, e.g. stage3=stage3, stage4=stage4]."),
        click.option("--teacher-precision", type=click.Choice(["auto", "fp32", "bf16"]),
                     default="auto", show_default=True,
                     help="A frozen teacher's arithmetic on the CPU: auto = bf16 where the CPU "
                          "computes bfloat16 natively (about twice as fast), else fp32. On a "
                          "GPU --amp decides."),
        click.option("--kd-reduction", type=click.Choice(["mean", "sum"]), default="mean",
                     show_default=True,
                     help="Hint and lstm terms per element (mean) or the paper's sum over "
                          "features / images (Eq. 14-15), which outweighs CTC by far."),
    ]
    return _apply(f, options)


def unified_options(f):
    """Unified HTR + STR distillation (``--teacher NAME=PATH`` given several times)."""
    weight = {"type": FiniteFloat(0), "default": 1.0, "show_default": True}
    options = [
        click.option("--teacher-domain", multiple=True, metavar="NAME=DOMAIN",
                     help="The domain (Sample.domain: labels.jsonl \"domain\", LMDB "
                          "domain-%09d) a named teacher teaches (repeatable; a teacher may "
                          "teach several) [default: htr=handwriting, str=scene, any other "
                          "NAME=NAME]."),
        click.option("--unrouted", type=click.Choice(["ce", "error"]), default="ce",
                     show_default=True,
                     help="Training samples no teacher supervises (a domain without teacher, "
                          "none recorded, a character or length their teacher cannot read): "
                          "ce = they learn from their labels only (counted before training); "
                          "error = refuse the data."),
        click.option("--w-logits", **weight,
                     help="Logits KL per decoding step at -T, T^2-scaled; 0: off."),
        click.option("--w-hint", **weight,
                     help="Character-localised hint on the glimpses (through a learned linear "
                          "map when the sizes differ); 0: off."),
        click.option("--w-attention", **weight,
                     help="Attention-map distillation (maps resized to one size, "
                          "renormalised; a 2-D map summed over its height for a 1-D one); "
                          "0: off."),
        click.option("--w-affinity", **weight,
                     help="Affinity of the glimpses (L x L cosine per sample); 0: off."),
        click.option("--hint-loss", type=click.Choice(["mse", "l1"]), default="mse",
                     show_default=True, help="Hint per step, averaged over channels."),
        click.option("--attention-loss", type=click.Choice(["kl", "l1"]), default="kl",
                     show_default=True, help="KL(teacher || student) or L1 per step."),
        click.option("--affinity-loss", type=click.Choice(["mse", "l1"]), default="mse",
                     show_default=True, help="Over the pairs of valid steps, per sample."),
        click.option("--charset-map", type=click.Choice(["fold", "exact"]), default="fold",
                     show_default=True,
                     help="A teacher's characters on the student's: fold = case and "
                          "typographic punctuation folded (a teacher class standing for "
                          "several student classes splits its probability equally); exact = "
                          "identical characters only (the rest's probability is dropped and "
                          "renormalised)."),
    ]
    return domain_options(_apply(f, options))


@click.command(context_settings={"max_content_width": 100}, epilog="""\b
Examples:
  ocrkit distill --teacher runs/big/best.pt --train train.lmdb --val val.lmdb -o runs/small
  ocrkit distill --teacher runs/big/config.json --online --train ... -o runs/online
  ocrkit distill --kd-mode dml --train train.lmdb --val val.lmdb -o runs/dml
  ocrkit distill --teacher t.pt --kd-mode ctc-mean-kl --backbone-arg width_stride=8 ...
  ocrkit evaluate runs/small/best.pt test.lmdb        # the student, like any checkpoint
  ocrkit distill --teacher htr=runs/htr/best.pt --teacher str=runs/str/best.pt \\
      --train hw.lmdb --train scene.lmdb --val val.lmdb --balance-domains -o runs/unified
  torchrun --nproc_per_node 2 -m ocrkit distill --teacher t.pt --train ... -o runs/ddp
""")
@kd_options
@unified_options
@data_options(denoiser=False, input_help="Student input height [default: the teacher's].",
              width_help="Student input width after resize/pad [default: the teacher's; the "
                         "widest teacher's with several; 256 for --kd-mode dml without "
                         "--teacher].")
@loop_options(out_help="Run folder: best.pt and last.pt hold the student alone (an ordinary "
                       "recognizer checkpoint); teacher.pt the co-trained teacher or peer.")
@model_options
@config_option("distill")
@click.pass_context
def distill(ctx: click.Context, **opts) -> None:
    """Distil a teacher recognizer into a smaller student (knowledge distillation).

    The student is chosen by the same model options as `ocrkit train` (over
    --student-preset half by default) and is saved alone: evaluate, infer and
    export use OUT/best.pt like any checkpoint; its metadata records the
    teacher's file hash and the KD configuration. Every loss term is logged in
    OUT/metrics.jsonl and drawn in OUT/curve.png.

    With named teachers (--teacher htr=HTR.pt --teacher str=STR.pt) one
    attention-decoder student learns from frozen domain specialists, each sample
    from the teacher of its own domain (unified HTR + STR distillation): logits,
    hint, attention-map and affinity terms per decoding step (--w-*).
    """
    from click.core import ParameterSource

    from ocrkit.methods.distill_setup import run_distill
    from ocrkit.methods.unified_setup import parse_teachers, run_unified

    taken = adopt_run_config(ctx, opts, "distill")
    opts["_explicit"] = {name for name in opts
                         if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                                                ParameterSource.DEFAULT_MAP)
                         } | taken
    teachers = parse_teachers(opts["teacher"])
    if teachers:  # unified: config.json keeps NAME=/absolute/path
        opts["teacher"], opts["teachers"] = None, teachers
        opts["_config"] = replayable("distill", opts, opts["_explicit"])
        opts["_config"]["options"]["teacher"] = [f"{n}={os.path.abspath(p)}"
                                                 for n, p in teachers]
    else:
        opts["teacher"] = opts["teacher"][0] if opts["teacher"] else None
        if opts["teacher"] is not None and not os.path.isfile(opts["teacher"]):
            raise click.BadParameter(f"File {opts['teacher']!r} does not exist.",
                                     param_hint="'--teacher'")
        opts["_config"] = replayable("distill", opts, opts["_explicit"])
    result = run_unified(opts) if teachers else run_distill(opts)
    if result is not None:
        click.echo(json_line(result))
