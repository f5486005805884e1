"""`ocrkit fonts`: which fonts synth would use, and what each cannot draw."""

from __future__ import annotations

import json

import click


@click.command(context_settings={"max_content_width": 100})
@click.option("--font", "fonts", multiple=True, metavar="PATH[:INDEX]", help="Font file.")
@click.option("--font-dir", "font_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Folder of fonts.")
@click.option("--corpus", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Check coverage of this corpus's characters (default: common Chinese).")
@click.option("--system-fonts/--no-system-fonts", default=True, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No warnings on stderr (errors still print).")
def fonts(fonts, font_dirs, corpus, system_fonts, quiet) -> None:
    """List the fonts `ocrkit synth` would use, one JSON object per line.

    Each line gives the face, where it was found and the corpus characters it
    cannot draw (checked by rendering, as synth does).
    """
    from data_tools.synth.corpus import char_counts, read_corpus_file
    from data_tools.synth.fonts import GlyphChecker, discover
    from ocrkit.cli._common import stderr_console

    stderr_console(quiet)  # -q: library warnings (fontTools, Pillow) too
    probe_kw = {}
    chars: list[str] = []
    if corpus:
        counts = char_counts(read_corpus_file(corpus, "running"))
        chars = [c for c, _ in counts.most_common()]
        probe_kw["probe"] = "".join(chars[:20])
    specs, source = discover(fonts, font_dirs, system=system_fonts, **probe_kw)
    for spec in specs:
        missing = GlyphChecker(spec).missing(chars) if chars else []
        click.echo(json.dumps({"name": spec.name, "path": spec.path, "index": spec.index,
                               "source": source, "missing": "".join(missing[:200]),
                               "missing_count": len(missing)}, ensure_ascii=False))
