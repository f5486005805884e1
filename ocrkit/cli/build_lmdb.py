"""`ocrkit build-lmdb`: labelled image folders -> one standard OCR LMDB."""

from __future__ import annotations

import json
import os

import click

from ocrkit.cli._common import progress_bar, stderr_console


@click.command("build-lmdb", context_settings={"max_content_width": 100}, epilog="""\b
Examples:
  ocrkit build-lmdb data/m7 data/m7.lmdb
  ocrkit build-lmdb data/s1/train data/s1/test-extra train.lmdb
  ocrkit build-lmdb paddle_set --labels paddle_set/rec_gt_train.txt train.lmdb
""")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.argument("out", type=click.Path())
@click.option("--labels", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Label file to read (default: detected in each input folder).")
@click.option("--format", "fmt", type=click.Choice(["auto", "jsonl", "tsv", "text-renderer",
              "mmocr", "space"]), default="auto", show_default=True,
              help="Label file format (tsv: gt.txt, PaddleOCR rec_gt*.txt; space: TRDG "
                   "labels.txt, text_renderer v1 tmp_labels.txt).")
@click.option("--image-root", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder the label file's image paths are relative to [default: the label "
                   "file's folder, else a folder below it where the first image is found].")
@click.option("--overwrite", is_flag=True,
              help="Replace OUT if it exists (atomically): only a single file or an LMDB "
                   "that build-lmdb wrote, never an input.")
@click.option("--strict", is_flag=True,
              help="Exit 1 and keep OUT unwritten if any image is unreadable.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or report on stderr.")
def build_lmdb(inputs, out, labels, fmt, image_root, overwrite, strict, quiet) -> None:
    """Pack labelled image folders (INPUTS...) into the LMDB OUT.

    Reads labels.jsonl (ocrkit), gt.txt and PaddleOCR rec_gt*.txt (path<TAB>label),
    text_renderer's labels.json and v1 tmp_labels.txt, MMOCR json or TRDG
    labels.txt. Keys follow
    deep-text-recognition-benchmark (image-%09d, label-%09d from 1, num-samples),
    so PaddleOCR, MMOCR and PARSeq read OUT unchanged; multi-row labels are rows
    joined by a newline. A sample whose labels.jsonl record names its domain
    (ocrkit synth: print, scene, handwriting) keeps it as an extra key
    domain-%09d, also when folders of several domains go into one OUT. Every
    image is decoded first: bad ones are skipped and listed on stderr while the
    rest land. Prints a JSON summary on stdout.
    """
    from data_tools.labels import LabelIssues, label_file, read_labels
    from data_tools.lmdb import check_lmdb_target, write_lmdb
    from ocrkit.errors import UsageError
    from ocrkit.outputs import refuse_inputs

    if labels and len(inputs) > 1:
        raise UsageError("--labels names one label file; give a single INPUT with it")
    console = stderr_console(quiet)
    # The output is checked before any label is read: an OUT that cannot be written,
    # or that holds an input, is known at once.
    check_lmdb_target(out, overwrite=overwrite, inputs=list(inputs) + ([labels] if labels else []))
    issues = LabelIssues()
    samples = [s for source in inputs
               for s in read_labels(source, labels, fmt, issues, image_root=image_root)]
    for err in issues.skipped[:20]:
        console.print(f"[yellow]warning:[/] {err}", highlight=False)
    if len(issues.skipped) > 20:
        console.print(f"[yellow]warning:[/] ... {len(issues.skipped) - 20} more malformed lines",
                      highlight=False)
    for line in issues.warnings()[-1:] if issues.empty else []:
        console.print(f"[yellow]warning:[/] {line}", highlight=False)
    if not samples:
        raise UsageError(f"{', '.join(inputs)}: no labelled images found")
    if os.path.lexists(out):  # an existing OUT may not be one of the files read
        refuse_inputs(out, [label_file(src, labels, fmt)[0] for src in inputs]
                      + [s.path for s in samples], flag="OUT")
    with progress_bar("build-lmdb", quiet) as (start, advance):
        start(len(samples))
        report = write_lmdb(samples, out, overwrite=overwrite,
                            sources=list(inputs) + ([labels] if labels else []),
                            on_item=lambda: advance(1), strict=strict)
    if report.skipped:
        names = ", ".join(f"{p} ({why})" for p, why in report.skipped[:10])
        more = f" and {len(report.skipped) - 10} more" if len(report.skipped) > 10 else ""
        click.echo(f"ocrkit: skipped {len(report.skipped)} bad images: {names}{more}", err=True)
    console.print(f"wrote {report.written} samples to {out} (charset {len(report.charset)})",
                  highlight=False)
    click.echo(json.dumps({"out": out, "num_samples": report.written,
                           "skipped": [p for p, _ in report.skipped],
                           "charset_size": len(report.charset),
                           "domains": report.domains,
                           "malformed_label_lines": len(issues.skipped),
                           "empty_labels": len(issues.empty)}, ensure_ascii=False))
