"""Shared CLI pieces: stderr console, progress bars, range options."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import click


def stderr_console(quiet: bool = False):
    """A rich console on stderr; quiet with -q (NO_COLOR is honoured by rich)."""
    from rich.console import Console

    return Console(stderr=True, quiet=quiet)


@contextlib.contextmanager
def progress_bar(description: str, quiet: bool = False, unit: str = "img") -> Iterator:
    """Yield ``(start(total), advance(n))`` callbacks driving a rich bar on stderr.

    The bar shows count, rate and ETA; it is silent with ``-q`` or when stderr is
    not a terminal (logs and CI stay clean).
    """
    console = stderr_console(quiet)
    if quiet or not console.is_terminal:
        yield (lambda total: None), (lambda n: None)
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn,
                               TaskProgressColumn, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} {unit}/s" if speed else f"- {unit}/s")

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), Rate(), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=None)
        yield (lambda total: bar.update(task, total=total)), (lambda n: bar.advance(task, n))


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


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
