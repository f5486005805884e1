"""Which device a command runs a model on (``--device``): training, evaluation,
inference and export share one reading of auto, cpu, cuda, cuda:N and mps."""

from __future__ import annotations

import os

import torch

from ocrkit.errors import UsageError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine")
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    try:
        return torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name}: expected auto, cpu, cuda, cuda:N or mps") from None


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AMX or AVX512-BF16; Linux's
    ``/proc/cpuinfo`` flags, else oneDNN's own check): there bfloat16 autocast
    (``--amp`` on a CPU, a ``bf16`` frozen teacher) is faster than float32; elsewhere
    it is emulated and slower."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
