"""Console output shared by the CLI and long-running library code: a rich console
on stderr and a progress bar with count, rate and ETA (silent with -q or when
stderr is not a terminal)."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Callable, Iterator


def stderr_console(quiet: bool = False):
    """A rich console on stderr; quiet with -q (NO_COLOR is honoured by rich).

    ``quiet`` also silences Python warnings from libraries (torch, onnx, Pillow):
    ``-q`` means nothing on stderr but errors.
    """
    from rich.console import Console

    if quiet:
        warnings.simplefilter("ignore")
    return Console(stderr=True, quiet=quiet, soft_wrap=True)  # a message stays one line


def route_warnings() -> None:
    """Show library warnings as one ``ocrkit: warning: ...`` line each (no file, line
    or source excerpt); ``-q`` (see :func:`stderr_console`) drops them."""

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        try:
            sys.stderr.write(f"ocrkit: warning: {text[:300]}\n")
        except (OSError, ValueError):
            pass

    warnings.showwarning = show


def resolve_workers(requested: int | None, default: int, warn: Callable[[str], None] | None = None,
                    flag: str = "--workers") -> int:
    """Worker processes to start: ``default`` when not given, never more than the CPU
    cores this process may use (more only add memory and contention); a negative
    count is a usage error."""
    from ocrkit.errors import UsageError

    if requested is None:
        return max(0, default)
    if requested < 0:
        raise UsageError(f"{flag} {requested}: must be 0 or more")
    cores = default_workers()
    if requested > cores:
        if warn:
            warn(f"warning: {flag} {requested} capped at {cores}, the CPU cores available")
        return cores
    return requested


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


def default_workers() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
