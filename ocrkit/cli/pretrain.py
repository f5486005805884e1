"""`ocrkit pretrain`: SeqCLR contrastive pre-training of an encoder on unlabelled images."""

from __future__ import annotations

import click

from ocrkit.cli._common import (
    FiniteFloat,
    adopt_run_config,
    config_option,
    json_line,
    replayable,
)
from ocrkit.cli.train import loop_options, model_options

# A resumed run's options that change what it trains (refused when they differ from
# the checkpoint's), as the loop names them in the encoder spec.
FLAG_NAMES = {f"spec.seqclr.{key}": f"--{key.replace('_', '-')}"
              for key in ("representation", "projection", "projection_dim", "mapping",
                          "windows", "temperature", "augment_ops", "colour_distortion")}


class OpsRange(click.ParamType):
    """``N`` or ``LO:HI`` operations per view, 0 to 7 (a list from a config file too)."""

    name = "N|LO:HI"

    def convert(self, value, param, ctx):
        from ocrkit.data.seq_augment import OPS

        if isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            try:
                parts = [int(p) for p in str(value).split(":")]
            except ValueError:
                self.fail(f"{value!r} is not a number or LO:HI range", param, ctx)
        if len(parts) == 1:
            parts *= 2
        if len(parts) != 2 or not 0 <= parts[0] <= parts[1] <= len(OPS):
            self.fail(f"{value!r}: expected N or LO:HI with 0 <= LO <= HI <= {len(OPS)}",
                      param, ctx)
        return tuple(int(p) for p in parts)


@click.command("pretrain", context_settings={"max_content_width": 100}, epilog="""\b
Examples:
  ocrkit pretrain --data crops/ --val val-crops/ -o runs/seqclr --max-steps 3000
  ocrkit pretrain --data a.lmdb --data b/ -o runs/seqclr-frame --mapping frame --epochs 10
  ocrkit pretrain --data crops/ -o runs/adam --optimizer adam --lr 1e-2 \\
      --schedule onecycle --max-steps 3000
  ocrkit train --train all/ --val val/ -o runs/ft --label-fraction 0.1 --max-steps 3000 \\
      --init-encoder runs/seqclr/best.pt
  ocrkit train --train all/ --val val/ -o runs/dec --init-encoder runs/seqclr/best.pt \\
      --freeze-encoder --head attention --max-steps 3000
""")
@click.option("--data", multiple=True, type=click.Path(exists=True),
              help="Unlabelled images: an image folder (labels ignored if it has a label "
                   "file), an LMDB or a folder of LMDBs (repeatable; required, except with "
                   "--resume, which takes the run's own).")
@click.option("--val", multiple=True, type=click.Path(exists=True),
              help="Validation images (repeatable): best.pt has the lowest contrastive loss "
                   "on them [default: no validation; best.pt is the last step].")
@model_options(exclude=("classifier", "classifier_args", "head", "head_args", "row_sequence"))
@click.option("--height", type=click.IntRange(min=8), default=32, show_default=True,
              help="Input height (give train the same).")
@click.option("--width", type=click.IntRange(min=8), default=256, show_default=True,
              help="Widest input: keep-ratio images are at most this wide, stretched ones "
                   "exactly (the paper: 32x100, stretched).")
@click.option("--resize", type=click.Choice(["keep-ratio", "stretch"]), default="keep-ratio",
              show_default=True,
              help="keep-ratio: as `ocrkit train` reads lines (padded frames are excluded "
                   "from every instance); stretch: one fixed size, no padding.")
@click.option("--channels", type=click.Choice(["1", "3"]), default="1", show_default=True,
              callback=lambda ctx, param, value: int(value),
              help="Image channels: 1 grey, 3 RGB.")
@click.option("--representation", type=click.Choice(["visual", "contextual", "both"]),
              default="contextual", show_default=True,
              help="What is contrasted: V (after the neck), H (after the sequence stage; "
                   "the paper's §5 setting) or [H; V].")
@click.option("--projection", type=click.Choice(["none", "mlp", "bilstm"]), default=None,
              help="Projection head, discarded after pre-training [default: bilstm with the "
                   "all and window mappings, mlp with frame (the paper's Table 4)].")
@click.option("--projection-dim", type=click.IntRange(min=1), default=128, show_default=True,
              help="Output size of the projection head.")
@click.option("--mapping", type=click.Choice(["all", "window", "frame"]), default="window",
              show_default=True,
              help="Instance mapping: all frames to one instance, --windows windows, or "
                   "every frame.")
@click.option("--windows", type=click.IntRange(min=1), default=5, show_default=True,
              help="T', instances per image of the window mapping.")
@click.option("--temperature", type=FiniteFloat(0, open_min=True), default=0.1,
              show_default=True, help="tau of NT-Xent.")
@click.option("--augment-ops", type=OpsRange(), default="1:7", show_default=True,
              help="Augmentations per view: a random subset of this size (N or LO:HI, drawn "
                   "per view) of Appendix B's seven, in random order.")
@click.option("--colour-distortion", "colour_distortion", type=FiniteFloat(0, 1.25), default=0.0,
              show_default=True, metavar="S",
              help="SimCLR's colour distortion at strength S after the subset (jitter of "
                   "brightness, contrast, saturation and hue; some views grey): not in the "
                   "paper, but RGB text otherwise pairs its views by paper and ink colour "
                   "alone. 1 is SimCLR's; 0 off.")
# The paper's optimizer and schedule (Appendix D) are the defaults: on a CPU-scale
# comparison (docs/pretraining.md) they reached the lowest validation loss in 200 steps,
# ahead of Adam with onecycle at lr 1e-3, 3e-3 and 1e-2 and SemiMTR's Adam 1e-4.
@loop_options(batch_size=64, optimizer="adadelta", lr=10.0, weight_decay=1e-4,
              schedule="steps",
              out_help="Run folder: best.pt and last.pt hold the encoder (checkpoint kind "
                       "'encoder'), metrics.jsonl, curve.png.")
@config_option("pretrain")
def pretrain(**opts) -> None:
    """SeqCLR contrastive pre-training of a recognizer's encoder on unlabelled images.

    Two augmented views of every image go through the encoder; instances of the
    same place in the two views are pulled together, all others pushed apart
    (NT-Xent). Writes OUT/best.pt (lowest validation contrastive loss; the last step
    without --val) and OUT/last.pt (resumable), both of checkpoint kind "encoder",
    for `ocrkit train --init-encoder`; prints a JSON summary.
    """
    from ocrkit.errors import UsageError
    from ocrkit.methods.seqclr import run_pretraining

    adopt_run_config(click.get_current_context(), opts, "pretrain")
    if not opts["data"]:
        raise UsageError("missing option --data (unlabelled images: a folder or an LMDB)")
    opts["_config"] = replayable("pretrain", opts)
    opts["_flag_names"] = FLAG_NAMES
    result = run_pretraining(opts)
    if result is not None:
        click.echo(json_line(result))
