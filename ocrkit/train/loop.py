"""The training loop every ocrkit method uses (supervised CTC now; distillation,
SeqCLR and EMU plug in as methods with ``loss`` and ``validate``).

Features: optimizers and schedules (the paper's and faster ones), AMP on CUDA,
DistributedDataParallel under ``torchrun`` (gloo on CPU, NCCL on GPU),
full-state ``last.pt`` written atomically, ``best.pt`` by a validation metric,
``--resume`` that replays the exact data order, ``metrics.jsonl``, a rich
progress bar on stderr and a training-curve PNG.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from ocrkit.checkpoint import load_checkpoint, save_checkpoint
from ocrkit.errors import Interrupted, OcrkitError, UsageError
from ocrkit.train.data import StepSampler

OPTIMIZERS = ("adam", "amsgrad", "adamw", "sgd")
SCHEDULES = ("onecycle", "cosine", "paper", "constant")


@dataclass
class TrainConfig:
    out: str
    max_steps: int | None = None
    epochs: float | None = None
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-6
    schedule: str = "onecycle"
    warmup: float = 0.1  # fraction of steps (onecycle, cosine)
    decay_epochs: float = 60.0  # paper schedule: halve the lr every this many epochs
    grad_clip: float = 5.0
    device: str = "auto"
    amp: bool | None = None  # None: on for CUDA
    workers: int = 2
    seed: int = 0
    val_every: int = 200
    save_every: int = 200
    log_every: int = 10
    val_limit: int | None = None
    resume: bool = False
    quiet: bool = False
    extra: dict = field(default_factory=dict)  # recorded in checkpoints as-is

    @classmethod
    def from_options(cls, opts: dict, warn: Callable[[str], None] | None = None
                     ) -> "TrainConfig":
        """From a command's option dict (the names of ``ocrkit.cli.train.loop_options``),
        checked (:meth:`validate`); ``--workers`` is capped at the CPU cores."""
        from ocrkit.console import default_workers, resolve_workers

        names = {f for f in cls.__dataclass_fields__ if f not in ("extra", "workers")}
        cfg = cls(**{k: opts[k] for k in names if k in opts})
        cfg.workers = resolve_workers(opts.get("workers"), default_workers() - 1, warn)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """One-line usage errors for values no run can use (checked before any work)."""
        def bad(flag: str, value, why: str):
            raise UsageError(f"{flag} {value}: {why}")

        if (self.max_steps is None) == (self.epochs is None):
            raise UsageError("give exactly one of --max-steps and --epochs")
        if self.max_steps is not None and self.max_steps < 1:
            bad("--max-steps", self.max_steps, "must be at least 1")
        if self.epochs is not None and not (math.isfinite(self.epochs) and self.epochs > 0):
            bad("--epochs", self.epochs, "must be a positive number")
        if not (math.isfinite(self.lr) and self.lr > 0):
            bad("--lr", self.lr, "must be a positive number")
        for flag, value in (("--weight-decay", self.weight_decay), ("--grad-clip", self.grad_clip)):
            if not (math.isfinite(value) and value >= 0):
                bad(flag, value, "must be a number >= 0")
        if not (math.isfinite(self.warmup) and 0 <= self.warmup <= 0.9):
            bad("--warmup", self.warmup, "must lie in [0, 0.9]")
        if not (math.isfinite(self.decay_epochs) and self.decay_epochs > 0):
            bad("--decay-epochs", self.decay_epochs, "must be a positive number")
        for flag, value in (("--batch-size", self.batch_size), ("--val-every", self.val_every),
                            ("--save-every", self.save_every), ("--log-every", self.log_every)):
            if value < 1:
                bad(flag, value, "must be at least 1")
        if self.val_limit is not None and self.val_limit < 1:
            bad("--val-limit", self.val_limit, "must be at least 1")
        if self.workers < 0:
            bad("--workers", self.workers, "must be 0 or more")
        if self.optimizer not in OPTIMIZERS:
            bad("--optimizer", self.optimizer, f"one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            bad("--schedule", self.schedule, f"one of {', '.join(SCHEDULES)}")


# ----------------------------------------------------------------------------- setup
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


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
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
    raise UsageError(f"--optimizer {cfg.optimizer}: one of {', '.join(OPTIMIZERS)}")


def make_schedule(cfg: TrainConfig, opt, total: int, steps_per_epoch: int):
    """A per-step LambdaLR: its state is plain data, so checkpoints stay safe."""
    warm = max(1, int(total * cfg.warmup))
    if cfg.schedule == "constant":
        def f(step):
            return 1.0
    elif cfg.schedule == "paper":  # lr halved every `decay_epochs` epochs (Appendix A.1)
        period = max(1, int(cfg.decay_epochs * steps_per_epoch))

        def f(step):
            return 0.5 ** (step // period)
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


def _rng_state() -> dict:
    # Plain tensors and lists only: a weights_only load must accept them.
    return {"torch": torch.get_rng_state(),
            "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
            "python": list(random.getstate()[1])}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), 624, 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))


# ----------------------------------------------------------------------------- stopping
class StopRequest:
    """Ctrl-C or SIGTERM during training: stop at the next step boundary and save.

    The first signal only sets :attr:`signum`; the loop finishes the step it is in,
    writes ``last.pt`` and ends with :class:`Interrupted`. A second signal
    interrupts at once. Forked data-loader workers that inherit the handler
    behave as without it.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict = {}

    def __enter__(self) -> "StopRequest":
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return self
        pid = os.getpid()

        def handler(signum, frame):
            from ocrkit.errors import Terminated

            if os.getpid() != pid or self.signum is not None:
                if signum == signal.SIGTERM:
                    if os.getpid() != pid:
                        signal.signal(signal.SIGTERM, signal.SIG_DFL)
                        os.kill(os.getpid(), signal.SIGTERM)
                        return
                    raise Terminated()
                raise KeyboardInterrupt()
            self.signum = signum

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    @property
    def requested(self) -> bool:
        return self.signum is not None


