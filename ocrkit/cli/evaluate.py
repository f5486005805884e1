"""`ocrkit evaluate CKPT DATA...`: metrics as JSON on stdout, a table on stderr;
`ocrkit evaluate --router R.pt --model NAME=CKPT ... DATA...`: the same for routed
recognition, with the router's own accuracy and per-domain metrics."""

from __future__ import annotations

import sys

import click

from ocrkit.cli._common import (default_workers, json_line, progress_bar, resolve_workers,
                                stderr_console)

DEFINITIONS = {
    "clp": "character-level precision, Eq. 18 (position-wise)",
    "clp_ed": "1 - sum(edit distance) / sum(|gt|)",
    "ilp": "image-level precision, Eq. 19 (exact match)",
    "one_minus_ned": "mean of 1 - ED / max(|pred|, |gt|)",
    "cer": "corpus character error rate",
    "wer": "corpus word error rate (whitespace tokens)",
    "ed1_accuracy": "share of samples with edit distance <= 1",
}


def unscorable(labels: list[str], chars, protocol: str) -> list[str]:
    """The characters that ``protocol`` keeps in ``labels`` and that no output of a
    model with the charset ``chars`` becomes under it (sorted): "A" counts as "a"
    under lower-alnum."""
    from ocrkit.metrics import normalize

    can = {c for ch in chars for c in normalize(ch, protocol)}
    kept = {c for label in labels for c in normalize(label, protocol).replace("\n", "")}
    return sorted(kept - can)


@click.command(context_settings={"max_content_width": 100}, epilog="""\b
Examples:
  ocrkit evaluate runs/cap/best.pt data/test.lmdb
  ocrkit evaluate best.pt data/test.lmdb --errors 50 --errors-out worst.html
  ocrkit evaluate scene/best.pt photos/ --protocol lower-alnum   # photos/gt.txt: path<TAB>word
  ocrkit evaluate --router router.pt -m htr=hw.pt -m str=scene.pt test.lmdb
""")
@click.argument("checkpoint", required=False, type=click.Path(), metavar="[CHECKPOINT]")
@click.argument("data", nargs=-1, type=click.Path(exists=True), metavar="DATA...")
@click.option("--router", type=click.Path(dir_okay=False), default=None,
              help="A train-router checkpoint: each sample is read by the --model of the "
                   "domain it routes to (no CHECKPOINT then); adds the router's accuracy "
                   "against the samples' recorded domains and per-domain metrics.")
@click.option("-m", "--model", "models", multiple=True, type=click.Path(dir_okay=False),
              help="With --router: NAME=CKPT, one per domain the router knows (htr and str "
                   "name handwriting and scene). Without: the checkpoint, as CHECKPOINT.")
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")
@click.option("--beam-width", type=click.IntRange(min=1), default=1, show_default=True,
              help="Beam width (1 = greedy): CTC prefix beam search, or the attention "
                   "head's beam search.")
@click.option("--protocol", type=click.Choice(["exact", "lower-alnum"]), default="exact",
              show_default=True,
              help="exact: the strings as they are. lower-alnum: the English scene-text "
                   "benchmarks' scoring - label and prediction lower-cased, everything but "
                   "0-9 a-z removed (accented letters too) - with the exact scores beside "
                   "it in \"exact\".")
@click.option("--errors", type=click.IntRange(min=0), default=0,
              help="Write a gallery of the K worst predictions.")
@click.option("--errors-out", type=click.Path(dir_okay=False), default="errors.html",
              show_default=True, help="Gallery file (HTML); an earlier gallery is replaced, "
                                      "any other existing file is refused.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Evaluate the first N samples only.")
@click.option("-w", "--workers", type=int, default=None,
              help="Data-loading workers (default: up to 2; at most the CPU cores).")
