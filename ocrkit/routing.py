"""Routed recognition: a router (``ocrkit train-router``) picks, per image, the
specialist recognizer that reads it (``infer``/``evaluate --router R.pt --model
NAME=CKPT ...``).

Naming the specialists: each ``--model`` is ``NAME=CKPT`` where NAME is one of the
domains the router was trained on (stored in its checkpoint, shown by ``ocrkit
info``), compared without regard to case. ``htr`` and ``str`` are accepted for
``handwriting`` and ``scene`` (the names ``ocrkit synth --domain`` writes), and the
other way round for a router trained on domains named ``htr``/``str``. Every domain
the router can choose needs exactly one specialist; anything else is refused in one
line listing the router's domains - a route with no reader would otherwise be found
only at the first image sent there.

Images are decoded once, in colour (the router reads RGB); a grey specialist reads
their luma (for an image stored grey that is exactly its pixels).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch

from ocrkit.checkpoint import load_checkpoint
from ocrkit.data.batch import InputSpec
from ocrkit.device import resolve_device
from ocrkit.errors import UsageError

ALIASES = {"htr": "handwriting", "str": "scene"}


def _canonical(name: str) -> str:
    name = name.strip().lower()
    return ALIASES.get(name, name)


def _known(domains: Sequence[str]) -> str:
    aliases = [f"{a} for {d}" for a, d in ALIASES.items()
               if any(_canonical(x) == d for x in domains)]
    return ", ".join(domains) + (f" (also {', '.join(aliases)})" if aliases else "")


def router_accuracy(confusion: np.ndarray, domains: list[str]) -> dict:
    """Accuracy, balanced accuracy, per-domain accuracy and the confusion counts
    (``confusion[true][routed]``) of a router."""
    total = int(confusion.sum())
    per = {d: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
           for i, d in enumerate(domains)}
    scored = [v for v in per.values() if v is not None]
    return {"samples": total,
            "accuracy": float(np.trace(confusion) / total) if total else 0.0,
            "balanced_accuracy": float(np.mean(scored)) if scored else 0.0,
            "per_domain": per,
            "confusion": {d: {e: int(confusion[i, j]) for j, e in enumerate(domains)}
                          for i, d in enumerate(domains)}}


def match_specialists(values: Sequence[str], domains: Sequence[str], router: str
                      ) -> dict[str, str]:
    """``{router domain: checkpoint}`` from ``--model NAME=CKPT`` values (see the
    module docstring for the names); one-line UsageError for anything else."""
    by_name = {_canonical(d): d for d in domains}
    chosen: dict[str, tuple[str, str]] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path:
            raise UsageError(f"--model {value}: with --router, give each specialist as "
                             f"NAME=CKPT; the router {router} knows {_known(domains)}")
        domain = by_name.get(_canonical(name))
        if domain is None:
            raise UsageError(f"--model {value}: {name!r} is no domain of the router {router}, "
                             f"which knows {_known(domains)}")
        if domain in chosen:
            raise UsageError(f"--model {chosen[domain][0]} and --model {value} both name the "
                             f"router's domain {domain!r}; give one specialist per domain")
        chosen[domain] = (value, path)
    missing = [d for d in domains if d not in chosen]
    if missing:
        raise UsageError(f"the router {router} routes to {', '.join(domains)}; no --model for "
                         f"{', '.join(missing)} (give --model {missing[0]}=CKPT)")
    return {d: chosen[d][1] for d in domains}


class RouterPredictor:
    """A router checkpoint ready to classify images (PIL or a prepared batch)."""

    def __init__(self, checkpoint: str, device: str = "auto") -> None:
        from ocrkit.models.router import build_router

        self.path = checkpoint
        self.ckpt = load_checkpoint(checkpoint)
        self.model = build_router(self.ckpt, checkpoint)
        self.domains: list[str] = list(self.model.domains)
        self.input = InputSpec(**self.ckpt["input"])
        self.resize = self.input.transform("fixed")
        self.device = resolve_device(device)
        self.model.to(self.device)

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax over the domains, ``[B, N]`` on the CPU, for prepared images."""
        return torch.softmax(self.model(images.to(self.device)).float(), 1).cpu()

    def route(self, images: torch.Tensor) -> tuple[list[str], list[float]]:
        """The chosen domain and its probability per prepared image."""
        probs = self.probabilities(images)
        best, index = probs.max(1)
        return [self.domains[i] for i in index.tolist()], best.tolist()

    def tensor(self, images) -> torch.Tensor:
        return self.input.to_tensor([self.resize(im)[0] for im in images])


class RoutedReading(NamedTuple):
    text: str
    confidence: float
    rows: list[str]
    route: str
    probability: float


class RoutedPredictor:
    """A router and one :class:`ocrkit.predict.Predictor` per domain it routes to."""

    mode = "RGB"  # images are decoded once, in colour, for the router

    def __init__(self, router: str, models: Sequence[str], device: str = "auto",
                 beam_width: int | None = None, warn=None, fixed_width: bool = False) -> None:
        from ocrkit.predict import Predictor

        self.router = RouterPredictor(router, device)
        self.paths = match_specialists(models, self.router.domains, router)
        self.specialists = {d: Predictor(p, device, beam_width, None, warn=warn,
                                         fixed_width=fixed_width)
                            for d, p in self.paths.items()}

    def __call__(self, images, batch_size: int = 32) -> list[RoutedReading]:
        """Route each image, then let the chosen specialist read it (in input order)."""
        if not images:
            return []
        routes, probs = [], []
        for start in range(0, len(images), batch_size):
            r, p = self.router.route(self.router.tensor(images[start:start + batch_size]))
            routes += r
            probs += p
        out: list = [None] * len(images)
        for domain, reader in self.specialists.items():
            mine = [i for i, r in enumerate(routes) if r == domain]
            for i, (text, conf, rows) in zip(mine, reader([images[i] for i in mine],
                                                          batch_size)):
                out[i] = RoutedReading(text, conf, rows, domain, probs[i])
        return out
