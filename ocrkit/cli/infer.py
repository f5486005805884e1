"""`ocrkit infer -m CKPT INPUTS...`: JSON Lines predictions on stdout; `ocrkit infer
--router R.pt -m NAME=CKPT ... INPUTS...`: the same, each image read by the specialist
its router picks (:mod:`ocrkit.routing`)."""

from __future__ import annotations

import json
import os
import sys
from typing import Iterator

import click



def open_input(path: str, mode: str = "L"):
    """(PIL image, None) or (None, one-line reason) for an input path."""
    from data_tools.images import open_image

    return open_image(path, mode)


def iter_inputs(inputs, exclude: str | None = None) -> Iterator[str]:
    """Paths from arguments: files as given, folders scanned (sorted), '-' = stdin lines.

    ``exclude``: a folder never descended into (a command's own output folder)."""
    from data_tools.labels import IMAGE_SUFFIXES

    skip = os.path.realpath(exclude) if exclude else None
    for item in inputs:
        if item == "-":
            for line in sys.stdin:
                line = line.rstrip("\r\n")
                if line:
                    yield line
        elif os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs[:] = sorted(d for d in dirs
                                 if os.path.realpath(os.path.join(root, d)) != skip)
                for name in sorted(files):
                    if name.lower().endswith(IMAGE_SUFFIXES):
                        yield os.path.join(root, name)
        else:
            yield item


def require_inputs(inputs, exclude: str | None = None) -> Iterator[str]:
    """:func:`iter_inputs`, refusing input that yields no image path at all (an empty
    folder, a folder of other files, nothing on stdin): no input is not success in a
    pipeline. Checked on the first path, before a model is loaded; stdin is read
    lazily as before."""
    import itertools

    from data_tools.labels import IMAGE_SUFFIXES
    from ocrkit.errors import UsageError

    paths = iter_inputs(inputs, exclude)
    first = next(paths, None)
    if first is None:
        if all(i == "-" for i in inputs):
            raise UsageError("no input image: stdin held no path (give one image path per "
                             "line)")
        where = ", ".join("stdin" if i == "-" else str(i) for i in inputs)
        raise UsageError(f"no input image found in {where} (a folder is searched for "
                         f"{' '.join(s for s in IMAGE_SUFFIXES)} files)")
    return itertools.chain([first], paths)


@click.command(context_settings={"max_content_width": 100}, epilog="""\b
Examples:
  ocrkit infer -m best.pt line1.png line2.png
  ocrkit infer -m best.pt scans/ > out.jsonl
  find imgs -name '*.png' | ocrkit infer -m best.pt - > out.jsonl
  ocrkit infer -m best.pt --min-confidence 0.9 scans/ > out.jsonl
  ocrkit infer --router router.pt -m htr=hw.pt -m str=scene.pt photos/ > out.jsonl
""")
@click.option("-m", "--model", "models", multiple=True, type=click.Path(dir_okay=False),
              help="Checkpoint (.pt) from ocrkit train. With --router: NAME=CKPT, one per "
                   "domain the router knows (htr and str name handwriting and scene).")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--router", type=click.Path(dir_okay=False), default=None,
              help="A train-router checkpoint: each image is read by the --model of the "
                   "domain it routes to; records add \"route\" and \"route_probability\".")
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")
@click.option("--beam-width", type=click.IntRange(min=1), default=1, show_default=True,
              help="Beam width (1 = greedy): CTC prefix beam search, or the attention "
                   "head's beam search.")
@click.option("--denoiser", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Clean images with this train-denoiser checkpoint before recognition.")
@click.option("--fixed-width", is_flag=True,
              help="Pad or squash every line to the model's training width (default: each "
                   "single-row line is read at its own width, aspect ratio kept).")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=None,
              help="Mark records read with a lower confidence: \"low_confidence\": true "
                   "(the text is kept); stderr counts them. Choose it on validation data "
                   "with `ocrkit evaluate` (its \"confidence\" levels).")
