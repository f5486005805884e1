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
import pickle
import tempfile

import torch

from ocrkit import __version__
from ocrkit.errors import OcrkitError, UsageError

FORMAT = "ocrkit-checkpoint"
VERSION = 1


def save_checkpoint(path: str, payload: dict) -> None:
    """Atomically write ``payload`` (plain data and tensors) to ``path``."""
    payload = {"format": FORMAT, "version": VERSION, **payload}
    payload.setdefault("meta", {})["ocrkit"] = __version__
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OcrkitError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None
        raise


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Load an ocrkit checkpoint without executing any code from it."""
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such checkpoint")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UsageError(
            f"{path}: refused: the checkpoint contains pickled objects or code that a safe load "
            f"does not run ({first[:120]})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable checkpoint ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0][:120] if str(exc) else ''})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path}: not an ocrkit checkpoint")
    if data.get("version", 0) > VERSION:
        raise UsageError(f"{path}: checkpoint format {data['version']} is newer than this "
                         f"ocrkit understands ({VERSION}); upgrade ocrkit")
    return data


def build_model(ckpt: dict):
    """The recognizer described by a checkpoint, with its weights, in eval mode."""
    from ocrkit.charset import Charset
    from ocrkit.models.recognizer import Recognizer

    if ckpt.get("kind") == "denoiser":
        raise UsageError("this is a denoiser checkpoint, not a recognizer: pass it with "
                         "--denoiser (or clean images with `ocrkit denoise`)")
    charset = Charset(ckpt["charset"])
    model = Recognizer(ckpt["spec"], charset.num_classes)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, charset
