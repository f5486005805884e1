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
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True,
              help="en: the Latin faces of --role (family, style class, licence, what each "
                   "cannot draw of the English charset).")
@click.option("--role", type=click.Choice(["print", "handwriting"]), default="print",
              show_default=True, help="--lang en: faces for scene/print or for handwriting.")
@click.option("-q", "--quiet", is_flag=True, help="No warnings on stderr (errors still print).")
def fonts(fonts, font_dirs, corpus, system_fonts, lang, role, quiet) -> None:
    """List the fonts `ocrkit synth` would use, one JSON object per line.

    Each line gives the face, where it was found and the corpus characters it
    cannot draw (checked by rendering, as synth does).

    \b
      ocrkit fonts
      ocrkit fonts --lang en --role handwriting --no-system-fonts
    """
    from data_tools.synth.corpus import char_counts, read_corpus_file
    from data_tools.synth.fonts import GlyphChecker, discover
    from ocrkit.cli._common import stderr_console

    stderr_console(quiet)  # -q: library warnings (fontTools, Pillow) too
    if lang == "en" and not (fonts or font_dirs):
        from data_tools.synth.latin import font_style, latin_fonts

        for face in latin_fonts(role, system=system_fonts):
            style = font_style(face)
            click.echo(json.dumps({"name": face.name, "family": face.family, "class":
                                   style["class"], "bold": style["bold"], "italic":
                                   style["italic"], "path": face.path, "index": face.index,
                                   "source": style["source"], "licence": style["licence"],
                                   "missing": "".join(sorted(face.missing))},
                                  ensure_ascii=False))
        return
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