@click.option("-q", "--quiet", is_flag=True, help="No warnings on stderr.")
@click.pass_context
def infer(ctx, models, inputs, router, batch_size, device, beam_width, denoiser, fixed_width,
          min_confidence, quiet) -> None:
    """Recognise images: one JSON object per input on stdout, flushed per line.

    Records are {"path", "text", "confidence"}; multi-row models add "rows"
    (the rows in reading order; "text" is them joined by newlines). An input
    unlike what the model was trained on (a page given to a line model) gets
    a "warning". An unreadable input gets {"path", "error"}; the run goes on
    and exits 1 at the end. No input image at all (an empty folder, nothing on
    stdin) is a usage error (exit 2).

    "confidence" is the mean probability of the characters read (0-1). With
    --min-confidence T, records below T add "low_confidence": true, so a
    pipeline can send them to a person instead of trusting them; `ocrkit
    evaluate` on labelled validation data shows, per threshold, how many
    samples pass it and how many of those are right.

    With --router, each image is first classified by the router and read by
    the specialist of its domain; records add "route" (the domain) and
    "route_probability" (the router's softmax probability of it).
    """
    from ocrkit.cli._common import stderr_console

    console = stderr_console(quiet)
    _check_models(ctx, models, router, denoiser)
    paths = require_inputs(inputs)  # no input: refused before a model is loaded
    reader = _reader(models, router, device, beam_width, denoiser, fixed_width,
                     lambda m: console.print(m, highlight=False))
    failed = False
    odd = low = 0
    batch: list[tuple[str, object]] = []

    def emit(rec: dict) -> None:
        sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def predict(images):
        """Predictions for a batch; if the batch fails, image by image, so one bad
        input costs one error record, never the batch."""
        try:
            return reader.read(images, batch_size)
        except Exception:  # noqa: BLE001
            out = []
            for im in images:
                try:
                    out.append(reader.read([im], batch_size)[0])
                except Exception as exc:  # noqa: BLE001
                    out.append(exc)
            return out

    def flush() -> None:
        nonlocal failed, odd, low
        good = [im for _, im in batch if not isinstance(im, str)]
        results = iter(predict(good))
        for path, im in batch:
            if isinstance(im, str):
                emit({"path": path, "error": im})
                continue
            res = next(results)
            if isinstance(res, Exception):
                failed = True
                emit({"path": path, "error": f"recognition failed ({res.__class__.__name__}: "
                                             f"{str(res).splitlines()[0][:120] if str(res) else ''})"})
                continue
            rec = reader.record(path, im, res)
            odd += "warning" in rec
            if min_confidence is not None and rec["confidence"] < min_confidence:
                rec["low_confidence"] = True
                low += 1
            emit(rec)
        batch.clear()

    try:
        for path in paths:
            image, error = open_input(path, reader.mode)
            batch.append((path, error if error else image))
            failed = failed or error is not None
            if len(batch) >= batch_size:
                flush()
    finally:
        if batch:  # whatever stops the loop, the pending batch still gets its records
            flush()
    if low:
        console.print(f"[yellow]warning:[/] {low} texts read with confidence below "
                      f"{min_confidence} (\"low_confidence\" in their records)",
                      highlight=False)
    if odd:
        console.print(f"[yellow]warning:[/] {odd} inputs look unlike what the model was trained "
                      "on (see \"warning\" in their records)", highlight=False)
    if failed:
        sys.exit(1)


class _Plain:
    """One recognizer: records {"path", "text", "confidence"[, "rows"][, "warning"]}."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor
        self.mode = predictor.input.mode

    def read(self, images, batch_size: int) -> list:
        return self.predictor(images, batch_size)

    def record(self, path: str, image, res) -> dict:
        text, conf, rows = res
        return _record(self.predictor, path, image, text, conf, rows)


class _Routed:
    """A router and its specialists: records add "route" and "route_probability"."""

    def __init__(self, routed) -> None:
        self.routed = routed
        self.mode = routed.mode

    def read(self, images, batch_size: int) -> list:
        return self.routed(images, batch_size)

    def record(self, path: str, image, res) -> dict:
        rec = _record(self.routed.specialists[res.route], path, image, res.text,
                      res.confidence, res.rows)
        warning = rec.pop("warning", None)
        rec["route"], rec["route_probability"] = res.route, round(res.probability, 5)
        if warning:
            rec["warning"] = warning
        return rec


def _record(predictor, path: str, image, text: str, conf: float, rows: list[str]) -> dict:
    rec = {"path": path, "text": text, "confidence": round(conf, 5)}
    if predictor.input.rows > 1:
        rec["rows"] = rows
    why = predictor.mismatch(image)
    if why:
        rec["warning"] = why
    return rec


def _check_models(ctx, models, router, denoiser) -> None:
    """The model options, checked before any input is read."""
    from ocrkit.errors import UsageError

    if router is None:
        if not models:
            raise click.MissingParameter(ctx=ctx, param=_param(ctx, "models"))
        if len(models) > 1:
            raise UsageError(f"{len(models)} --model given: one recognizer reads the images; "
                             "several specialists need --router R.pt (--model NAME=CKPT each)")
        return
    if denoiser:
        raise UsageError("--denoiser cleans the input of one recognizer; with --router, "
                         "infer with each specialist on its own to use one")
    if not models:
        raise UsageError("--router needs the specialists: --model NAME=CKPT for each domain "
                         "the router knows (ocrkit info ROUTER lists them)")


def _reader(models, router, device, beam_width, denoiser, fixed_width, warn):
    """The plain or routed reader the options ask for."""
    if router is None:
        from ocrkit.predict import Predictor

        return _Plain(Predictor(models[0], device, beam_width, denoiser, warn=warn,
                                fixed_width=fixed_width))
    from ocrkit.routing import RoutedPredictor

    return _Routed(RoutedPredictor(router, models, device, beam_width, warn=warn,
                                   fixed_width=fixed_width))


def _param(ctx, name: str):
    return next(p for p in ctx.command.params if p.name == name)
