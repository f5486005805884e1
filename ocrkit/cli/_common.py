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

    def __init__(self, minimum: float | None = None, *, open_min: bool = False) -> None:
        self.minimum, self.open_min = minimum, open_min

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
