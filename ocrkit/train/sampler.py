"""The training loop's sample order: deterministic, resumable and sharded by rank.

:class:`StepSampler` shuffles the whole training set; :class:`DomainBalancedSampler`
(``--balance-domains``) draws the samples' domains (``Sample.domain``: scene,
handwriting ...) equally often, whatever their share of the data, or in the ratios
``--domain-weight NAME=N`` gives. Either can group
images of similar width into batches (:meth:`StepSampler.bucket_by`, ``--bucket-widths``).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import torch

from ocrkit.errors import UsageError


class StepSampler(torch.utils.data.Sampler):
    """Deterministic, resumable, rank-sharded order of sample indices.

    Epoch ``e`` is a permutation drawn from ``seed + e``; rank ``r`` of ``world``
    takes every ``world``-th index. ``start`` skips the first batches of the
    first epoch yielded, so a resumed run sees exactly the data it would have.
    """

    def __init__(self, size: int, batch_size: int, *, seed: int = 0, rank: int = 0,
                 world: int = 1, shuffle: bool = True) -> None:
        self.size, self.batch_size = size, batch_size
        self.seed, self.rank, self.world, self.shuffle = seed, rank, world, shuffle
        self.epoch, self.start_batch = 0, 0
        self.aspects: list[float] | None = None
        self.bucket_batches = 0

    @property
    def batches_per_epoch(self) -> int:
        return max(1, (self.size // self.world) // self.batch_size)

    def set_position(self, epoch: int, batch: int) -> None:
        self.epoch, self.start_batch = epoch, batch

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size

    def bucket_by(self, aspects: Sequence[float], batches: int) -> None:
        """Batches of images of similar width: each run of ``batches`` batches of the
        epoch's order is sorted by ``aspects`` (each sample's width / height), cut into
        batches again and those batches shuffled. The epoch keeps its samples, a
        resumed run its order; a batch padded to its widest image pads less (a
        variable-width set trains in fewer pixels per step)."""
        if len(aspects) != self.size:
            raise ValueError(f"{len(aspects)} aspect ratios for {self.size} samples")
        if batches < 1:
            raise ValueError(f"bucket of {batches} batches")
        self.aspects, self.bucket_batches = [float(a) for a in aspects], batches

    def epoch_order(self) -> list[int]:
        """This rank's whole epoch (``batches_per_epoch`` batches), before any resume."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g)
        else:
            order = torch.arange(self.size)
        return order[self.rank::self.world][: self.batches_per_epoch * self.batch_size].tolist()

    def _bucketed(self, order: list[int]) -> list[int]:
        size, chunk = self.batch_size, self.bucket_batches * self.batch_size
        # its own stream: the epoch's order above stays what it is without bucketing
        g = torch.Generator().manual_seed((self.seed + self.epoch) * 7919 + 104729)
        aspects, out = self.aspects, []
        for start in range(0, len(order), chunk):
            part = sorted(order[start:start + chunk], key=lambda i: (aspects[i], i))
            batches = [part[k:k + size] for k in range(0, len(part), size)]
            for b in torch.randperm(len(batches), generator=g).tolist():
                out.extend(batches[b])
        return out

    def __iter__(self):
        order = self.epoch_order()
        if self.aspects is not None:
            order = self._bucketed(order)
        return iter(order[self.start_batch * self.batch_size:])