# ----------------------------------------------------------------------------- resume
# Checkpoint entries that describe the model and its input: a resumed run must match them.
_IDENTITY = ("kind", "spec", "input", "denoiser")


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "source"}
    return value


def _difference(old, new, path: str = "") -> tuple[str, object, object] | None:
    """First (dotted path, old, new) where two plain structures differ, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            found = _difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    return None if old == new else (path, old, new)


def _as_flag(path: str) -> str:
    """``spec.backbone.args.channels`` -> ``--backbone-arg channels``; ``input.height``
    -> ``--height``; other paths as they are."""
    parts = path.split(".")
    if parts[0] == "spec" and len(parts) >= 3 and parts[2] == "args":
        return f"--{parts[1]}-arg {'.'.join(parts[3:])}"
    if parts[0] == "spec" and len(parts) == 3 and parts[2] == "name":
        return f"--{parts[1]}"
    if parts[0] == "input" and len(parts) == 2:
        return {"policy": "--resize"}.get(parts[1], f"--{parts[1]}")
    return path


def check_resumable(path: str, ckpt: dict, extra: dict) -> None:
    """Refuse (one line) to resume a checkpoint of another kind, model or input."""
    kind_old, kind_new = ckpt.get("kind", "recognizer"), extra.get("kind", "recognizer")
    if kind_old != kind_new:
        raise UsageError(f"--resume: {path} is a {kind_old} checkpoint, not a {kind_new} run; "
                         "choose another -o")
    if "train_state" not in ckpt:
        raise UsageError(f"{path}: not a resumable checkpoint (no optimizer state)")
    for key in _IDENTITY[1:]:
        if key not in ckpt and key not in extra:
            continue
        found = _difference(_plain(ckpt.get(key)), _plain(extra.get(key)), key)
        if found:
            where, old, new = found
            raise UsageError(
                f"--resume: {path} was trained with {_as_flag(where)} = {old!r}, this command "
                f"gives {new!r}; resume with the run's own options, or start a new run "
                "(another -o, or --overwrite)")


def json_number(value: float) -> float | None:
    """A float for JSON output: None instead of inf/nan (which JSON cannot hold)."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


