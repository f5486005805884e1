"""Shared CLI pieces: range options, worker defaults (console helpers re-exported)."""

from __future__ import annotations

import click

from ocrkit.console import default_workers, progress_bar, stderr_console  # noqa: F401


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
