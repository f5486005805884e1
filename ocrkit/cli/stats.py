"""`ocrkit stats`: what is in a dataset (LMDB or labelled folder)."""

from __future__ import annotations

import json
import os

import click

from ocrkit.cli._common import stderr_console


@click.command(context_settings={"max_content_width": 100}, epilog="""\b
Examples:
  ocrkit stats data/m7.lmdb
  ocrkit stats data/lmdbs/ --charset model_charset.txt   # every LMDB below the folder
  ocrkit stats data/m7                                   # a labelled folder
""")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--charset", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Dictionary file (one character per line): report characters outside it.")
@click.option("-q", "--quiet", is_flag=True, help="No table on stderr.")
def stats(paths, charset, quiet) -> None:
    """Counts, label-length and rows histograms, charset and unknown characters.

    One JSON object on stdout; a readable table on stderr.
    """
    from data_tools.labels import LabelIssues, has_label_file, read_labels
    from data_tools.lmdb import LmdbReader, find_lmdbs
    from data_tools.stats import label_stats

    from ocrkit.charset import Charset

    allowed = set(Charset.load(charset).chars) if charset else None
    issues = LabelIssues()

    def labels():
        for path in paths:
            if os.path.isdir(path) and not has_label_file(path):
                for db in find_lmdbs(path):
                    yield from LmdbReader(db).labels()
            else:
                for item in read_labels(path, issues=issues, allow_incomplete=True):
                    yield item.label

    result = label_stats(labels(), allowed)
    result["sources"] = list(paths)
    result["malformed_label_lines"] = len(issues.skipped)
    if issues.incomplete:
        result["incomplete"] = True
    console = stderr_console(quiet)
    for line in issues.warnings():
        console.print(f"[yellow]warning:[/] {line}", highlight=False)
    if not quiet:
        from rich.table import Table

        table = Table(title="dataset", show_header=False)
        for key in ("samples", "characters", "empty_labels", "charset_size"):
            table.add_row(key, str(result[key]))
        table.add_row("rows", _hist(result["rows_histogram"]))
        table.add_row("length", _hist(result["length_histogram"]))
        if allowed is not None:
            table.add_row("samples with unknown", str(result["samples_with_unknown"]))
            table.add_row("unknown chars", " ".join(list(result["unknown"])[:30]) or "-")
        console.print(table)
    click.echo(json.dumps(result, ensure_ascii=False))


def _hist(h: dict) -> str:
    items = list(h.items())
    shown = ", ".join(f"{k}: {v}" for k, v in items[:12])
    return shown + (" ..." if len(items) > 12 else "")
