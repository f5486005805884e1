"""Shared CLI pieces: range options, worker defaults, JSON output (console helpers
re-exported)."""

from __future__ import annotations

import json
import math

import click

from ocrkit.console import (default_workers, progress_bar, resolve_workers,  # noqa: F401
                            stderr_console)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_line(obj) -> str:
    """One line of strict JSON (inf and nan become null: JSON has no such numbers)."""
    return json.dumps(_finite(obj), ensure_ascii=False, allow_nan=False)


class FiniteFloat(click.ParamType):
    """A finite float (click's FloatRange lets ``nan`` through), optionally bounded."""

    name = "float"

    def __init__(self, minimum: float | None = None, maximum: float | None = None, *,
                 open_min: bool = False) -> None:
        self.minimum, self.maximum, self.open_min = minimum, maximum, open_min

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.minimum is not None and (number < self.minimum
                                         or (self.open_min and number == self.minimum)):
            bound = ">" if self.open_min else ">="
            self.fail(f"{value!r}: must be {bound} {self.minimum}", param, ctx)
        if self.maximum is not None and number > self.maximum:
            self.fail(f"{value!r}: must be <= {self.maximum}", param, ctx)
        return number


class RangeType(click.ParamType):
    """``LO:HI`` or a single number ``V`` (meaning ``V:V``)."""

    name = "LO:HI"

    def __init__(self, cast=float, lower: float | None = None, upper: float | None = None):
        self.cast, self.lower, self.upper = cast, lower, upper

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            parts = [self.cast(p) for p in str(value).split(":")]
        except ValueError:
            self.fail(f"{value!r} is not a number or LO:HI range", param, ctx)
        if len(parts) == 1:
            parts = parts * 2
        if len(parts) != 2 or parts[0] > parts[1]:
            self.fail(f"{value!r}: expected LO:HI with LO <= HI", param, ctx)
        for p in parts:
            if (self.lower is not None and p < self.lower) or (self.upper is not None and p > self.upper):
                self.fail(f"{value!r}: values must lie in [{self.lower}, {self.upper}]", param, ctx)
        return tuple(parts)


# Options a rerun from config.json must not inherit.
_NOT_REPLAYED = ("resume", "overwrite", "config", "_explicit")
# ... and what --resume does not take from the run's config.json (how this invocation
# talks, not what it trains).
_NOT_ADOPTED = ("quiet",)
_PATH_OPTIONS = ("train_paths", "val_paths", "charset", "denoiser", "teacher", "data", "val",
                 "init_encoder")


def replayable(command: str, opts: dict, explicit: set[str] | None = None) -> dict:
    """A command's options as config.json keeps them for ``--config``: raw CLI values
    (``k=v`` strings for component arguments, lists for repeated options), paths
    made absolute, and nothing that belongs to one invocation (--resume ...). With
    ``explicit``, only the options given (a command whose defaults depend on what
    was given, like distill's student preset)."""
    import os

    out = {}
    for key, value in opts.items():
        if key in _NOT_REPLAYED or key.startswith("_"):
            continue
        if explicit is not None and key not in explicit:
            continue
        if key.endswith("_args") and isinstance(value, dict):
            value = [f"{k}={v!r}" for k, v in value.items()]
        elif isinstance(value, tuple):
            value = list(value)
        if key in _PATH_OPTIONS and value:
            value = ([os.path.abspath(v) for v in value] if isinstance(value, list)
                     else os.path.abspath(value))
        out[key] = value
    return {"command": command, "options": out}


def config_option(command: str):
    """``--config RUN/config.json``: rerun a run; options given on the command line win.

    The file's ``options`` become the command's defaults (click's ``default_map``),
    so required options are satisfied and every flag still overrides."""

    def load(ctx: click.Context, param, value):
        if not value:
            return value
        try:
            with open(value, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise click.BadParameter(f"{value}: not a readable JSON file ({exc})", ctx=ctx,
                                     param=param) from None
        options = data.get("options") if isinstance(data, dict) else None
        if not isinstance(options, dict):
            raise click.BadParameter(f"{value}: holds no \"options\" (a config.json written by "
                                     "this ocrkit's training commands)", ctx=ctx, param=param)
        if data.get("command") not in (None, command):
            click.echo(f"ocrkit: warning: {value} is from `ocrkit {data['command']}`; only "
                       "options both commands share are used", err=True)
        known = {p.name for p in ctx.command.params}
        if data.get("command") in (None, command):
            _warn_unknown_keys(value, options, ctx)
        ctx.default_map = {**(ctx.default_map or {}),
                           **{k: v for k, v in options.items() if k in known}}
        return value

    return click.option("--config", type=click.Path(exists=True, dir_okay=False),
                        is_eager=True, expose_value=False, callback=load,
                        help="Rerun from a run's config.json (options given here override).")


def _warn_unknown_keys(path: str, options: dict, ctx: click.Context) -> None:
    """One warning per key of a config file that names no option of the command (a
    misspelt key would otherwise be ignored without a word), with the closest option."""
    import difflib

    flags = {p.name: (p.opts[-1] if getattr(p, "opts", None) else p.name)
             for p in ctx.command.params if p.name}
    for key in options:
        if key in flags or key in _NOT_REPLAYED or key.startswith("_"):
            continue
        close = difflib.get_close_matches(key, list(flags), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r} ({flags[close[0]]})?" if close else ""
        click.echo(f"ocrkit: warning: --config {path}: {key!r} is not an option of this "
                   f"command and is ignored{hint}", err=True)


def adopt_run_config(ctx: click.Context, opts: dict, command: str) -> set[str]:
    """``--resume`` without ``--config``: the options not given on the command line are
    taken from the run's own ``OUT/config.json`` (so ``ocrkit train -o RUN --resume``
    continues a run as it was started). Returns the names taken; says which on stderr.
    Options given here still win (and are checked against the checkpoint)."""
    import os

    from click.core import ParameterSource

    if not opts.get("resume") or not opts.get("out"):
        return set()
    if ctx.get_parameter_source("config") not in (None, ParameterSource.DEFAULT):
        return set()  # --config given: its options are the defaults already
    path = os.path.join(opts["out"], "config.json")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return set()
    options = data.get("options") if isinstance(data, dict) else None
    if not isinstance(options, dict) or data.get("command") not in (None, command):
        return set()
    params = {p.name: p for p in ctx.command.params if p.name}
    taken = set()
    for key, raw in options.items():
        param = params.get(key)
        if param is None or key in _NOT_REPLAYED or key in _NOT_ADOPTED or key.startswith("_"):
            continue
        if ctx.get_parameter_source(key) not in (None, ParameterSource.DEFAULT):
            continue
        try:
            value = param.process_value(ctx, raw)
        except click.BadParameter as exc:
            raise click.BadParameter(f"{path}: {exc.message}", ctx=ctx,
                                     param=param) from None
        if value != opts.get(key):
            opts[key] = value
            taken.add(key)
    if taken and not opts.get("quiet"):
        shown = ", ".join(params[k].opts[-1] for k in sorted(taken))
        click.echo(f"ocrkit: --resume: options not given here are the run's own, from {path} "
                   f"({shown})", err=True)
    return taken
