"""`ocrkit synth`: the SanTi-style image generator (see data_tools/synth)."""

from __future__ import annotations

import json
import time

import click

from ocrkit.cli._common import (
    RangeType,
    default_workers,
    progress_bar,
    resolve_workers,
    stderr_console,
)


def _shard(ctx, param, value):
    if value is None:
        return None
    try:
        k, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected K/N, e.g. 3/8") from None
    if not (n >= 1 and 1 <= k <= n):
        raise click.BadParameter(f"{value!r}: K must be in 1..N")
    return k, n


EPILOG = """\b
Language and domain: --lang zh (default) draws Chinese text with CJK fonts;
--lang en draws one English word, name, place or number per image (English
words by frequency and uniformly, names of people and places, prices, dates,
German and French words with accents) with Latin fonts (pip install
'ocrkit[fonts]'). --domain print draws grey text on paper (multi-row pages and
box-line tables too); scene draws RGB word crops that look photographed (many
fonts, coloured text on procedural backgrounds, outlines, shadows, perspective,
curves, blur, noise, JPEG, bits of neighbouring words); handwriting writes each
word anew with per-character jitter, pen pressure, pen colours, ruled paper and
scanner noise. The domain defaults to print for zh and scene for en. Scene and
handwriting images are --height high and as wide as their text, up to --width
(default 8 heights); the look options (--ink, --rotate, --blur, ...) shape
the print domain only. With --lang en, --cols is the longest label (default
25) and --corpus FILE is read one label per line. Each labels.jsonl record
names its domain; build-lmdb keeps it (domain-%09d keys).

\b
Text: --corpus FILE is read in book order. In the default 'running' mode all
whitespace is removed and successive images take successive characters, so the
labels of a run, concatenated, equal the normalised corpus from its start. In
'lines' mode each non-empty line is one row (word- or line-level corpora). When
the corpus runs out, --on-exhausted wrap (default) starts again from its
beginning; 'stop' ends the run early with fewer images (the summary says how
many). Without --corpus, text is an endless stream of frequency-weighted
Chinese words from jieba's dictionary with punctuation, fixed by --seed.

\b
Fonts: --font / --font-dir, else system fonts that draw the corpus's most
frequent characters, else pip-installed CJK fonts (pip install 'ocrkit[fonts]').
Every character is checked by rendering before anything is drawn; characters
no font can draw follow --unknown (error: stop and list them; skip: drop them;
replace: use --replacement). With --lang en: --font / --font-dir, else the
pip-installed and system Latin faces of the domain (handwriting faces for
--domain handwriting, print, display and script faces otherwise); a character
is unusable only when no face draws it, and each word goes to a face that draws
all of it.

\b
Examples:
  ocrkit synth --rows 7 -n 1000 --out data/m7
  ocrkit synth --rows 10 --box-lines -n 1000 --out data/m10
  ocrkit synth --corpus santi.txt -n 5000 --test-fraction 0.2 --out data/s1
  ocrkit synth --corpus words.txt --corpus-mode lines --font DejaVuSans.ttf --out data/en
  ocrkit synth -n 1000000 --shard 3/8 --out data/big/part3   # one of 8 machines
  ocrkit synth --lang en -n 100000 --height 32 --out data/scene-en --preview
  ocrkit synth --lang en --domain handwriting -n 50000 --out data/hw-en
  ocrkit synth --domain handwriting --cols 8 -n 20000 --out data/hw-zh
"""


@click.command(epilog=EPILOG, context_settings={"max_content_width": 100})
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True,
              help="Text and fonts: Chinese, or English words, names and places.")
@click.option("--domain", type=click.Choice(["print", "scene", "handwriting"]), default=None,
              help="Renderer: printed text, photographed word crops, handwriting "
                   "[default: print for zh, scene for en].")
@click.option("-r", "--rows", type=int, default=1, show_default=True,
              help="Text rows per image (paper: 1, 7, 10).")
@click.option("-n", "--count", type=int, default=1000, show_default=True,
              help="Number of images.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed: same seed and settings give byte-identical output.")
@click.option("-o", "--out", type=click.Path(file_okay=False), default="synth-out",
              show_default=True, help="Output folder.")
