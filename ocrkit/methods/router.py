"""Train the HTR/STR router (:mod:`ocrkit.models.router`) in the shared loop.

The label of an image is its dataset's record of its domain (``labels.jsonl``
``"domain"``, an LMDB's ``domain-%09d`` keys: what ``ocrkit synth --domain`` and
``build-lmdb`` write), so the training data must be mixed (at least two domains) and
every sample must say its domain; both are checked before the first step, one line
each. The domains are the training data's, sorted by name: that order is the router's
output order, stored in the checkpoint.

Loss: cross-entropy over the domains (the supplement trains a plain binary classifier,
kept apart from the recognizers: its selection is not differentiable). Validation:
``accuracy`` (picks best.pt), ``balanced_accuracy`` (the mean of the per-domain
accuracies: an unbalanced validation set cannot hide a domain the router never picks)
and ``per_domain`` accuracies. Checkpoints are ``"kind": "router"`` in the one-file
format, with ``router`` (domains, hidden size) and ``input`` (84 x 84 RGB, stretched).
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import torch
from torch.nn import functional as F

from ocrkit.data.batch import InputSpec
from ocrkit.errors import UsageError
from ocrkit.models.router import SIZE
from ocrkit.routing import router_accuracy
from ocrkit.train.method import Loss, Method

IGNORE = -100  # cross_entropy's ignore_index: a sample whose domain the router lacks


def router_input(size: int = SIZE) -> InputSpec:
    """How images become the router's input: stretched to size x size, RGB."""
    return InputSpec(height=size, width=size, policy="stretch", channels=3)


class DomainCollate:
    """Samples -> {"images" ``[B, 3, 84, 84]``, "targets" (domain index, ``IGNORE``
    for a domain outside ``domains``), "domains", "keys", "broken", "broken_items"}."""

    def __init__(self, spec: InputSpec, domains: list[str]) -> None:
        self.spec, self.resize = spec, spec.transform("fixed")
        self.index = {d: i for i, d in enumerate(domains)}

    def __call__(self, samples) -> dict:
        arrays, targets, domains, keys, dropped = [], [], [], [], []
        for s in samples:
            if s.image is None:
                dropped.append((s.key, s.error or "unreadable"))
                continue
            arrays.append(self.resize(s.image)[0])
            targets.append(self.index.get(s.domain, IGNORE))
            domains.append(s.domain)
            keys.append(s.key)
        images = (self.spec.to_tensor(arrays) if arrays
                  else torch.empty(0, self.spec.channels, self.spec.height, self.spec.width))
        return {"images": images, "targets": torch.tensor(targets, dtype=torch.long),
                "domains": domains, "keys": keys, "broken": len(dropped),
                "broken_items": dropped}


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


class RouterMethod(Method):
    """Cross-entropy over the domains; validated by accuracy."""

    metric = "accuracy"

    def __init__(self, domains: list[str]) -> None:
        self.domains = list(domains)

    def loss(self, net, batch: dict, device: torch.device) -> Loss:
        images = batch["images"].to(device, non_blocking=True)
        targets = batch["targets"].to(device, non_blocking=True)
        ce = F.cross_entropy(net(images).float(), targets, ignore_index=IGNORE)
        return Loss(ce, {"ce": ce.detach()}, images.shape[0])

    @torch.no_grad()
    def validate(self, core, loader, device: torch.device, limit: int | None = None) -> dict:
        model = _unwrap(core)
        n = len(self.domains)
        confusion = np.zeros((n, n), dtype=np.int64)  # [true, routed]
        seen = 0
        for batch in loader:
            images, targets = batch["images"], batch["targets"]
            if limit is not None:
                images, targets = images[:limit - seen], targets[:limit - seen]
            if images.shape[0] == 0:
                continue
            routed = model(images.to(device)).argmax(1).cpu()
            for t, r in zip(targets.tolist(), routed.tolist()):
                if t != IGNORE:
                    confusion[t, r] += 1
            seen += images.shape[0]
            if limit is not None and seen >= limit:
                break
        return router_accuracy(confusion, self.domains)