class DomainBalancedSampler(StepSampler):
    """:class:`StepSampler`'s contract (an epoch is ``size`` samples, resumable,
    rank-sharded) with every domain drawn equally often.

    Position ``j`` of a rank's epoch takes domain ``j mod D`` (the ``D`` domains in a
    fixed order, so each batch of ``B`` holds ``B/D`` of each, within one when ``D``
    does not divide ``B``); within a domain the samples come from a stream of
    permutations drawn from ``seed + epoch``, reshuffled whenever the domain runs out:
    a small domain repeats within an epoch (each of its samples as often as the
    others before any repeats twice), a large one is not seen whole in one. The ranks
    of a run take turns on each stream, so no two ranks draw the same sample in a
    pass over a domain. Samples that record no domain (None) form a domain of their
    own.

    Args:
        domains: each training sample's domain, in dataset order.
    """

    def __init__(self, domains: Sequence[str | None], batch_size: int, *, seed: int = 0,
                 rank: int = 0, world: int = 1, weights: dict[str, int] | None = None) -> None:
        super().__init__(len(domains), batch_size, seed=seed, rank=rank, world=world)
        groups: dict = {}
        for i, d in enumerate(domains):
            groups.setdefault(d, []).append(i)
        # a fixed order (None last), so every rank and every resume sees the same one
        self.names = sorted(groups, key=lambda d: (d is None, d or ""))
        self.groups = [torch.tensor(groups[d], dtype=torch.long) for d in self.names]
        weights = dict(weights or {})
        unknown = sorted(set(weights) - {d for d in self.names if d is not None})
        if unknown:
            raise UsageError(f"--domain-weight {unknown[0]}: no training sample has that domain "
                             f"(the training data holds: {describe_domains(self.counts())})")
        self.weights = [int(weights.get(d, 1)) if d is not None else 1 for d in self.names]
        self.pattern = weighted_cycle(self.weights)

    def counts(self) -> dict:
        """Samples per domain (None: no domain recorded)."""
        return {d: int(g.numel()) for d, g in zip(self.names, self.groups)}

    def epoch_order(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        streams = [_Stream(group, g) for group in self.groups]
        per_rank = self.batches_per_epoch * self.batch_size
        mine = []
        for j in range(per_rank):  # every rank draws its turn, so streams stay in step
            stream = streams[self.pattern[j % len(self.pattern)]]
            for r in range(self.world):
                index = stream.next()
                if r == self.rank:
                    mine.append(index)
        return mine


def weighted_cycle(weights: Sequence[int]) -> list[int]:
    """One cycle of stream indices in which index ``i`` comes ``weights[i]`` times,
    spread as evenly as they go (smooth weighted round-robin; ties to the lower
    index): ``[1, 1]`` -> ``[0, 1]``, ``[2, 1]`` -> ``[0, 1, 0]``."""
    if not weights or min(weights) < 1:
        raise ValueError(f"weights must be positive integers, not {list(weights)}")
    total, current, out = sum(weights), [0] * len(weights), []
    for _ in range(total):
        current = [c + w for c, w in zip(current, weights)]
        k = max(range(len(weights)), key=lambda i: (current[i], -i))
        current[k] -= total
        out.append(k)
    return out


def parse_domain_weights(values: Sequence[str]) -> dict[str, int]:
    """``--domain-weight NAME=N`` (repeatable) -> ``{NAME: N}``; one-line usage errors."""
    out: dict[str, int] = {}
    for value in values:
        name, sep, weight = str(value).partition("=")
        name = name.strip()
        if not sep or not name or not weight.strip().isdigit() or int(weight) < 1:
            raise UsageError(f"--domain-weight {value}: give NAME=N, N a whole number >= 1 "
                             "(e.g. --domain-weight handwriting=2)")
        if name in out:
            raise UsageError(f"--domain-weight {name} given twice")
        out[name] = int(weight)
    return out


class _Stream:
    """Endless draws from ``indices``: one permutation after another."""

    def __init__(self, indices: torch.Tensor, generator: torch.Generator) -> None:
        self.indices, self.generator = indices, generator
        self.order, self.pos = None, 0

    def next(self) -> int:
        if self.order is None or self.pos == len(self.order):
            perm = torch.randperm(len(self.indices), generator=self.generator)
            self.order, self.pos = self.indices[perm].tolist(), 0
        self.pos += 1
        return self.order[self.pos - 1]


def dataset_domains(dataset) -> list[str | None]:
    """Each sample's domain: ``domains()`` of the dataset, or of the one it wraps
    (``dataset``, as augmentation does; taken at ``indices`` for a subset); a usage
    error when none says."""
    return per_sample(dataset, "domains",
                      "--balance-domains: the training data cannot tell each sample's domain "
                      "(labels.jsonl \"domain\" or LMDB domain-%09d keys)")


def dataset_aspects(dataset) -> list[float]:
    """Each sample's width / height (0 for an image that cannot be read), from the
    image headers: ``aspects()`` of the dataset, or of the one it wraps."""
    return per_sample(dataset, "aspects",
                      "--bucket-widths: the training data cannot tell its images' sizes")


def per_sample(dataset, method: str, missing: str) -> list:
    """``dataset.<method>()`` (one value per sample), or that of the dataset it wraps
    (``dataset``, as augmentation does; taken at ``indices`` for a subset); a usage
    error saying ``missing`` when none has it."""
    own = getattr(dataset, method, None)
    if own is not None:
        values = list(own())
    else:
        inner = getattr(dataset, "dataset", None)
        if inner is None:
            raise UsageError(missing)
        values = per_sample(inner, method, missing)
        indices = getattr(dataset, "indices", None)
        if indices is not None:
            values = [values[int(i)] for i in indices]
    if len(values) != len(dataset):
        raise ValueError(f"{len(values)} {method} for a dataset of {len(dataset)} samples")
    return values


def describe_domains(counts: dict) -> str:
    """``handwriting 300, scene 600, none recorded 4`` for a say() line."""
    return ", ".join(f"{d if d is not None else 'none recorded'} {n}" for d, n in
                     counts.items())


def domain_counts(domains: Sequence[str | None]) -> dict:
    """Samples per domain, domains in :class:`DomainBalancedSampler`'s order."""
    counts = Counter(domains)
    return {d: counts[d] for d in sorted(counts, key=lambda d: (d is None, d or ""))}
