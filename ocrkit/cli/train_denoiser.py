"""`ocrkit train-denoiser`: Line-DDeCAE / DDeCAE on synth --box-lines pairs."""

from __future__ import annotations

import click

from ocrkit.cli._common import adopt_run_config, config_option, json_line, replayable
from ocrkit.cli.train import loop_options


@click.command("train-denoiser", context_settings={"max_content_width": 100}, epilog="""\b
Examples:
  ocrkit synth --rows 10 --box-lines -n 2000 --test-fraction 0.1 --out box
  ocrkit train-denoiser --data box -o runs/line --epochs 20 --val-fraction 0.05
  ocrkit train-denoiser --data box -o runs/plain --variant plain --epochs 20 --val-fraction 0.05
  ocrkit denoise -m runs/line/best.pt box/test -o cleaned/
  ocrkit train --train box/train --val box-val --rows 10 --neck multirow-stretch \\
      --denoiser runs/line/best.pt -o runs/box --epochs 20
""")
@click.option("--data", type=click.Path(exists=True, file_okay=False),
              help="A synth --box-lines folder (its train/ split when it has one; required, "
                   "except with --resume, which takes the run's own).")
@click.option("--val", type=click.Path(exists=True, file_okay=False), default=None,
              help="Validation pairs (a synth --box-lines folder); without it or "
                   "--val-fraction, best.pt is the last step. DATA/test is never read.")
@click.option("--val-fraction", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0,
              show_default=True,
              help="Hold out this fraction of the training pairs (drawn with --seed) for "
                   "validation instead of --val.")
@click.option("--variant", type=click.Choice(["line", "plain"]), default="line",
              show_default=True,
              help="line = Line-DDeCAE (learns the box lines, clean = input + output); "
                   "plain = DDeCAE (learns the clean image).")
@click.option("--base", type=click.IntRange(min=1), default=64, show_default=True,
              help="Channels of the first layer (DCGAN: 64), doubled at each halving.")
@click.option("--depth", type=click.IntRange(1, 7), default=4, show_default=True,
              help="Stride-2 layers in the encoder (and decoder).")
@click.option("--height", type=int, default=None, help="Training size [default: the data's].")
@click.option("--width", type=int, default=None)
@loop_options(batch_size=64, lr=1e-3, weight_decay=0.0, warmup=0.05,
              out_help="Run folder: best.pt, last.pt, metrics.jsonl, curve.png.")
@config_option("train-denoiser")
def train_denoiser(**opts) -> None:
    """Train a box-line remover on image / clean-twin pairs.

    Appendix A.1: Adam, lr 1e-3, batch 64, no weight decay. Writes OUT/best.pt
    (best validation PSNR of the cleaned image against the clean twin),
    OUT/last.pt, OUT/metrics.jsonl and OUT/curve.png; prints a JSON summary.
    """
    from ocrkit.errors import UsageError
    from ocrkit.methods.denoise import run_denoiser_training

    adopt_run_config(click.get_current_context(), opts, "train-denoiser")
    if not opts["data"]:
        raise UsageError("missing option --data (a synth --box-lines folder)")
    opts["_config"] = replayable("train-denoiser", opts)
    result = run_denoiser_training(opts)
    if result is not None:
        click.echo(json_line(result))
