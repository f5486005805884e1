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
    "distill": ("ocrkit.cli.distill", "distill",
                "Distil a teacher recognizer into a smaller student (offline, online, DML)."),
    "pretrain": ("ocrkit.cli.pretrain", "pretrain",
                 "SeqCLR contrastive pre-training of an encoder on unlabelled text images."),
    "train-router": ("ocrkit.cli.train_router", "train_router",
                     "Train the HTR/STR router: a small CNN that sends each image to a specialist."),
    "train-emu": ("ocrkit.cli.train_emu", "train_emu",
                  "Train a recognizer with EMU's multi-hot classifier (K-bit class codes)."),
    "info": ("ocrkit.cli.info", "info",
             "What a checkpoint holds: parts, parameters, bytes, EMU storage and codes."),
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
        command = getattr(importlib.import_module(module), attr)
        if not any(p.name == "debug" for p in command.params):
            # `ocrkit SUBCOMMAND ... --debug` works like `ocrkit --debug SUBCOMMAND ...`:
            # every command shares the option; it only sets the flag the error
            # boundary (invoke) reads when an exception arrives.
            command.params.append(click.Option(
                ["--debug"], is_flag=True, expose_value=False, is_eager=True,
                callback=_set_debug, help="Show the full traceback instead of a one-line error."))
        return command

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
        """The one error boundary: whatever goes wrong is one line on stderr.

        OcrkitError -> its message and exit code; Ctrl-C -> 130, SIGTERM -> 143;
        an OSError (full disk, read-only target) -> its reason and path, exit 1;
        anything else -> one line naming the failure and --debug (exit 1).
        ``--debug`` (or OCRKIT_DEBUG=1) shows the traceback instead.
        """
        from ocrkit.console import route_warnings
        from ocrkit.errors import OcrkitError, Terminated, plain_message

        route_warnings()
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, BrokenPipeError):
            raise
        except OcrkitError as exc:
            if _debug(ctx):
                raise
            click.echo(f"ocrkit: error: {_one_line(plain_message(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            if _debug(ctx):
                raise
            terminated = isinstance(exc, Terminated)
            click.echo(f"ocrkit: {'terminated' if terminated else 'interrupted'}", err=True)
            ctx.exit(143 if terminated else 130)
        except OSError as exc:
            if _debug(ctx):
                raise
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            reason = exc.strerror or _one_line(str(exc)) or exc.__class__.__name__
            click.echo(f"ocrkit: error: {where}{reason}", err=True)
            ctx.exit(1)
        except Exception as exc:  # noqa: BLE001 - the boundary: never a traceback by default
            if _debug(ctx):
                raise
            click.echo(f"ocrkit: error: unexpected {exc.__class__.__name__}: "
                       f"{_one_line(plain_message(exc))[:300]} (rerun with --debug for the traceback "
                       "and report it)", err=True)
            ctx.exit(1)


def _debug(ctx: click.Context) -> bool:
    """Whether to show tracebacks: read when an exception arrives, since a
    subcommand's own ``--debug`` is parsed after the group's callback ran."""
    obj = ctx.find_root().obj
    return bool(obj and obj.get("debug"))


def _set_debug(ctx: click.Context, param, value: bool) -> None:
    """Callback of the ``--debug`` every subcommand gets (see LazyGroup.get_command)."""
    if value:
        root = ctx.find_root()
        root.ensure_object(dict)
        root.obj["debug"] = True


def _one_line(text: str) -> str:
    return " ".join(text.split())


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
    _sigterm_raises()
    try:
        cli.main(prog_name="ocrkit")
    except BrokenPipeError:
        # `ocrkit ... | head`: the reader went away; exit quietly like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except SystemExit as exc:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            _exit_now(exc.code)
        raise


def _exit_now(code) -> None:
    """Leave a torchrun worker without the interpreter's teardown: a gloo thread still
    being destroyed then can abort the process ("terminate called without an active
    exception", SIGABRT) after the work is done and saved, turning a finished run into
    a failed one. Everything written is flushed first; the run's files are closed."""
    status = code if isinstance(code, int) else (0 if code is None else 1)
    if not isinstance(code, int) and code is not None:
        print(code, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def _sigterm_raises() -> None:
    """SIGTERM raises :class:`ocrkit.errors.Terminated` in this process, so the same
    cleanup as for Ctrl-C runs (temporary files removed, training saves last.pt).
    A forked child (data-loader or synth worker) that inherited the handler dies
    the default way instead."""
    import signal

    main_pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != main_pid:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        from ocrkit.errors import Terminated

        raise Terminated()

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass
