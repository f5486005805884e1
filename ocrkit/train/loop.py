"""The one training loop every ocrkit method runs in (:mod:`ocrkit.methods`: supervised
recognizers with EMU's loss, distillation, denoisers; SeqCLR next). The loop knows none
of them: a method is an object it asks (see :mod:`ocrkit.train.method`):

* ``loss(net, batch, device)`` -> :class:`ocrkit.train.method.Loss`: the total
  and its **named terms**, each logged in ``metrics.jsonl`` and drawn in
  ``curve.png``;
* ``validate(core, loader, device, limit)`` -> metrics; ``metric`` picks best.pt;
* optionally ``param_groups(core)`` (each group with its own lr scale and its
  **own gradient clipping**, so one part's large gradients never shrink
  another's), ``deployable(core)`` (what ``best.pt``/``last.pt`` hold as their
  model: a distilled student alone, a finalised EMU model ...; the whole trained
  network goes into ``last.pt``'s training state for ``--resume``),
  ``begin(total_steps, step)`` (before the first step, also when resuming) and
  ``after_step(core, step)``.

Parts a method uses but does not train are wrapped in
:class:`ocrkit.train.frozen.Frozen`, which ``net.train()`` cannot flip back to
training mode.

Features: optimizers and schedules (the paper's and faster ones), AMP on CUDA,
DistributedDataParallel under ``torchrun`` (gloo on CPU, NCCL on GPU),
full-state ``last.pt`` written atomically (and on Ctrl-C), ``best.pt`` by a
validation metric, ``--resume`` that replays the exact data order and checks
the checkpoint matches, ``metrics.jsonl``, a progress bar and a curve PNG.

Data: every training batch carries ``domains`` (each kept sample's
``Sample.domain``, None where its dataset records none), so a
method can route samples by domain (unified HTR + STR distillation);
``balance_domains`` draws the domains equally often
(:class:`ocrkit.train.sampler.DomainBalancedSampler`) instead of in their share of
the data.
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

from ocrkit.checkpoint import (article, first_difference, load_checkpoint, plain_spec,
                               save_checkpoint)
from ocrkit.device import resolve_device
from ocrkit.errors import Interrupted, OcrkitError, UsageError
from ocrkit.outputs import atomic_file
from ocrkit.train.method import as_loss
from ocrkit.train.sampler import (
    DomainBalancedSampler,
    StepSampler,
    dataset_aspects,
    dataset_domains,
    describe_domains,
    parse_domain_weights,
)
from ocrkit.train.setup import (
    OPTIMIZERS,
    SCHEDULES,
    Distributed,
    make_optimizer,
    make_schedule,
    rng_state,
    set_rng_state,
)


def autocast_dtype(device: torch.device) -> torch.dtype:
    """Mixed precision's dtype: bfloat16 on a CPU (PyTorch's CPU autocast; fast where
    the CPU has bfloat16 instructions, see :func:`ocrkit.device.cpu_has_bf16`) and on GPUs that
    support it, float16 (with a gradient scaler) on other GPUs."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" else torch.float16


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
    balance_domains: bool = False  # draw the samples' domains equally (DomainBalancedSampler)
    domain_weights: tuple = ()  # "NAME=N" each: domains drawn in these ratios (implies balance)
    bucket_widths: int = 0  # batches of similar width, sorted in runs of this many (0: off)
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
        parse_domain_weights(self.domain_weights)  # malformed: refused before any work
        if self.workers < 0:
            bad("--workers", self.workers, "must be 0 or more")
        if self.bucket_widths < 0:
            bad("--bucket-widths", self.bucket_widths, "must be 0 (off) or more")
        if self.optimizer not in OPTIMIZERS:
            bad("--optimizer", self.optimizer, f"one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            bad("--schedule", self.schedule, f"one of {', '.join(SCHEDULES)}")


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




def _as_flag(path: str, names: dict[str, str] | None = None) -> str:
    """``spec.backbone.args.channels`` -> ``--backbone-arg channels``; ``input.height``
    -> ``--height``; other paths as they are."""
    if names and path in names:  # a command's own option for a component argument
        return names[path]
    parts = path.split(".")
    if parts[0] == "spec" and len(parts) >= 3 and parts[2] == "args":
        return f"--{parts[1]}-arg {'.'.join(parts[3:])}"
    if parts[0] == "spec" and len(parts) == 3 and parts[2] == "name":
        return f"--{parts[1]}"
    if parts[0] == "input" and len(parts) == 2:
        return {"policy": "--resize"}.get(parts[1], f"--{parts[1]}")
    return path


def check_resumable(path: str, ckpt: dict, extra: dict,
                    flag_names: dict[str, str] | None = None) -> None:
    """Refuse (one line) to resume a checkpoint of another kind, model or input
    (``flag_names``: spec path -> the command's option, e.g. train-emu's ``--bits``)."""
    kind_old, kind_new = ckpt.get("kind", "recognizer"), extra.get("kind", "recognizer")
    if kind_old != kind_new:
        raise UsageError(f"--resume: {path} is {article(kind_old)} {kind_old} checkpoint, "
                         f"not {article(kind_new)} {kind_new} run; "
                         "choose another -o")
    if "train_state" not in ckpt:
        raise UsageError(f"{path}: not a resumable checkpoint (no optimizer state)")
    trained = ckpt["train_state"].get("identity", ckpt)  # the network, not its deployed form
    for key in _IDENTITY[1:]:
        if key not in trained and key not in extra:
            continue
        found = first_difference(plain_spec(trained.get(key)), plain_spec(extra.get(key)),
                                 key)
        if found:
            where, old, new = found
            flag = _as_flag(where, flag_names)
            given = "does not give it" if new is None else f"gives {new!r}"
            was = "without it" if old is None else f"with {flag} = {old!r}"
            raise UsageError(
                f"--resume: {path} was trained {was}, this command "
                f"{given if old is not None else f'gives {flag} = {new!r}'}; resume with the "
                "run's own options (plain --resume takes them from the run's config.json; "
                "do not repeat model options), or start a new run (another -o, or "
                "--overwrite)")


def param_groups(method, model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """The optimizer's parameter groups: the method's (``name``, ``params`` and
    optionally ``lr_scale`` and ``clip``) or one group of every trainable parameter.
    A parameter may be in one group only."""
    core = model.module if hasattr(model, "module") else model
    wanted = getattr(method, "param_groups", None)
    groups = wanted(core) if wanted else [
        {"name": "model", "params": [p for p in core.parameters() if p.requires_grad]}]
    seen: set[int] = set()
    out = []
    for g in groups:
        params = [p for p in g["params"] if p.requires_grad]
        if any(id(p) in seen for p in params):
            raise ValueError(f"parameter group {g['name']!r} repeats a parameter")
        seen.update(id(p) for p in params)
        if params:
            out.append({"params": params, "name": g["name"],
                        "lr": cfg.lr * g.get("lr_scale", 1.0),
                        "clip": g.get("clip", cfg.grad_clip)})
    if not out:
        raise UsageError("nothing to train: every parameter is frozen")
    return out


def clip_groups(opt: torch.optim.Optimizer) -> None:
    """Clip each parameter group's gradient norm to its own ``clip`` (0: none), so a
    teacher's large gradients never shrink a student's, as joint clipping would."""
    for g in opt.param_groups:
        if g.get("clip"):
            nn.utils.clip_grad_norm_(g["params"], g["clip"])


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
                 val_collate: Callable | None = None, config: dict | None = None,
                 flag_names: dict[str, str] | None = None) -> None:
        self.model, self.method = model, method
        self.train_set, self.val_set, self.collate = train_set, val_set, collate
        self.val_collate = val_collate or collate
        self.cfg, self.extra = cfg, checkpoint_extra
        self.config = config or {}  # the command and its options, for --config
        self.flag_names = flag_names  # how the command spells component arguments
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
            if hasattr(self.train_set, "set_epoch"):  # per-epoch augmentation, before forking
                self.train_set.set_epoch(step // per_epoch)
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

    # ------------------------------------------------------------------ fit, in steps
    def fit(self) -> dict:
        """Train to the end (or to a stop request, saving ``last.pt``); the summary."""
        run = self._start()
        self._restore(run)
        self.method.begin(run.total, run.step)
        if run.dist.enabled:
            run.model = nn.parallel.DistributedDataParallel(
                run.model, device_ids=[self.device.index] if self.device.type == "cuda"
                else None)
        if run.dist.main:
            run.log = open(os.path.join(self.cfg.out, "metrics.jsonl"), "a", encoding="utf-8")
            self._write_config()
        from ocrkit.console import progress_bar

        with progress_bar("train", self.cfg.quiet or not run.dist.main, unit="img") as (
                start, advance), StopRequest() as stop:
            start(run.total)
            advance(run.step)
            run.model.train()
            run.t_last = run.t_wait = time.perf_counter()
            stopped = False
            for batch in self._batches(run.sampler, run.step, run.total, stop):
                if not self._step(run, batch, stop):
                    if stop.requested:
                        break
                    continue
                advance(1)
                self._log(run)
                if run.step % self.cfg.val_every == 0 or run.step == run.total:
                    self._validate(run, stop)
                if run.dist.main and (run.step % self.cfg.save_every == 0
                                      or run.step == run.total):
                    self._save(run, run.last_path, with_state=True)
                if run.dist.any(stop.requested):  # on any rank: every rank stops
                    stopped = True
                    break
                run.t_wait = time.perf_counter()
            signum = stop.signum
        if (stopped or signum is not None) and run.step < run.total:
            self._interrupted(run, signum)
        return self._finish(run)

    def _start(self) -> "_Run":
        """Device, process group, seeds, sample order, optimizer and schedule."""
        cfg = self.cfg
        self.device = resolve_device(cfg.device)
        dist = Distributed(self.device)
        torch.manual_seed(cfg.seed + dist.rank)
        random.seed(cfg.seed + dist.rank)
        np.random.seed((cfg.seed + dist.rank) % 2**32)
        os.makedirs(cfg.out, exist_ok=True)
        model = self.model.to(self.device)
        sampler = self._sampler(dist)
        per_epoch = sampler.batches_per_epoch
        total = cfg.max_steps if cfg.max_steps is not None else max(1, int(cfg.epochs * per_epoch))
        groups = param_groups(self.method, model, cfg)
        opt = make_optimizer(cfg, groups)
        amp = cfg.amp if cfg.amp is not None else self.device.type == "cuda"
        amp_dtype = autocast_dtype(self.device)
        scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16
                                      and self.device.type == "cuda")
        return _Run(dist=dist, model=model, sampler=sampler, per_epoch=per_epoch, total=total,
                    groups=groups, opt=opt, sched=make_schedule(cfg, opt, total, per_epoch),
                    scaler=scaler, amp=amp, amp_dtype=amp_dtype,
                    last_path=os.path.join(cfg.out, "last.pt"))

    def _sampler(self, dist: Distributed) -> StepSampler:
        """The training order: shuffled, or (``balance_domains``) domains drawn equally;
        with ``bucket_widths``, batches of images of similar width."""
        sampler = self._base_sampler(dist)
        if self.cfg.bucket_widths:
            started = time.perf_counter()
            aspects = dataset_aspects(self.train_set)
            sampler.bucket_by(aspects, self.cfg.bucket_widths)
            if dist.main:
                self.say(f"--bucket-widths {self.cfg.bucket_widths}: batches of similar width "
                         f"(sizes of {len(aspects)} training images read in "
                         f"{time.perf_counter() - started:.1f} s)")
        return sampler

    def _base_sampler(self, dist: Distributed) -> StepSampler:
        cfg = self.cfg
        weights = parse_domain_weights(cfg.domain_weights)
        if not cfg.balance_domains and not weights:
            return StepSampler(len(self.train_set), cfg.batch_size, seed=cfg.seed,
                               rank=dist.rank, world=dist.world)
        sampler = DomainBalancedSampler(dataset_domains(self.train_set), cfg.batch_size,
                                        seed=cfg.seed, rank=dist.rank, world=dist.world,
                                        weights=weights)
        if dist.main:
            counts = sampler.counts()
            flag = "--domain-weight" if weights else "--balance-domains"
            if len(counts) == 1:
                self.say(f"warning: {flag}: every training sample has one domain "
                         f"({describe_domains(counts)}): nothing to balance")
            elif not weights:
                self.say(f"--balance-domains: each domain is drawn 1/{len(counts)} of the time "
                         f"(training samples: {describe_domains(counts)})")
            else:
                total = sum(sampler.weights)
                shares = ", ".join(f"{d if d is not None else 'none recorded'} {w}/{total}"
                                   for d, w in zip(sampler.names, sampler.weights))
                self.say(f"--domain-weight: domains drawn {shares} of the time (training "
                         f"samples: {describe_domains(counts)})")
        return sampler

    def _restore(self, run: "_Run") -> None:
        """``--resume``: the model, optimizer, schedule, scaler, RNG and counters of
        ``last.pt`` (checked to be this run's model and input)."""
        cfg, path = self.cfg, run.last_path
        if not cfg.resume:
            return
        if not os.path.isfile(path):
            if run.dist.main:
                self.say(f"--resume: no {path} yet, starting from scratch")
            return
        ckpt = load_checkpoint(path)
        check_resumable(path, ckpt, self.extra, self.flag_names)
        ts = ckpt["train_state"]
        run.model.load_state_dict(ts["net"] if "net" in ts else ckpt["state_dict"])
        run.opt.load_state_dict(ts["optimizer"])
        for g, wanted in zip(run.opt.param_groups, run.groups):  # this run's clipping, names
            g["clip"], g["name"] = wanted["clip"], wanted["name"]
        run.sched.load_state_dict(ts["scheduler"])
        run.scaler.load_state_dict(ts["scaler"])
        set_rng_state(ts["rng"])
        run.step, run.best, run.best_step = ts["step"], ts["best"], ts["best_step"]
        run.saved_step = run.step
        if not run.dist.main:
            return
        self.say(f"resumed from {path} at step {run.step}")
        planned = ts.get("total")
        if planned is not None and int(planned) != run.total:
            was = _rate_at(cfg, run.step, int(planned), run.per_epoch)
            now = _rate_at(cfg, run.step, run.total, run.per_epoch)
            self.say(f"warning: --resume: the run was planned for {int(planned)} steps and now "
                     f"runs to {run.total}: the learning-rate schedule is recomputed for "
                     f"{run.total} steps, so the rate at step {run.step} changes from "
                     f"{was:.3g} to {now:.3g}")

    def _write_config(self) -> None:
        """``config.json``: the command's options (for ``--config``) and what it trains."""
        with atomic_file(os.path.join(self.cfg.out, "config.json")) as tmp, \
                open(tmp, "w", encoding="utf-8") as fh:
            json.dump({**self.config, "train": asdict(self.cfg),
                       **{k: v for k, v in self.extra.items()
                          if k in ("kind", "spec", "input", "distill", "denoiser")}},
                      fh, ensure_ascii=False, indent=1, default=str)

    def _save(self, run: "_Run", path: str, with_state: bool) -> None:
        """A checkpoint of the deployable model (``best.pt``), with the whole training
        state for ``--resume`` (``last.pt``)."""
        core = run.core
        deploy = getattr(self.method, "deployable", None)
        module, deploy_extra = deploy(core) if deploy else (core, {})
        payload = {**self.extra, **deploy_extra, "state_dict": module.state_dict(),
                   "meta": {"step": run.step, "epoch": run.step / run.per_epoch,
                            "best_metric": run.best, "best_step": run.best_step,
                            "metric": self.method.metric, "seed": self.cfg.seed,
                            "world_size": run.dist.world}}
        if with_state:
            payload["train_state"] = {
                "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
                "scaler": run.scaler.state_dict(), "rng": rng_state(), "step": run.step,
                "best": run.best, "best_step": run.best_step, "total": run.total}
            if module is not core:  # the whole trained network, for --resume
                payload["train_state"]["net"] = core.state_dict()
                # and what it is (the deployed module may differ: EMU's packed form)
                payload["train_state"]["identity"] = {
                    k: self.extra[k] for k in _IDENTITY if k in self.extra}
        save_checkpoint(path, payload)
        if with_state:
            run.saved_step = run.step

    def _step(self, run: "_Run", batch: dict, stop: StopRequest) -> bool:
        """One optimizer step on ``batch``; False for a batch with nothing usable (an
        epoch of those is an error: a loop must never spin on them)."""
        t_got = time.perf_counter()
        run.data_time += t_got - run.t_wait
        run.broken += batch["broken"]
        if batch["images"].shape[0] == 0:
            if stop.requested:  # the caller stops
                return False
            run.empty_run += 1
            for _, why in batch.get("broken_items", ())[:50]:
                run.dropped_why[why] = run.dropped_why.get(why, 0) + 1
            if run.empty_run >= run.per_epoch:
                raise OcrkitError(_nothing_usable(run.empty_run, run.dropped_why))
            run.t_wait = time.perf_counter()
            return False
        run.empty_run = 0
        with torch.autocast(self.device.type, dtype=run.amp_dtype, enabled=run.amp):
            out = as_loss(self.method.loss(run.model, batch, self.device))
        self._count_infeasible(run, batch)
        opt, scaler = run.opt, run.scaler
        opt.zero_grad(set_to_none=True)
        scaler.scale(out.total).backward()
        if any(g["clip"] for g in opt.param_groups):
            scaler.unscale_(opt)
            clip_groups(opt)
        scaler.step(opt)
        scaler.update()
        run.sched.step()
        run.step += 1
        run.seen += out.images
        run.out = out
        after = getattr(self.method, "after_step", None)
        if after:
            after(run.core, run.step)
        run.step_time += time.perf_counter() - t_got
        return True

    def _count_infeasible(self, run: "_Run", batch: dict) -> None:
        """Sequences whose labels need more CTC frames than the model gives (their
        loss is zeroed): counted per logged step, said once."""
        if "ctc_infeasible" not in batch:
            return
        n = batch["ctc_infeasible"]
        run.infeasible += n
        run.sequences += batch["ctc_sequences"]
        if n and not run.infeasible_total and run.dist.main:
            self.say(f"warning: step {run.step + 1}: {n} of {batch['ctc_sequences']} label "
                     "sequences need more CTC frames than the model gives for their image; "
                     "they cannot be learnt (loss 0), counted as infeasible_samples in "
                     "metrics.jsonl")
        run.infeasible_total += n

    def _log(self, run: "_Run") -> None:
        """A ``metrics.jsonl`` record every ``--log-every`` steps (and a non-finite loss
        is an error at once)."""
        step, out = run.step, run.out
        if not (step % self.cfg.log_every == 0 or step == run.total):
            return
        loss = out.total.item()
        if not math.isfinite(loss):
            raise OcrkitError(f"loss became {loss} at step {step}; lower --lr or check the data")
        if not run.dist.main:
            return
        now = time.perf_counter()
        rec = {"step": step, "epoch": round(step / run.per_epoch, 4), "loss": round(loss, 5),
               "lr": run.sched.get_last_lr()[0],
               "img_s": round(run.seen * run.dist.world / max(now - run.t_last, 1e-9), 1),
               "data_share": round(run.data_time / max(run.data_time + run.step_time, 1e-9),
                                   3)}
        if len(out.terms) > 1 or set(out.terms) != {"loss"}:
            rec["terms"] = {k: round(float(v), 5) for k, v in out.terms.items()}
        if run.broken:
            rec["broken_samples"] = run.broken
        if run.infeasible:  # since the last record
            rec["infeasible_samples"] = run.infeasible
            rec["infeasible_share"] = round(run.infeasible / max(run.sequences, 1), 4)
        run.infeasible = run.sequences = 0
        self._record(run, rec)
        run.t_last, run.seen, run.data_time, run.step_time = now, 0, 0.0, 0.0

    def _record(self, run: "_Run", rec: dict) -> None:
        run.log.write(json.dumps(rec) + "\n")
        run.log.flush()

    def _validate(self, run: "_Run", stop: StopRequest) -> None:
        """Validate on the main process; a better metric writes ``best.pt``. A validation
        cut short by a stop request records and chooses nothing."""
        if run.dist.main and self.val_set is not None:
            run.model.eval()
            result = self.method.validate(run.core, _until(self.val_loader(), stop),
                                          self.device, limit=self.cfg.val_limit)
            run.model.train()
            if not stop.requested:
                run.result = result
                self._record(run, {"step": run.step, "val": result})
                value = result[self.method.metric]
                if value > run.best:
                    run.best, run.best_step = value, run.step
                    self._save(run, os.path.join(self.cfg.out, "best.pt"), with_state=False)
        run.dist.barrier()

    def _interrupted(self, run: "_Run", signum: int | None) -> None:
        """Ctrl-C / SIGTERM before the end: ``last.pt`` holds the last step, then exit."""
        import signal

        trained = run.step > 0  # a step of this run or of the one resumed
        if run.dist.main:
            if trained and run.saved_step != run.step:
                self._save(run, run.last_path, with_state=True)
            run.log.close()
        run.dist.close()
        how = "terminated" if signum == signal.SIGTERM else "interrupted"
        raise Interrupted(
            f"{how} at step {run.step}: saved {run.last_path}; continue with the same command "
            "and --resume" if trained else f"{how} before the first step; nothing to save",
            exit_code=143 if signum == signal.SIGTERM else 130)

    def _finish(self, run: "_Run") -> dict:
        if run.dist.main:
            if self.val_set is None:
                self._save(run, os.path.join(self.cfg.out, "best.pt"), with_state=False)
            run.log.close()
            try:
                from ocrkit.train.plot import plot_curves

                plot_curves(os.path.join(self.cfg.out, "metrics.jsonl"),
                            os.path.join(self.cfg.out, "curve.png"), self.method.metric)
            except Exception as exc:  # noqa: BLE001 - a plot must never fail a finished run
                self.say(f"warning: could not draw the training curve ({exc})")
        run.dist.barrier()
        run.dist.close()
        return {"steps": run.step, "best_metric": json_number(run.best),
                "best_step": run.best_step, "last_val": run.result,
                "broken_samples": run.broken, "infeasible_samples": run.infeasible_total}


@dataclass(eq=False)
class _Run:
    """The state of one :meth:`Trainer.fit`: what its steps share."""

    dist: Distributed
    model: nn.Module
    sampler: StepSampler
    per_epoch: int
    total: int
    groups: list
    opt: torch.optim.Optimizer
    sched: object
    scaler: object
    amp: bool
    amp_dtype: torch.dtype
    last_path: str
    step: int = 0
    best: float = -math.inf
    best_step: int = 0
    saved_step: int = -1  # the step last.pt holds
    log: object = None
    out: object = None  # the last step's Loss
    result: dict = field(default_factory=dict)  # the last validation
    broken: int = 0
    empty_run: int = 0
    dropped_why: dict = field(default_factory=dict)
    infeasible: int = 0  # since the last record
    sequences: int = 0
    infeasible_total: int = 0
    seen: int = 0
    data_time: float = 0.0
    step_time: float = 0.0
    t_last: float = field(default_factory=time.perf_counter)
    t_wait: float = 0.0

    @property
    def core(self) -> nn.Module:
        """The network itself (inside DistributedDataParallel under torchrun)."""
        ddp = isinstance(self.model, nn.parallel.DistributedDataParallel)
        return self.model.module if ddp else self.model


def _until(loader, stop: StopRequest):
    """``loader``'s batches until a stop is requested (validation then ends within a
    batch instead of running to its end before Ctrl-C / SIGTERM are honoured)."""
    for batch in loader:
        if stop.requested:
            return
        yield batch


def _nothing_usable(batches: int, why: dict[str, int]) -> str:
    reasons = "; ".join(f"{n}x {reason}" for reason, n in
                        sorted(why.items(), key=lambda kv: -kv[1])[:3]) or "unknown"
    return (f"no usable training sample: the last {batches} batches (a whole epoch) were "
            f"dropped whole ({reasons}); check the data and --charset / --unknown")


def _rate_at(cfg, step: int, total: int, per_epoch: int) -> float:
    """The learning rate the schedule gives at ``step`` of a ``total``-step run."""
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    sched = make_schedule(cfg, probe, total, per_epoch)
    return cfg.lr * sched.lr_lambdas[0](step)
