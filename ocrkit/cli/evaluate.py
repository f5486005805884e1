"""`ocrkit evaluate CKPT DATA...`: metrics as JSON on stdout, a table on stderr."""

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
""")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True))
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
def evaluate(checkpoint, data, batch_size, device, beam_width, protocol, errors, errors_out,
             limit, workers, denoiser, fixed_width, quiet) -> None:
    """Evaluate CHECKPOINT on DATA (LMDBs or labelled folders).

    \b
    Metrics (exact definitions in ocrkit/metrics.py):
      clp            Eq. 18, position-wise correct characters / all characters
      clp_ed         1 - sum(ED) / sum(|gt|)
      ilp, accuracy  Eq. 19, exact-match rate
      one_minus_ned  mean of 1 - ED / max(|pred|, |gt|)
      cer, wer       corpus character / word error rates
      ed1_accuracy   share of samples with ED <= 1
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
    single-row model) are warned about before the work.
    """
    from ocrkit.data import open_dataset
    from ocrkit.evaluate import evaluate as run_eval
    from ocrkit.evaluate import is_gallery, rows_mismatch, write_gallery
    from ocrkit.outputs import check_output_file
    from ocrkit.predict import Predictor

    console = stderr_console(quiet)

    def warn(msg: str) -> None:
        console.print(f"[yellow]warning:[/] {msg}", highlight=False)

    if errors:  # checked before the work: a gallery that cannot be written is known now
        check_output_file(errors_out, inputs=[checkpoint, *data], flag="--errors-out",
                          replaceable=is_gallery,
                          hint="it is not an ocrkit gallery: choose another --errors-out")
    n_workers = resolve_workers(workers, min(2, default_workers() - 1), warn)
    predictor = Predictor(checkpoint, device, beam_width, denoiser, warn=warn,
                          fixed_width=fixed_width)
    dataset = open_dataset(list(data), mode=predictor.input.mode)
    for line in dataset.issues.warnings():
        warn(line)
    labels = dataset.labels()[:limit] if limit else dataset.labels()
    if protocol == "exact":
        unknown = predictor.charset.unknown_in(labels)
        if unknown.affected:
            warn(f"{unknown.describe()}; the model cannot output them, so they count as "
                 "errors")
    else:
        missing = unscorable(labels, predictor.charset.chars, protocol)
        if missing:
            warn(f"the labels hold characters that count under --protocol {protocol} and "
                 f"that the model cannot output in either case ({''.join(missing[:20])}"
                 f"{' ...' if len(missing) > 20 else ''}); they count as errors")
    rows_note = rows_mismatch(labels, predictor.input.rows)
    if rows_note:  # said before the work: the metrics to come are not the model's
        warn(rows_note)
    with progress_bar("evaluate", quiet) as (start, advance):
        start(min(len(dataset), limit) if limit else len(dataset))
        result, worst = run_eval(predictor, dataset, batch_size=batch_size, workers=n_workers,
                                 errors=errors, limit=limit, on_batch=advance,
                                 protocol=protocol)
    if result["broken_samples"]:
        warn(f"{result['broken_samples']} samples could not be used and are not in the "
             f"metrics: {', '.join(result['broken_examples'][:3])}"
             + (" ..." if result["broken_samples"] > 3 else ""))
    if result.get("unlike_training_input"):
        warn(f"{result['unlike_training_input']} inputs look unlike what the model was trained "
             f"on: {'; '.join(result['unlike_training_examples'][:2])}")
    result["malformed_label_lines"] = len(dataset.issues.skipped)
    if not quiet:
        from rich.table import Table

        table = Table(title=f"{checkpoint} on {', '.join(data)}")
        table.add_column("metric")
        rows = result.get("row_level")
        exact = result.get("exact")
        main = protocol if exact else ("image level" if rows else "value")
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
    # Results first: the metrics are on stdout before the gallery is written.
    click.echo(json_line({"checkpoint": checkpoint, "data": list(data), **result}))
    sys.stdout.flush()
    if errors:
        write_gallery(worst, errors_out, f"{checkpoint}: {len(worst)} worst predictions")
