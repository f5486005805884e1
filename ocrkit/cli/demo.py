"""`ocrkit demo`: synthesize, build LMDBs, train, evaluate, infer - on embedded defaults."""

from __future__ import annotations

import json

import click

from ocrkit.cli._common import stderr_console
from ocrkit.demo import DemoConfig

HELD_OUT = ("sans", "sans-wqy", "serif")  # data_tools.synth.fonts.PIP_FONT_PACKAGES' designs


@click.command(context_settings={"max_content_width": 100})
@click.option("-o", "--out", default="demo-out", show_default=True,
              type=click.Path(file_okay=False), help="Demo folder (replaced if an earlier demo).")
@click.option("--charset-size", type=click.IntRange(min=10), default=500, show_default=True,
              help="Most frequent characters of the embedded corpus to use.")
@click.option("--train-images", type=click.IntRange(min=10), default=20000, show_default=True)
@click.option("--test-images", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=2500, show_default=True,
              help="Training steps (batch 32).")
@click.option("--held-out", type=click.Choice(HELD_OUT), default=DemoConfig.held_out,
              show_default=True,
              help="The pip font design kept out of training and tested on (the other two "
                   "train): sans = Noto Sans CJK, sans-wqy = WenQuanYi Micro Hei, serif = "
                   "Noto Serif SC.")
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="Only the final JSON line.")
def demo(out, charset_size, train_images, test_images, steps, held_out, device, seed,
         quiet) -> None:
    """Run the whole chain on embedded defaults (no download, CPU is fine).

    Synthesizes a single-row Chinese training set in two font designs (Noto Sans
    CJK and the Song design Noto Serif SC), a test set in a third design training
    never sees (WenQuanYi Micro Hei; --held-out picks another) and one in the
    training fonts, builds LMDBs, trains a CAP-CRNN
    with augmentation, evaluates both, infers a few held-out images, and prints
    the held-out evaluation as one JSON object on the last stdout line (the
    training fonts' under "training_fonts"). About 10 minutes on 2 CPU cores.
    """
    from ocrkit.demo import run_demo

    console = stderr_console(quiet)
    cfg = DemoConfig(out=out, charset_size=charset_size, train_images=train_images,
                     test_images=test_images, steps=steps, held_out=held_out, device=device,
                     seed=seed, quiet=quiet)
    result = run_demo(cfg, lambda msg: console.print(msg, highlight=False))
    click.echo(json.dumps(result, ensure_ascii=False))
