"""`ocrkit infer -m CKPT INPUTS...`: JSON Lines predictions on stdout."""

from __future__ import annotations

import json
import os
import sys
from typing import Iterator

import click



def open_input(path: str):
    """(grayscale PIL image, None) or (None, one-line reason) for an input path."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("L"), None
    except FileNotFoundError:
        return None, "no such file"
    except (OSError, ValueError) as exc:
        return None, f"cannot read image ({exc.__class__.__name__})"


def iter_inputs(inputs) -> Iterator[str]:
    """Paths from arguments: files as given, folders scanned (sorted), '-' = stdin lines."""
    from data_tools.labels import IMAGE_SUFFIXES

    for item in inputs:
        if item == "-":
            for line in sys.stdin:
                line = line.rstrip("\r\n")
                if line:
                    yield line
        elif os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs.sort()
                for name in sorted(files):
                    if name.lower().endswith(IMAGE_SUFFIXES):
                        yield os.path.join(root, name)
        else:
            yield item


@click.command(context_settings={"max_content_width": 100}, epilog="""\b
Examples:
  ocrkit infer -m best.pt line1.png line2.png
  ocrkit infer -m best.pt scans/ > out.jsonl
  find imgs -name '*.png' | ocrkit infer -m best.pt - > out.jsonl
""")
@click.option("-m", "--model", "checkpoint", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint (.pt) from ocrkit train.")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-b", "--batch-size", type=int, default=32, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--beam-width", type=int, default=1, show_default=True)
@click.option("--denoiser", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Clean images with this train-denoiser checkpoint before recognition.")
def infer(checkpoint, inputs, batch_size, device, beam_width, denoiser) -> None:
    """Recognise images: one JSON object per input on stdout, flushed per line.

    Records are {"path", "text", "confidence"}; multi-row models add "rows"
    (the rows in reading order; "text" is them joined by newlines). An
    unreadable input gets {"path", "error"}; the run goes on and exits 1 at
    the end.
    """
    from ocrkit.cli._common import stderr_console
    from ocrkit.predict import Predictor

    console = stderr_console(False)
    predictor = Predictor(checkpoint, device, beam_width, denoiser,
                          warn=lambda m: console.print(m, highlight=False))
    multirow = predictor.input.rows > 1
    failed = False
    batch: list[tuple[str, object]] = []

    def flush() -> None:
        images = [im for _, im in batch if not isinstance(im, str)]
        results = iter(predictor(images))
        for path, im in batch:
            if isinstance(im, str):
                rec = {"path": path, "error": im}
            else:
                text, conf, rows = next(results)
                rec = {"path": path, "text": text, "confidence": round(conf, 5)}
                if multirow:
                    rec["rows"] = rows
            sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        batch.clear()

    for path in iter_inputs(inputs):
        image, error = open_input(path)
        batch.append((path, error if error else image))
        failed = failed or error is not None
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    if failed:
        sys.exit(1)
