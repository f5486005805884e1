"""The ``ocrkit`` command: a click group whose subcommands load lazily.

Subcommand modules are imported only when that subcommand runs, and the help
text below is static, so ``ocrkit --help`` imports neither torch nor numpy.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from ocrkit import __version__

# name -> (module, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "synth": ("ocrkit.cli.synth", "synth",
              "Generate SanTi-style single-row, multi-row and box-line text images."),
    "build-lmdb": ("ocrkit.cli.build_lmdb", "build_lmdb",
                   "Pack a labelled image folder into an LMDB other OCR toolkits read."),
    "stats": ("ocrkit.cli.stats", "stats",
              "Counts, label lengths, rows and charset of LMDBs or labelled folders."),
    "fonts": ("ocrkit.cli.fonts", "fonts",
              "List the fonts synth would use and what they cannot draw."),
    "train": ("ocrkit.cli.train", "train",
              "Train a recognizer (CAP-CRNN by default) with CTC; torchrun for DDP."),
    "train-denoiser": ("ocrkit.cli.train_denoiser", "train_denoiser",
                       "Train Line-DDeCAE / DDeCAE to remove table box lines."),
    "denoise": ("ocrkit.cli.denoise", "denoise",
                "Write images cleaned by a train-denoiser checkpoint (for inspection)."),
    "evaluate": ("ocrkit.cli.evaluate", "evaluate",
                 "Evaluate a checkpoint: CLP, ILP, 1-NED, CER, WER, ED1 as JSON."),
    "infer": ("ocrkit.cli.infer", "infer",
              "Recognise images (files, folders or '-' for stdin) to JSON Lines."),
    "export": ("ocrkit.cli.export", "export",
               "Export a checkpoint to ONNX (dynamic width, charset in metadata)."),
    "demo": ("ocrkit.cli.demo", "demo",
             "The whole chain on embedded defaults: synth, LMDB, train, evaluate, infer."),
    "list": ("ocrkit.cli.list_cmd", "list_components",
             "List registered backbones, necks, heads and classifiers (plugins too)."),
}
ALIASES = {"synthesize": "synth"}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when it is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = ALIASES.get(cmd_name, cmd_name)
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        return (cmd.name if cmd is not None else name), cmd, rest

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Like click's, but usage errors are one line: ``ocrkit: error: ...`` (exit 2)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if getattr(exc, "ctx", None) else ""
            message = " ".join(exc.format_message().split())
            click.echo(f"ocrkit: error: {message}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("ocrkit: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context):
        from ocrkit.errors import OcrkitError

        try:
            return super().invoke(ctx)
        except OcrkitError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"ocrkit: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("ocrkit: interrupted", err=True)
            ctx.exit(130)


@click.group("ocrkit", cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"],
                                              "max_content_width": 100})
@click.version_option(__version__, prog_name="ocrkit")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """ocrkit: train, compress and ship text recognizers, Chinese first.

    \b
    Examples:
      ocrkit synth --rows 7 -n 1000 --out data/m7
      ocrkit synth --rows 10 --box-lines --out data/m10
      ocrkit build-lmdb data/m7 data/m7.lmdb
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug or bool(os.environ.get("OCRKIT_DEBUG"))


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(prog_name="ocrkit")
    except BrokenPipeError:
        # `ocrkit ... | head`: the reader went away; exit quietly like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
