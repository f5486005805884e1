"""Component registry backed by Python entry points.

Groups: ``ocrkit.backbones``, ``ocrkit.necks``, ``ocrkit.heads``,
``ocrkit.classifiers``. An entry point names a factory ``f(**kwargs) -> nn.Module``.
ocrkit's own components are registered through ocrkit's own ``setup.py``, the
same path a third-party plugin uses::

    entry_points={"ocrkit.backbones": ["tiny-cnn = ocrkit_tinycnn:tiny_cnn"]}

The scan (``importlib.metadata``) reads metadata only and is cached; nothing is
imported until a component is used. A name offered by two distributions is an
error naming both; an unknown name lists close matches; a plugin that fails to
import is reported as broken and never breaks other commands.
``OCRKIT_DISABLE_PLUGIN_AUTOLOAD=1`` ignores every distribution but ocrkit.
"""

from __future__ import annotations

import difflib
import functools
import os
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable

from ocrkit.errors import OcrkitError, UsageError

GROUPS = {
    "backbones": "ocrkit.backbones",
    "necks": "ocrkit.necks",
    "heads": "ocrkit.heads",
    "classifiers": "ocrkit.classifiers",
}
SELF = "ocrkit"


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    value: str  # "module:attr"
    dist: str
    version: str
    entry_point: Any

    def load(self) -> Callable:
        try:
            return self.entry_point.load()
        except Exception as exc:  # noqa: BLE001 - any import failure makes the plugin broken
            raise OcrkitError(
                f"{self.kind[:-1]} {self.name!r} from {self.dist} {self.version} is broken: "
                f"{exc.__class__.__name__}: {exc}"
            ) from None


def _dist_of(ep) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"] or "?", dist.version or "?"


@functools.lru_cache(maxsize=None)
def _scan(kind: str, plugins: bool) -> tuple[dict[str, Entry], tuple[str, ...]]:
    """Entries of one group and the duplicate-name conflicts found."""
    entries: dict[str, Entry] = {}
    conflicts = []
    seen_values: dict[tuple[str, str], str] = {}
    for ep in metadata.entry_points(group=GROUPS[kind]):
        dist, version = _dist_of(ep)
        if not plugins and dist.lower() != SELF:
            continue
        key = (ep.name, ep.value)
        if key in seen_values and seen_values[key] == dist:
            continue  # the same distribution seen twice on sys.path (editable installs)
        seen_values[key] = dist
        if ep.name in entries:
            other = entries[ep.name]
            conflicts.append(f"{kind[:-1]} {ep.name!r} is provided by both {other.dist} "
                             f"{other.version} and {dist} {version}")
            continue
        entries[ep.name] = Entry(kind, ep.name, ep.value, dist, version, ep)
    return entries, tuple(conflicts)


def _plugins_enabled() -> bool:
    return os.environ.get("OCRKIT_DISABLE_PLUGIN_AUTOLOAD", "") not in ("1", "true", "yes")


def entries(kind: str) -> dict[str, Entry]:
    """Name -> entry of one group (metadata only; nothing imported)."""
    if kind not in GROUPS:
        raise UsageError(f"unknown component kind {kind!r}; one of {', '.join(GROUPS)}")
    found, _ = _scan(kind, _plugins_enabled())
    return found


def conflicts(kind: str) -> tuple[str, ...]:
    return _scan(kind, _plugins_enabled())[1]


def get(kind: str, name: str) -> Entry:
    """The entry for ``name``; a UsageError listing close matches if unknown."""
    found = entries(kind)
    clash = [c for c in conflicts(kind) if f"{name!r}" in c]
    if clash:
        raise UsageError(clash[0] + "; uninstall one of them")
    if name not in found:
        close = difflib.get_close_matches(name, list(found), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown {kind[:-1]} {name!r}.{hint} Available: "
                         f"{', '.join(sorted(found)) or 'none'}")
    return found[name]


# What a factory raises for arguments it cannot use (wrong type, length, range).
ARGUMENT_ERRORS = (TypeError, ValueError, IndexError, KeyError, AttributeError, RuntimeError,
                   ZeroDivisionError, OverflowError)


def build(kind: str, name: str, **kwargs):
    """Instantiate component ``name`` of ``kind`` with keyword arguments.

    A factory that rejects its arguments becomes one usage error naming the
    component, the arguments the user gave and the factory's reason."""
    import warnings

    factory = get(kind, name).load()
    try:
        # what torch warns about while building from arguments it then rejects (zero-size
        # tensors ...) is noise next to the reason; a build that succeeds says it again
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            built = factory(**kwargs)
        for w in said:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return built
    except OcrkitError:
        raise
    except ARGUMENT_ERRORS as exc:
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()
                          if k not in ("in_channels", "num_classes")) or "defaults"
        reason = " ".join(str(exc).split()) or exc.__class__.__name__
        raise UsageError(f"{kind[:-1]} {name!r} cannot be built with {given}: {reason}"
                         ) from None


def status(entry: Entry) -> str:
    """``ok`` or ``broken: <reason>`` (imports the plugin's module)."""
    try:
        entry.load()
    except OcrkitError as exc:
        return "broken: " + str(exc).split(" is broken: ", 1)[-1]
    return "ok"
