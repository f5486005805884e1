"""`ocrkit train-router`: the HTR/STR router, a small CNN over each image's domain."""

from __future__ import annotations

import click

from ocrkit.cli._common import adopt_run_config, config_option, json_line, replayable
from ocrkit.cli.train import loop_options


@click.command("train-router", context_settings={"max_content_width": 100}, epilog="""\b
Examples:
  ocrkit synth --lang en --domain handwriting -n 2000 --out data/hw
  ocrkit synth --lang en --domain scene -n 2000 --out data/scene
  ocrkit train-router --train data/hw --train data/scene -o runs/router --epochs 2
  ocrkit evaluate --router runs/router/best.pt --model htr=hw.pt --model str=scene.pt test.lmdb
""")
@click.option("--train", "train_paths", multiple=True, type=click.Path(exists=True),
              help="Training data whose samples record their domain (labels.jsonl "
                   "\"domain\", LMDB domain-%09d keys), at least two domains in all "
                   "(repeatable; required, except with --resume, which takes the run's own).")
@click.option("--val", "val_paths", multiple=True, type=click.Path(exists=True),
              help="Validation data (repeatable); best.pt is chosen by its accuracy.")
@click.option("--hidden", type=click.IntRange(min=1), default=128, show_default=True,
              help="Channels of the three convolutions (the supplement's hidden size).")
@loop_options(batch_size=64, lr=1e-3, weight_decay=1e-4, warmup=0.05,
              out_help="Run folder: best.pt, last.pt, metrics.jsonl, curve.png.")
@config_option("train-router")
def train_router(**opts) -> None:
    """Train a router that sends each image to the specialist of its domain.

    The supplement's baseline (Text is Text, §C(iii)): a 3-layer CNN, hidden
    size 128, about 0.3 M parameters, at 84 x 84 x 3 (every image stretched to
    it, grey ones as RGB). The label of an image is the domain its dataset
    records; the domains are the training data's, sorted by name, and stored in
    the checkpoint ("kind": "router"). Writes OUT/best.pt (best validation
    accuracy; the last step without --val), OUT/last.pt, OUT/metrics.jsonl and
    OUT/curve.png; prints a JSON summary with the measured multiply-adds.
    """
    from ocrkit.errors import UsageError
    from ocrkit.methods.router import run_router_training

    adopt_run_config(click.get_current_context(), opts, "train-router")
    if not opts["train_paths"]:
        raise UsageError("missing option --train (data of at least two domains; --resume "
                         "takes a run's own from its config.json)")
    opts["_config"] = replayable("train-router", opts)
    result = run_router_training(opts)
    if result is not None:
        click.echo(json_line(result))
