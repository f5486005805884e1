"""`ocrkit demo`: synthesize, build LMDBs, train, evaluate, infer - on embedded defaults."""

from __future__ import annotations

import json

import click

from ocrkit.cli._common import stderr_console
from ocrkit.demo import HEADS, TASKS, DemoConfig, EnglishDemoConfig

HELD_OUT = ("sans", "sans-wqy", "serif")  # data_tools.synth.fonts.PIP_FONT_PACKAGES' designs


@click.command(context_settings={"max_content_width": 100})
@click.option("--task", type=click.Choice(TASKS), default="zh", show_default=True,
              help="zh: Chinese lines in an unseen font design; scene-en: English words "
                   "that look photographed; handwriting-en: handwritten English words.")
@click.option("-o", "--out", default="demo-out", show_default=True,
              type=click.Path(file_okay=False), help="Demo folder (replaced if an earlier demo).")
@click.option("--charset-size", type=click.IntRange(min=10), default=500, show_default=True,
              help="Most frequent characters of the embedded corpus to use.")
@click.option("--train-images", type=click.IntRange(min=10), default=None,
              help="Training images [default: 20000 zh, 28000 scene-en, 25000 "
                   "handwriting-en].")
@click.option("--test-images", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--val-images", type=click.IntRange(min=1), default=None,
              help="Validation images that choose best.pt (training fonts) [default: 200 zh, "
                   "300 scene-en and handwriting-en].")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Training steps, batch 32 [default: 2500 zh, 3400 scene-en and "
                   "handwriting-en].")
@click.option("--held-out", type=click.Choice(HELD_OUT), default=DemoConfig.held_out,
              show_default=True,
              help="The pip font design kept out of training and tested on (the other two "
                   "train): sans = Noto Sans CJK, sans-wqy = WenQuanYi Micro Hei, serif = "
                   "Noto Serif SC.")
@click.option("--head", type=click.Choice(HEADS), default="ctc", show_default=True,
              help="English demos: CTC, or an attention decoder (what `ocrkit distill "
                   "--teacher htr=... --teacher str=...` learns from; docs/unified.md).")
@click.option("--amp/--no-amp", default=None,
              help="English demos: mixed precision (bfloat16) [default: on where the CPU "
                   "computes in bfloat16 natively (AMX, AVX512-BF16) and on CUDA].")
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="Only the final JSON line.")
def demo(task, out, charset_size, train_images, test_images, val_images, steps, held_out, head,
         amp, device, seed, quiet) -> None:
    """Run the whole chain on embedded defaults (no download, CPU is fine).

    --task zh (default): synthesizes a single-row Chinese training set in two font
    designs (Noto Sans CJK and the Song design Noto Serif SC), a test set in a
    third design training never sees (WenQuanYi Micro Hei; --held-out picks
    another) and one in the training fonts, builds LMDBs, trains a CAP-CRNN with
    augmentation, evaluates both, infers a few held-out images, and prints the
    held-out evaluation as one JSON object on the last stdout line (the training
    fonts' under "training_fonts"). About 10 minutes on 2 CPU cores.

    --task scene-en / handwriting-en: the same chain on RGB English words that
    look photographed or handwritten, the test set drawn in Latin font families
    training never saw and scored as the English benchmarks are (lower-case,
    letters and digits only; exact scores under "exact"). At most 15 minutes on
    2 CPU cores (CTC; --head attention trains the same encoder with an attention
    decoder, a little slower per step).

    \b
      ocrkit demo
      ocrkit demo --task scene-en --out demo-scene
      ocrkit demo --task handwriting-en --head attention --out demo-hw
    """
    from ocrkit.demo import run_demo, run_english_demo

    console = stderr_console(quiet)
    say = lambda msg: console.print(msg, highlight=False)  # noqa: E731
    if task == "zh":
        if head != "ctc":
            raise click.UsageError(f"--head {head} is for the English demos (--task scene-en "
                                   "or handwriting-en); the Chinese demo trains CTC")
        if amp is not None:
            raise click.UsageError("--amp/--no-amp is for the English demos (--task scene-en "
                                   "or handwriting-en)")
        cfg = DemoConfig(out=out, charset_size=charset_size, test_images=test_images,
                         held_out=held_out, device=device, seed=seed, quiet=quiet,
                         **_given(train_images=train_images, steps=steps,
                                  val_images=val_images))
        result = run_demo(cfg, say)
    else:
        ctx = click.get_current_context()
        for name in ("charset_size", "held_out"):
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
                raise click.UsageError(f"--{name.replace('_', '-')} is for --task zh; the "
                                       f"English demos hold out Latin font families")
        cfg = EnglishDemoConfig(task=task, out=out, test_images=test_images, head=head,
                                amp=amp, device=device, seed=seed, quiet=quiet,
                                **_given(train_images=train_images, steps=steps,
                                         val_images=val_images))
        result = run_english_demo(cfg, say)
    click.echo(json.dumps(result, ensure_ascii=False))


def _given(**values) -> dict:
    """The options given on the command line (None: the task's default)."""
    return {k: v for k, v in values.items() if v is not None}