def _describe(counts: Counter) -> str:
    return ", ".join(f"{d}: {n}" for d, n in sorted(counts.items()))


def training_domains(train_set, val_set) -> list[str]:
    """The domains the training data records (sorted), checked: at least two, every
    training and validation sample has one, validation names no other."""
    recorded = train_set.domains()
    missing = sum(1 for d in recorded if d is None)
    if missing:
        raise UsageError(f"{missing} of {len(recorded)} training samples record no domain; "
                         "train-router learns each image's domain, as labels.jsonl "
                         "\"domain\" or LMDB domain-%09d keys record it (ocrkit synth "
                         "--domain and build-lmdb write them)")
    counts = Counter(recorded)
    if len(counts) < 2:
        raise UsageError(f"the training data records one domain ({_describe(counts)}); a "
                         "router needs at least two: give --train once per domain, or one "
                         "LMDB built from folders of both")
    domains = sorted(counts)
    if val_set is not None:
        val = val_set.domains()
        missing = sum(1 for d in val if d is None)
        if missing:
            raise UsageError(f"{missing} of {len(val)} validation samples record no domain; "
                             "the router's accuracy needs each one's")
        other = Counter(d for d in val if d not in counts)
        if other:
            raise UsageError(f"the validation data records domains the training data does "
                             f"not ({_describe(other)}); the router learns "
                             f"{', '.join(domains)}")
    return domains


def _check_resume(opts: dict, config: dict) -> None:
    """A resumed run must learn the same domains at the same size (one line if not)."""
    from ocrkit.checkpoint import load_checkpoint

    last = os.path.join(opts["out"], "last.pt")
    if not (opts.get("resume") and os.path.isfile(last)):
        return
    ckpt = load_checkpoint(last)
    if ckpt.get("kind") != "router":  # the loop refuses other kinds, naming them
        return
    old = ckpt.get("router", {})
    if old.get("domains") != config["domains"]:
        raise UsageError(f"--resume: {last} routes to {', '.join(old.get('domains', []))}; "
                         f"this training data holds {', '.join(config['domains'])}; resume "
                         "with the run's own data, or start a new run (another -o)")
    if old.get("hidden") != config["hidden"]:
        raise UsageError(f"--resume: {last} was trained with --hidden {old.get('hidden')}, "
                         f"this command gives --hidden {config['hidden']}; resume with the "
                         "run's own options")


def run_router_training(opts: dict) -> dict | None:
    """Datasets, router and loop from `ocrkit train-router`'s options."""
    from ocrkit.data import open_dataset
    from ocrkit.models.router import Router, router_cost
    from ocrkit.outputs import main_process
    from ocrkit.train.run import RunSetup

    train_paths, val_paths = list(opts["train_paths"]), list(opts.get("val_paths") or ())
    setup = RunSetup(opts, "train-router", [*train_paths, *val_paths])
    say = setup.say
    with setup.claim():
        train_set = open_dataset(train_paths, mode="RGB")
        val_set = open_dataset(val_paths, mode="RGB") if val_paths else None
        for name, data in (("training", train_set), ("validation", val_set)):
            for line in (data.issues.warnings() if data is not None else []):
                say(f"warning: {name} data: {line}")
        domains = training_domains(train_set, val_set)
        torch.manual_seed(opts["seed"])
        model = Router(domains, hidden=opts["hidden"])
        _check_resume(opts, model.config())
        spec = router_input()
        cost = router_cost(model, spec.height)
        extra = {"kind": "router", "router": model.config(), "input": {**spec.__dict__},
                 "train_data": [os.path.abspath(p) for p in train_paths]}
        counts = Counter(train_set.domains())
        say(f"router over {_describe(counts)}: {cost['parameters'] / 1e6:.3f} M parameters, "
            f"{cost['macs'] / 1e9:.4f} G multiply-adds at {spec.height}x{spec.width}x3")
        collate = DomainCollate(spec, domains)
        summary = setup.trainer(model, RouterMethod(domains), train_set, val_set, collate,
                                extra).fit()
    if not main_process():
        return None
    return {"out": opts["out"], "domains": domains, "parameters": cost["parameters"],
            "macs": cost["macs"], **summary}