# ----------------------------------------------------------------------------- loop
class Trainer:
    """Runs ``method`` on ``model`` over ``train_set``; validates on ``val_set``.

    Args:
        model: the network (not yet on a device).
        method: object with ``metric`` (name, higher is better), ``loss(model,
            batch, device) -> (loss, images)`` and ``validate(model, loader,
            device) -> dict``.
        train_set / val_set: map-style datasets.
        collate: batch builder (runs in loader workers).
        checkpoint_extra: plain data stored in every checkpoint (spec, charset,
            input spec ...); on ``--resume`` its kind, spec, input and denoiser
            must equal the checkpoint's.
        val_collate: batch builder for validation (default: ``collate``).
    """

    def __init__(self, model: nn.Module, method, train_set, val_set, collate: Callable,
                 cfg: TrainConfig, checkpoint_extra: dict,
                 console_print: Callable[[str], None] | None = None,
                 val_collate: Callable | None = None) -> None:
        self.model, self.method = model, method
        self.train_set, self.val_set, self.collate = train_set, val_set, collate
        self.val_collate = val_collate or collate
        self.cfg, self.extra = cfg, checkpoint_extra
        self.say = console_print or (lambda msg: None)
        cfg.validate()

    def _loader(self, sampler: StepSampler):
        return torch.utils.data.DataLoader(
            self.train_set, batch_size=self.cfg.batch_size, sampler=sampler,
            num_workers=self.cfg.workers, collate_fn=self.collate,
            persistent_workers=False, pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.cfg.workers > 0 else None)

    def val_loader(self):
        return torch.utils.data.DataLoader(
            self.val_set, batch_size=self.cfg.batch_size, shuffle=False,
            num_workers=self.cfg.workers, collate_fn=self.val_collate)

    def _batches(self, sampler: StepSampler, step: int, total: int, stop: StopRequest):
        """Training batches from ``step`` on, epoch after epoch, until ``total`` (a loader
        whose workers died of the Ctrl-C that asked the loop to stop ends quietly)."""
        per_epoch = sampler.batches_per_epoch
        while step < total:
            sampler.set_position(step // per_epoch, step % per_epoch)
            it = iter(self._loader(sampler))
            while True:
                try:
                    batch = next(it)
                except StopIteration:
                    break
                except Exception:
                    if stop.requested:
                        return
                    raise
                yield batch
                if batch["images"].shape[0]:
                    step += 1
                if step >= total:
                    return

    def fit(self) -> dict:
        cfg = self.cfg
        self.device = resolve_device(cfg.device)
        dist = Distributed(self.device)
        torch.manual_seed(cfg.seed + dist.rank)
        random.seed(cfg.seed + dist.rank)
        np.random.seed((cfg.seed + dist.rank) % 2**32)
        os.makedirs(cfg.out, exist_ok=True)
        model = self.model.to(self.device)
        sampler = StepSampler(len(self.train_set), cfg.batch_size, seed=cfg.seed,
                              rank=dist.rank, world=dist.world)
        per_epoch = sampler.batches_per_epoch
        total = cfg.max_steps if cfg.max_steps is not None else max(1, int(cfg.epochs * per_epoch))
        opt = make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
        sched = make_schedule(cfg, opt, total, per_epoch)
        amp = cfg.amp if cfg.amp is not None else self.device.type == "cuda"
        amp_dtype = (torch.bfloat16 if self.device.type == "cuda" and torch.cuda.is_bf16_supported()
                     else torch.float16)
        scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16
                                      and self.device.type == "cuda")
        step, best, best_step = 0, -math.inf, 0
        last_path = os.path.join(cfg.out, "last.pt")
        if cfg.resume and os.path.isfile(last_path):
            ckpt = load_checkpoint(last_path)
            check_resumable(last_path, ckpt, self.extra)
            model.load_state_dict(ckpt["state_dict"])
            ts = ckpt["train_state"]
            opt.load_state_dict(ts["optimizer"])
            sched.load_state_dict(ts["scheduler"])
            scaler.load_state_dict(ts["scaler"])
            _set_rng_state(ts["rng"])
            step, best, best_step = ts["step"], ts["best"], ts["best_step"]
            if dist.main:
                self.say(f"resumed from {last_path} at step {step}")
        elif cfg.resume and dist.main:
            self.say(f"--resume: no {last_path} yet, starting from scratch")
        if dist.enabled:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        core = model.module if dist.enabled else model

        log = open(os.path.join(cfg.out, "metrics.jsonl"), "a", encoding="utf-8") if dist.main else None
        if dist.main:
            with open(os.path.join(cfg.out, "config.json"), "w", encoding="utf-8") as fh:
                json.dump({"train": asdict(cfg), **{k: v for k, v in self.extra.items()
                                                     if k in ("spec", "input")}},
                          fh, ensure_ascii=False, indent=1, default=str)

        def save(path: str, with_state: bool) -> None:
            payload = {**self.extra, "state_dict": core.state_dict(),
                       "meta": {"step": step, "epoch": step / per_epoch, "best_metric": best,
                                "best_step": best_step, "metric": self.method.metric,
                                "seed": cfg.seed, "world_size": dist.world}}
            if with_state:
                payload["train_state"] = {
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict(), "rng": _rng_state(), "step": step,
                    "best": best, "best_step": best_step}
            save_checkpoint(path, payload)

        from ocrkit.console import progress_bar

        history: list[dict] = []
        result: dict = {}
        broken = 0
        stopped = False
        with progress_bar("train", cfg.quiet or not dist.main, unit="img") as (start, advance), \
                StopRequest() as stop:
            start(total)
            advance(step)
            t_last, seen, data_time, step_time = time.perf_counter(), 0, 0.0, 0.0
            model.train()
            t_wait = time.perf_counter()
            for batch in self._batches(sampler, step, total, stop):
                t_got = time.perf_counter()
                data_time += t_got - t_wait
                broken += batch["broken"]
                if batch["images"].shape[0] == 0:
                    t_wait = time.perf_counter()
                    continue
                with torch.autocast(self.device.type, dtype=amp_dtype, enabled=amp):
                    loss, n = self.method.loss(model, batch, self.device)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                sched.step()
                step += 1
                seen += n
                step_time += time.perf_counter() - t_got
                advance(1)
                if not math.isfinite(loss.item()):
                    raise OcrkitError(f"loss became {loss.item()} at step {step}; "
                                      "lower --lr or check the data")
                if dist.main and (step % cfg.log_every == 0 or step == total):
                    now = time.perf_counter()
                    rec = {"step": step, "epoch": round(step / per_epoch, 4),
                           "loss": round(loss.item(), 5), "lr": sched.get_last_lr()[0],
                           "img_s": round(seen * dist.world / max(now - t_last, 1e-9), 1),
                           "data_share": round(data_time / max(data_time + step_time, 1e-9), 3)}
                    if broken:
                        rec["broken_samples"] = broken
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    history.append(rec)
                    t_last, seen, data_time, step_time = now, 0, 0.0, 0.0
                if step % cfg.val_every == 0 or step == total:
                    if dist.main and self.val_set is not None:
                        model.eval()
                        result = self.method.validate(core, self.val_loader(), self.device,
                                                      limit=cfg.val_limit)
                        model.train()
                        value = result[self.method.metric]
                        rec = {"step": step, "val": result}
                        log.write(json.dumps(rec) + "\n")
                        log.flush()
                        history.append(rec)
                        if value > best:
                            best, best_step = value, step
                            save(os.path.join(cfg.out, "best.pt"), with_state=False)
                    dist.barrier()
                if dist.main and (step % cfg.save_every == 0 or step == total):
                    save(last_path, with_state=True)
                if dist.any(stop.requested):
                    stopped = True
                    break
                t_wait = time.perf_counter()
            stopped = stopped or (stop.requested and step < total)
            interrupted = stop.signum
        if stopped and step < total:
            if dist.main:
                save(last_path, with_state=True)
                log.close()
            dist.close()
            import signal

            raise Interrupted(
                f"{'terminated' if interrupted == signal.SIGTERM else 'interrupted'} at step "
                f"{step}: saved {last_path}; continue with the same command and --resume",
                exit_code=143 if interrupted == signal.SIGTERM else 130)
        if dist.main:
            if self.val_set is None:
                save(os.path.join(cfg.out, "best.pt"), with_state=False)
            log.close()
            try:
                from ocrkit.train.plot import plot_curves

                plot_curves(os.path.join(cfg.out, "metrics.jsonl"),
                            os.path.join(cfg.out, "curve.png"), self.method.metric)
            except Exception as exc:  # noqa: BLE001 - a plot must never fail a finished run
                self.say(f"warning: could not draw the training curve ({exc})")
        dist.barrier()
        dist.close()
        return {"steps": step, "best_metric": json_number(best), "best_step": best_step,
                "last_val": result, "broken_samples": broken}
