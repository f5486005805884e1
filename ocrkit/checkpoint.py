"""One-file checkpoints, safe to load: ``torch.load(..., weights_only=True)`` only.

Layout (plain data, no pickled objects)::

    {"format": "ocrkit-checkpoint", "version": 1,
     "spec": {...recognizer spec...}, "charset": ["的", "一", ...],
     "input": {"height": 32, "width": 256, "policy": "keep-ratio", "channels": 1,
               "mean": 0.5, "std": 0.5, "rows": 1},
     "meta": {"step": ..., "epoch": ..., "best_metric": ..., "seed": ..., "ocrkit": ...},
     "state_dict": {...},
     "train_state": {...}}   # resumable checkpoints only: optimizer, scheduler, scaler, RNG

A file that needs arbitrary unpickling (a code payload) is refused, never run.
Writes go to a temporary file in the same folder, fsynced, then renamed.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings

import torch

from ocrkit import __version__
from ocrkit.errors import OcrkitError, UsageError

FORMAT = "ocrkit-checkpoint"
VERSION = 1

# What to do with a checkpoint of another kind than a command expected ({path}: its path)
KIND_HINTS = {
    "router": "route with --router {path} --model NAME=CKPT ...",
    "encoder": "start a recognizer from it with train --init-encoder {path}",
    "denoiser": "pass it with --denoiser {path}, or clean images with `ocrkit denoise`",
}


def require_kind(ckpt: dict, path: str | None, expected: str = "recognizer",
                 allow: tuple[str, ...] = (), option: str | None = None) -> None:
    """One line naming the kind found when ``ckpt`` (read from ``path``, given with
    ``option``) is not of the ``expected`` kind (``allow``: other kinds the caller
    handles itself)."""
    kind = ckpt.get("kind", "recognizer")
    if kind == expected or kind in allow:
        return
    hint = KIND_HINTS.get(kind) if expected == "recognizer" else None
    subject = (f"{option} {path} is" if option else f"{path} is") if path else "this is"
    raise UsageError(f"{subject} {article(kind)} {kind} checkpoint, expected "
                     f"{article(expected)} {expected}"
                     + (f" ({hint.format(path=path or 'it')})" if hint else ""))


def plain_spec(value):
    """A spec or input entry without where its files and components came from (not part
    of a model's identity), for comparing two of them."""
    if isinstance(value, (list, tuple)):
        return [plain_spec(v) for v in value]
    if isinstance(value, dict):
        return {k: plain_spec(v) for k, v in value.items()
                if k not in ("source", "dist", "version")}
    return value


def first_difference(old, new, path: str = "") -> tuple[str, object, object] | None:
    """First (dotted path, old, new) where two plain structures differ, or None; a part
    present on one side only is shown by its ``name``."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            found = first_difference(old.get(key), new.get(key),
                                     f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    if isinstance(old, dict) or isinstance(new, dict):
        return (path, None if old is None else old.get("name", old),
                None if new is None else new.get("name", new))
    return None if old == new else (path, old, new)


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def save_checkpoint(path: str, payload: dict) -> None:
    """Atomically write ``payload`` (plain data and tensors) to ``path``."""
    payload = {"format": FORMAT, "version": VERSION, **payload}
    payload.setdefault("meta", {})["ocrkit"] = __version__
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer = _Writer(fh)
            try:
                torch.save(payload, writer)
            except RuntimeError:
                # torch reports a failed write as "[enforce fail at inline_container.cc]";
                # the OSError the file raised (full disk, file-size limit) says why
                if writer.error is not None:
                    raise writer.error from None
                raise
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OcrkitError(f"{_write_reason(exc)} while writing {path}; nothing was "
                              "replaced") from None
        raise


class _Writer:
    """A file's ``write`` that keeps the OSError it raised (torch.save turns it into a
    RuntimeError without the reason)."""

    def __init__(self, fh) -> None:
        self.fh, self.error = fh, None

    def write(self, data) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.fh.flush()


def _write_reason(exc: OSError) -> str:
    import errno

    reason = exc.strerror or str(exc)
    if exc.errno == errno.EFBIG:
        return f"{reason} (over the file-size limit: ulimit -f)"
    return reason


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Load an ocrkit checkpoint without executing any code from it.

    Every failure is one UsageError saying what the file is: empty, not a PyTorch
    checkpoint, truncated or corrupt, a checkpoint that would need to run code (refused,
    never run), or a PyTorch file that is not an ocrkit checkpoint.
    """
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such checkpoint" if not os.path.exists(path)
                         else f"{path}: is a folder, not a checkpoint")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types on bad files
        raise UsageError(f"{path}: {_why_unloadable(path, exc)}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path}: a PyTorch file but not an ocrkit checkpoint (no "
                         f"'format': '{FORMAT}')")
    if data.get("version", 0) > VERSION:
        raise UsageError(f"{path}: checkpoint format {data['version']} is newer than this "
                         f"ocrkit understands ({VERSION}); upgrade ocrkit")
    return data


def _why_unloadable(path: str, exc: Exception) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        return f"cannot read ({err.strerror or err})"
    text = str(exc)
    wanted = re.search(r"GLOBAL ([\w.]+)", text)
    if wanted:
        return (f"refused: it asks to run code or rebuild Python objects ({wanted.group(1)}), "
                "which a safe load never does; ocrkit checkpoints hold plain data only")
    if not head:
        return "empty file, not a checkpoint"
    if head.startswith(b"PK"):
        return "a truncated or corrupt checkpoint (its zip archive cannot be read)"
    if head[:1] == b"\x80":  # a plain pickle: say whether it would have run code
        names = _pickle_globals(path)
        if names:
            return (f"refused: a pickle that asks to run code or rebuild Python objects "
                    f"({', '.join(names[:3])}), which a safe load never does; ocrkit "
                    "checkpoints hold plain data only")
        return "not a PyTorch checkpoint (a plain pickle)"
    return "not a PyTorch checkpoint"


def _pickle_globals(path: str) -> list[str]:
    """Names of the callables a pickle file refers to, found by reading its opcodes
    (``pickletools`` only parses: nothing is imported or run)."""
    import pickletools

    names, strings = [], []
    try:
        with open(path, "rb") as fh:
            for op, arg, _ in pickletools.genops(fh):
                if op.name == "GLOBAL":
                    names.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif op.name in ("REDUCE", "INST", "OBJ", "NEWOBJ") and not names:
                    names.append(op.name.lower())
                if isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # noqa: BLE001 - a broken pickle: whatever was seen so far
        pass
    return names