@click.option("-w", "--workers", type=int, default=None,
              help="Worker processes (default: all cores). Output does not depend on it.")
@click.option("--box-lines", is_flag=True,
              help="Excel-like grid lines; also write each image's clean twin and line mask.")
@click.option("--corpus", type=click.Path(dir_okay=False), default=None,
              help="UTF-8 text file read in book order (default: embedded Chinese word stream; "
                   "with --lang en, English words, names and places).")
@click.option("--corpus-mode", type=click.Choice(["running", "lines"]), default=None,
              help="Running text, or one line per row [default: running for zh, lines for en].")
@click.option("--on-exhausted", type=click.Choice(["wrap", "stop"]), default="wrap",
              show_default=True, help="When the corpus runs out.")
@click.option("--charset", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Allowed characters, one per line; others follow --unknown.")
@click.option("--charset-size", type=click.IntRange(min=0), default=0,
              help="Embedded corpus only: use words made of the K most frequent characters.")
@click.option("--unknown", type=click.Choice(["error", "skip", "replace"]), default="error",
              show_default=True, help="Characters no font can draw (or outside --charset).")
@click.option("--replacement", default="?", show_default=True,
              help="Character used by --unknown replace.")
@click.option("--width", type=int, default=None,
              help="Image width in px (default 256 single-row, 224 multi-row, or from --cols; "
                   "scene and handwriting: the widest image, default 8 heights). "
                   "Sides up to 65500 px, images up to the 100 M pixels ocrkit's readers accept "
                   "(OCRKIT_MAX_IMAGE_PIXELS), checked before any work.")
@click.option("--height", type=int, default=None,
              help="Image height in px (default 32 single-row, 224 multi-row).")
@click.option("--cols", type=int, default=None,
              help="Characters per row (default: as many as fit the width); with --lang en "
                   "the longest label (default 25).")
@click.option("--min-cols", type=int, default=None,
              help="Vary row length uniformly in [min-cols, cols] (default: fixed; 2 for "
                   "Chinese scene and handwriting words).")
@click.option("--font", "fonts", multiple=True, metavar="PATH[:INDEX]",
              help="Font file (repeatable); INDEX picks a face of a .ttc collection.")
@click.option("--font-dir", "font_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Use every font in this folder (repeatable).")
@click.option("--font-family", "font_families", multiple=True, metavar="NAME",
              help="--lang en: only these Latin font families (repeatable; `ocrkit fonts "
                   "--lang en` lists them).")
@click.option("--exclude-font-family", "exclude_font_families", multiple=True, metavar="NAME",
              help="--lang en: leave these Latin font families out (repeatable): a test set "
                   "in designs training never saw.")
@click.option("--system-fonts/--no-system-fonts", default=True, show_default=True,
              help="Look at system fonts before pip-installed ones.")
@click.option("--size-jitter", type=click.FloatRange(0, 0.9), default=0.15, show_default=True,
              help="Font size shrinks randomly by up to this fraction.")
@click.option("--spacing", type=RangeType(float, 0, 2), default="0:0", show_default=True,
              help="Extra space between characters, as a fraction of the font size.")
@click.option("--background", type=RangeType(int, 0, 255), default="200:255", show_default=True,
              help="Paper grey level range.")
@click.option("--ink", type=RangeType(int, 0, 255), default="0:70", show_default=True,
              help="Text grey level range.")
@click.option("--weight", type=RangeType(float, -3, 3), default="-0.5:0.7", show_default=True,
              help="Stroke weight change in pixels, drawn per image (negative thins, "
                   "positive thickens; a fraction blends part of a pixel): light and bold "
                   "weights of each font. Thinning by a whole pixel erases small glyphs.")
@click.option("--texture", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Share of images on uneven paper (gradient and soft blotches).")
@click.option("--rotate", type=click.FloatRange(0, 45), default=0.0, show_default=True,
              help="Max rotation in degrees.")
@click.option("--skew", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Max horizontal shear (0.1 = 10%).")
@click.option("--blur", type=click.FloatRange(0, 10), default=0.0, show_default=True,
              help="Max Gaussian blur radius in px.")
@click.option("--noise", type=click.FloatRange(0, 128), default=0.0, show_default=True,
              help="Max Gaussian noise sigma in grey levels.")
@click.option("--jpeg-quality", type=RangeType(int, 1, 100), default=None,
              help="Save images as JPEG with quality in LO:HI (default: lossless PNG).")
@click.option("--line-width", type=RangeType(int, 1, 20), default="1:2", show_default=True,
              help="Box-line thickness range in px.")
@click.option("--line-ink", type=RangeType(int, 0, 255), default="0:90", show_default=True,
              help="Box-line grey level range.")
@click.option("--test-fraction", type=float, default=0.0, show_default=True,
              help="Hold out this fraction as OUT/test (the rest in OUT/train); paper: 0.2.")
@click.option("--split-order", type=click.Choice(["tail", "random"]), default="tail",
              show_default=True, help="Test images: the last ones (unseen text) or a random set.")
@click.option("--shard", callback=_shard, default=None, metavar="K/N",
              help="Render only the K-th of N disjoint parts (1-based) of this dataset.")
@click.option("--preview", is_flag=True, help="Also write OUT/preview.png, a contact sheet.")
@click.option("--overwrite", is_flag=True,
              help="Replace a dataset synth wrote earlier in --out (nothing else).")
@click.option("--resume", is_flag=True,
              help="Finish the interrupted run in --out with its own settings (other options "
                   "but --workers and -q are ignored); same bytes as an uninterrupted run.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr.")
@click.pass_context
def synth(ctx: click.Context, **opts) -> None:
    """Generate text images: SanTi-style Chinese print (single-row, multi-row, box-line
    tables), and Chinese or English scene-text and handwritten words.

    Writes OUT/images/, OUT/labels.jsonl ({"image", "rows", "font", "domain"} per
    image), gt.txt (single-row sets), charset.txt and meta.json, and prints a JSON
    summary on stdout.
    """
    from data_tools.synth import SynthConfig, synthesize
    from data_tools.synth.config import PRINT_ONLY, default_domain, load_resume_config
    from data_tools.synth.look import Appearance

    quiet = opts.pop("quiet")
    resume = opts.pop("resume")
    console = stderr_console(quiet)
    opts["domain"] = opts["domain"] or default_domain(opts["lang"])
    opts["corpus_mode"] = opts["corpus_mode"] or ("lines" if opts["lang"] == "en" else "running")
    if opts["domain"] != "print" and not resume:
        given = [name for name in PRINT_ONLY
                 if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise click.UsageError(f"{flag} shapes the print domain only; --domain "
                                   f"{opts['domain']} draws its own variation (use --domain print)")
    look = Appearance(
        size_jitter=opts.pop("size_jitter"), spacing=opts.pop("spacing"),
        background=opts.pop("background"), ink=opts.pop("ink"), rotate=opts.pop("rotate"),
        skew=opts.pop("skew"), blur=opts.pop("blur"), noise=opts.pop("noise"),
        line_width=opts.pop("line_width"), line_ink=opts.pop("line_ink"),
        weight=opts.pop("weight"), texture=opts.pop("texture"))
    opts["workers"] = max(1, resolve_workers(
        opts["workers"], default_workers(),
        lambda m: console.print(m, highlight=False)))
    if resume:
        if opts["overwrite"]:
            raise click.UsageError("give --resume or --overwrite, not both")
        cfg = load_resume_config(opts["out"], opts["workers"])
    else:
        cfg = SynthConfig(appearance=look, **opts)
    started = time.perf_counter()
    with progress_bar("synth", quiet) as (start, advance):
        result = synthesize(cfg, on_start=start, on_progress=advance, resume=resume)
    seconds = time.perf_counter() - started
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    fonts = ", ".join(result.fonts[:6]) + (
        f" and {len(result.fonts) - 6} more" if len(result.fonts) > 6 else "")
    console.print(
        f"wrote {result.images} images to {result.out} in {seconds:.1f} s "
        f"({result.images / max(seconds, 1e-9):.0f} img/s); {len(result.fonts)} fonts "
        f"({result.font_source}): {fonts}", highlight=False)
    click.echo(json.dumps({"out": result.out, "images": result.images, "splits": result.splits,
                           "charset_size": result.charset_size, "seconds": round(seconds, 2)},
                          ensure_ascii=False))