@click.option("--denoiser", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Clean images with this train-denoiser checkpoint before recognition.")
@click.option("--fixed-width", is_flag=True,
              help="Pad or squash every line to the model's training width (default: each "
                   "single-row line is read at its own width, aspect ratio kept).")
@click.option("-q", "--quiet", is_flag=True, help="No table or warnings on stderr.")
@click.pass_context
def evaluate(ctx, checkpoint, data, router, models, batch_size, device, beam_width, protocol,
             errors, errors_out, limit, workers, denoiser, fixed_width, quiet) -> None:
    """Evaluate CHECKPOINT on DATA (LMDBs or labelled folders), or with --router
    the router and its specialists on DATA.

    \b
    Metrics (exact definitions in ocrkit/metrics.py):
      clp            Eq. 18, position-wise correct characters / all characters
      clp_ed         1 - sum(ED) / sum(|gt|)
      ilp, accuracy  Eq. 19, exact-match rate
      one_minus_ned  mean of 1 - ED / max(|pred|, |gt|)
      cer, wer       corpus character / word error rates
      ed1_accuracy   share of samples with ED <= 1
    "confidence": how far infer's confidences can be trusted on this data: the
    calibration error (ECE, 10 bins), and per threshold (0.5 ... 0.99) the share
    of samples at or above it and their accuracy, the choice behind
    `infer --min-confidence` (make it on validation data); "confident_errors"
    counts wrong texts read with confidence >= 0.9.
    Newlines between rows of multi-row labels are not counted as characters.
    Multi-row data also gets "row_level": the same metrics over text rows.
    "protocol" names the scoring; with --protocol lower-alnum the metrics are
    the benchmark's, "exact" holds today's exact scores and "labels_emptied"
    counts labels with no 0-9 a-z character left (scored as empty texts).
    Labelled folders (gt.txt: path<TAB>label, ...) of photos of any size and
    aspect are read like any dataset, each image resized by the model's own
    input rule (keep-ratio models: to its height, the width following).
    Samples that cannot be used (undecodable images, malformed label lines) are
    not in the metrics: stderr says how many and which, the JSON counts them.
    Labels holding more rows than the model reads (multi-row data given to a
    single-row model) are warned about before the work. Data whose samples
    record two or more domains (labels.jsonl "domain", LMDB domain-%09d) also
    gets "per_domain": the metrics of each domain's samples.

    With --router: "router" (its accuracy against the recorded domains,
    balanced accuracy, per-domain accuracy, confusion), "routed_to",
    "oracle_routing" (the metrics had every sample gone to its own domain's
    specialist) and "per_domain" (metrics, router accuracy and where the
    domain's samples went), beside the usual metrics of the routed readings.
    """
    from ocrkit.evaluate import is_gallery
    from ocrkit.outputs import check_output_file

    console = stderr_console(quiet)

    def warn(msg: str) -> None:
        console.print(f"[yellow]warning:[/] {msg}", highlight=False)

    checkpoint, data = _positionals(ctx, checkpoint, data, router, models)
    if router is not None and denoiser:
        from ocrkit.errors import UsageError

        raise UsageError("--denoiser cleans the input of one recognizer; with --router, "
                         "evaluate each specialist on its own to use one")
    if errors:  # checked before the work: a gallery that cannot be written is known now
        check_output_file(errors_out, inputs=[*(c for c in (checkpoint, router) if c),
                                              *_model_paths(models), *data],
                          flag="--errors-out", replaceable=is_gallery,
                          hint="it is not an ocrkit gallery: choose another --errors-out")
    n_workers = resolve_workers(workers, min(2, default_workers() - 1), warn)
    run = dict(batch_size=batch_size, errors=errors, limit=limit, workers=n_workers,
               protocol=protocol, quiet=quiet, warn=warn)
    reader = dict(device=device, beam_width=beam_width, warn=warn, fixed_width=fixed_width)
    if router is None:
        from ocrkit.predict import Predictor

        predictor = Predictor(checkpoint, denoiser=denoiser, **reader)
        result, worst = _plain(predictor, data, **run)
        title, head = f"{checkpoint} on {', '.join(data)}", {"checkpoint": checkpoint}
    else:
        from ocrkit.routing import RoutedPredictor

        routed = RoutedPredictor(router, models, **reader)
        result, worst = _routed(routed, data, **run)
        title = f"routed by {router} on {', '.join(data)}"
        head = {}  # the result names the router ("router") and "specialists"
    if not quiet:
        _tables(console, result, title)
    # Results first: the metrics are on stdout before the gallery is written.
    click.echo(json_line({**head, "data": list(data), **result}))
    sys.stdout.flush()
    if errors:
        from ocrkit.evaluate import write_gallery

        write_gallery(worst, errors_out, f"{title}: {len(worst)} worst predictions")


def _model_paths(models) -> list[str]:
    return [m.partition("=")[2] or m for m in models]


def _positionals(ctx, checkpoint, data, router, models) -> tuple[str | None, tuple]:
    """(checkpoint, data) from the arguments: ``CHECKPOINT DATA...``, or ``DATA...``
    with --router (or with one plain --model), checked as click checks paths."""
    from ocrkit.errors import UsageError

    def check(value, kind, hint):
        try:
            return kind.convert(value, None, ctx)
        except click.BadParameter as exc:
            exc.param_hint = hint
            raise

    data_param = next(p for p in ctx.command.params if p.name == "data")
    if router is None and not models:
        if checkpoint is None:
            raise click.MissingParameter(ctx=ctx, param_hint="'CHECKPOINT'",
                                         param_type="argument")
        if not data:
            raise click.MissingParameter(ctx=ctx, param=data_param)
        return check(checkpoint, click.Path(dir_okay=False), "'CHECKPOINT'"), data
    if router is None and len(models) > 1:
        raise UsageError(f"{len(models)} --model given: one recognizer is evaluated; several "
                         "specialists need --router R.pt (--model NAME=CKPT each)")
    if router is not None and not models:
        raise UsageError("--router needs the specialists: --model NAME=CKPT for each domain "
                         "the router knows (ocrkit info ROUTER lists them)")
    data = ((checkpoint,) if checkpoint is not None else ()) + tuple(data)
    if not data:
        raise click.MissingParameter(ctx=ctx, param=data_param)
    data = tuple(check(d, click.Path(exists=True), "'DATA...'") for d in data)
    return (models[0] if router is None else None), data


def _charset_notes(predictor, labels: list[str], protocol: str, warn, who: str = "") -> None:
    """Labels the model cannot output (said before the work), and labels holding more
    rows than it reads. ``who`` names the samples and the model (routed runs)."""
    from ocrkit.evaluate import rows_mismatch

    model = f"its specialist {predictor.path}" if who else "the model"
    if protocol == "exact":
        unknown = predictor.charset.unknown_in(labels)
        if unknown.affected:
            warn(f"{who}{unknown.describe()}; {model} cannot output them, so they count as "
                 "errors")
    else:
        missing = unscorable(labels, predictor.charset.chars, protocol)
        if missing:
            warn(f"{who}the labels hold characters that count under --protocol {protocol} and "
                 f"that {model} cannot output in either case ({''.join(missing[:20])}"
                 f"{' ...' if len(missing) > 20 else ''}); they count as errors")
    rows_note = rows_mismatch(labels, predictor.input.rows)
    if rows_note:  # said before the work: the metrics to come are not the model's
        warn(f"{who}{rows_note}")


def _plain(predictor, data, *, batch_size, errors, limit, workers, protocol, quiet, warn):
    """`evaluate CHECKPOINT DATA...`: one recognizer."""
    from ocrkit.data import open_dataset
    from ocrkit.evaluate import evaluate as run_eval

    dataset = open_dataset(list(data), mode=predictor.input.mode)
    for line in dataset.issues.warnings():
        warn(line)
    labels = dataset.labels()[:limit] if limit else dataset.labels()
    _charset_notes(predictor, labels, protocol, warn)
    with progress_bar("evaluate", quiet) as (start, advance):
        start(min(len(dataset), limit) if limit else len(dataset))
        result, worst = run_eval(predictor, dataset, batch_size=batch_size, workers=workers,
                                 errors=errors, limit=limit, on_batch=advance,
                                 protocol=protocol)
    _after(result, warn)
    result["malformed_label_lines"] = len(dataset.issues.skipped)
    return result, worst


def _routed(routed, data, *, batch_size, errors, limit, workers, protocol, quiet, warn):
    """`evaluate --router R.pt --model NAME=CKPT ... DATA...`."""
    from collections import Counter

    from ocrkit.data import open_dataset
    from ocrkit.evaluate import evaluate_routed

    dataset = open_dataset(list(data), mode=routed.mode)
    for line in dataset.issues.warnings():
        warn(line)
    n = min(len(dataset), limit) if limit else len(dataset)
    labels, domains = dataset.labels()[:n], dataset.domains()[:n]
    for d, predictor in routed.specialists.items():
        own = [label for label, dom in zip(labels, domains) if dom == d]
        if own:
            _charset_notes(predictor, own, protocol, warn, who=f"{d} samples: ")
    others = Counter("no domain" if d is None else repr(d) for d in domains
                     if d not in routed.specialists)
    if others:
        warn(f"{sum(others.values())} of {n} samples record {_counts(others)}, which the "
             f"router does not know ({', '.join(routed.router.domains)}): they are routed and "
             "scored, but not in the router's accuracy")
    with progress_bar("evaluate", quiet) as (start, advance):
        start(n)
        result, worst = evaluate_routed(routed, dataset, batch_size=batch_size,
                                        workers=workers, errors=errors, limit=limit,
                                        on_batch=advance, protocol=protocol)
    _after(result, warn)
    result["malformed_label_lines"] = len(dataset.issues.skipped)
    return result, worst


def _counts(counter) -> str:
    return ", ".join(f"{name} ({n})" for name, n in counter.most_common())


def _after(result: dict, warn) -> None:
    if result["broken_samples"]:
        warn(f"{result['broken_samples']} samples could not be used and are not in the "
             f"metrics: {', '.join(result['broken_examples'][:3])}"
             + (" ..." if result["broken_samples"] > 3 else ""))
    if result.get("unlike_training_input"):
        warn(f"{result['unlike_training_input']} inputs look unlike what the model was trained "
             f"on: {'; '.join(result['unlike_training_examples'][:2])}")


def confidence_line(cal: dict | None, level: float = 0.9) -> str | None:
    """One line on how far the confidences can be trusted, or None without samples."""
    if not cal or not cal.get("samples"):
        return None
    at = next(x for x in cal["levels"] if x["min_confidence"] == level)
    kept = f"{100 * at['kept']:.1f} % of samples" + (
        f", {100 * at['accuracy']:.1f} % of them right" if at["accuracy"] is not None else "")
    return (f"confidence: calibration error (ECE) {cal['ece']:.4f}; at >= {level}: {kept}; "
            f"{cal['confident_errors']} wrong texts read with confidence >= {level}")


def _tables(console, result: dict, title: str) -> None:
    """The metrics table on stderr; the router's line and a per-domain table where
    there are domains."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    rows = result.get("row_level")
    exact = result.get("exact")
    main = result["protocol"] if exact else ("image level" if rows else "value")
    table.add_column(main, justify="right")
    if exact:
        table.add_column("exact", justify="right")
    if rows:
        table.add_column("row level", justify="right")
    table.add_column("definition")
    for key, text in DEFINITIONS.items():
        extra = ([f"{exact[key]:.4f}"] if exact else []) + (
            [f"{rows[key]:.4f}"] if rows else [])
        table.add_row(key, f"{result[key]:.4f}", *extra, text)
    table.add_row("samples", str(result["samples"]),
                  *([str(exact["samples"])] if exact else []),
                  *([str(rows["samples"])] if rows else []), "")
    console.print(table)
    line = confidence_line(result.get("confidence"))
    if line:
        console.print(line, highlight=False)
    router = result.get("router")
    if router:
        oracle = result.get("oracle_routing")
        console.print(f"router accuracy {router['accuracy']:.4f} (balanced "
                      f"{router['balanced_accuracy']:.4f}) over {router['samples']} samples "
                      "with a known domain"
                      + (f"; with a perfect router, accuracy {oracle['accuracy']:.4f}"
                         if oracle else ""), highlight=False)
    per = result.get("per_domain")
    if not per:
        return
    table = Table(title="per domain")
    for col in ("domain", "samples", "accuracy", "cer"):
        table.add_column(col, justify="left" if col == "domain" else "right")
    if router:
        table.add_column("router acc.", justify="right")
        table.add_column("routed to")
    for name, m in per.items():
        cells = [name, str(m["samples"]), f"{m['accuracy']:.4f}", f"{m['cer']:.4f}"]
        if router:
            acc = m.get("router_accuracy")
            cells += ["-" if acc is None else f"{acc:.4f}",
                      ", ".join(f"{d} {k}" for d, k in m["routed_to"].items() if k)]
        table.add_row(*cells)
    console.print(table)
