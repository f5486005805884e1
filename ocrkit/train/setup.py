"""What every run needs before its first step: the process group under
``torchrun``, the optimizer and learning-rate schedule, and RNG state that
checkpoints can carry as plain data."""

from __future__ import annotations

import math
import os
import random

import numpy as np
import torch

from ocrkit.errors import UsageError

OPTIMIZERS = ("adam", "amsgrad", "adamw", "sgd", "adadelta")
SCHEDULES = ("onecycle", "cosine", "paper", "constant", "steps")

# --schedule steps: the lr is multiplied by 0.1 at each of these fractions of the run
# (SeqCLR's pre-training, Appendix D: "reduced by a factor of 10 after 60% and 80%").
STEP_FRACTIONS = (0.6, 0.8)


class Distributed:
    """Rank/world from torchrun's environment; a no-op for single-process runs."""

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.enabled = self.world > 1
        if self.enabled and not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)
            torch.distributed.init_process_group(backend=backend)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any (one tiny all-reduce)."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)], device="cuda" if torch.distributed.get_backend() == "nccl"
                         else "cpu")
        torch.distributed.all_reduce(t)
        return bool(t.item())

    def close(self) -> None:
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def make_optimizer(cfg, params) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over ``params`` (tensors, or param-group dicts)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "amsgrad":  # paper: Adam, AMSGrad mode, betas (0.9, 0.99)
        return torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.99), amsgrad=True,
                                weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":  # paper: SGD, Nesterov, momentum 0.9
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adadelta":
        # SeqCLR (Appendix D): AdaDelta, decay rate rho 0.95, lr 10; eps 1e-8 as in the
        # deep-text-recognition-benchmark code the paper's recognizer comes from
        return torch.optim.Adadelta(params, lr=cfg.lr, rho=0.95, eps=1e-8,
                                    weight_decay=cfg.weight_decay)
    raise UsageError(f"--optimizer {cfg.optimizer}: one of {', '.join(OPTIMIZERS)}")


def make_schedule(cfg, opt, total: int, steps_per_epoch: int):
    """A per-step LambdaLR: its state is plain data, so checkpoints stay safe."""
    warm = max(1, int(total * cfg.warmup))
    if cfg.schedule == "constant":
        def f(step):
            return 1.0
    elif cfg.schedule == "paper":  # lr halved every `decay_epochs` epochs (Appendix A.1)
        period = max(1, int(cfg.decay_epochs * steps_per_epoch))

        def f(step):
            return 0.5 ** (step // period)
    elif cfg.schedule == "steps":  # x0.1 at 60 % and 80 % of the steps (SeqCLR)
        marks = [int(total * frac) for frac in STEP_FRACTIONS]

        def f(step):
            return 0.1 ** sum(step >= m for m in marks)
    elif cfg.schedule == "cosine":
        def f(step):
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
    elif cfg.schedule == "onecycle":  # linear warm-up from lr/25, cosine down to lr/1e4
        def f(step):
            if step < warm:
                return 0.04 + 0.96 * step / warm
            p = min(1.0, (step - warm) / max(1, total - warm))
            return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * p))
    else:
        raise UsageError(f"--schedule {cfg.schedule}: one of {', '.join(SCHEDULES)}")
    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def rng_state() -> dict:
    # Plain tensors and lists only: a weights_only load must accept them.
    return {"torch": torch.get_rng_state(),
            "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
            "python": list(random.getstate()[1])}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), 624, 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))
