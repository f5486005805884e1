"""What the benches share: each stage an ``ocrkit`` command run as a subprocess, its
JSON kept under OUT so an interrupted bench continues where it stopped."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time


class Stages:
    """Runs ``ocrkit`` commands and keeps their JSON results under ``out``."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.t0 = time.perf_counter()
        self.stage_seconds = 0.0  # every stage's own time, cached ones included
        os.makedirs(out, exist_ok=True)

    def same_settings(self, settings: dict) -> None:
        """Stages are cached by name, not by their settings: the first run into OUT
        records ``settings`` (OUT/settings.json) and a later run with others exits in
        one line, so one table never mixes, say, float32 and bfloat16 rows."""
        path = os.path.join(self.out, "settings.json")
        settings = json.loads(json.dumps(settings))  # tuples -> lists, as stored
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                before = json.load(fh)
            changed = sorted(k for k in set(before) | set(settings)
                             if before.get(k) != settings.get(k))
            if changed:
                sys.exit(f"{self.out} holds stages run with other settings ({', '.join(changed)}"
                         f": {path}); give another --out, or the same settings")
            return
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(settings, fh, indent=1)

    def say(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t0:7.0f} s] {msg}", file=sys.stderr, flush=True)

    def ocrkit(self, *args) -> dict:
        """Run ``ocrkit ARGS``; its last JSON line on stdout, with ``_seconds``."""
        cmd = [sys.executable, "-m", "ocrkit", *map(str, args)]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        result = json.loads(lines[-1]) if lines else {}
        result["_seconds"] = round(time.perf_counter() - t, 1)
        return result

    def cached(self, name: str, make) -> dict:
        """OUT/NAME.json if it exists, else ``make()``'s result, saved there."""
        path = os.path.join(self.out, name + ".json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                result = json.load(fh)
        else:
            self.say(f"{name} ...")
            result = make()
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(result, fh, ensure_ascii=False, indent=1)
            self.say(f"{name}: done in {result.get('_seconds', 0):.0f} s")
        self.stage_seconds += result.get("_seconds", 0)
        return result

    def english_sets(self, domain: str, counts: dict, shape: list) -> dict[str, str]:
        """train / val / test LMDBs of one English domain (``synth --lang en --domain``):
        train and val in the training families, test in the families the English demos
        hold out (``ocrkit.demo.HELD_OUT_FAMILIES``); ``counts`` has ``train``, ``val``,
        ``test``; ``shape``: synth's size options (``--height``, ``--width``, ``--cols``)."""
        from ocrkit.demo import HELD_OUT_FAMILIES

        families = HELD_OUT_FAMILIES[f"{domain}-en"]
        keep = [a for f in families for a in ("--exclude-font-family", f)]
        only = [a for f in families for a in ("--font-family", f)]
        common = ["--lang", "en", "--domain", domain, *shape, "--no-system-fonts", "-q",
                  "--overwrite"]
        sets = {}
        for split, seed, fonts in (("train", 1, keep), ("val", 4, keep), ("test", 2, only)):
            folder = os.path.join(self.out, "data", f"{domain}-{split}")
            self.cached(f"synth-{domain}-{split}", lambda: self.ocrkit(
                "synth", "-n", counts[split], "--seed", seed, *fonts, *common, "--out", folder))
            self.cached(f"lmdb-{domain}-{split}", lambda: self.ocrkit(
                "build-lmdb", folder, folder + ".lmdb", "--overwrite", "-q"))
            sets[split] = folder + ".lmdb"
        return sets


# `git archive` writes the commit here (.gitattributes: export-subst), so a bench run from
# an archived snapshot of the tree (not a checkout) still names its commit.
ARCHIVED_COMMIT = "$Format:%H$"


def provenance() -> dict:
    """The command, the commit (``+dirty`` with uncommitted changes) and the machine."""
    import torch

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    if not commit and not ARCHIVED_COMMIT.startswith("$"):
        commit = f"{ARCHIVED_COMMIT} (git archive)"
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"command": shlex.join(["python", *sys.argv]), "commit": commit or None,
            "machine": {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
                        "python": platform.python_version(), "torch": torch.__version__,
                        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available()
                        else None,
                        "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}}


def speed_options(parser, auto: bool = True, buckets: bool = False) -> None:
    """``--amp/--no-amp`` (default None: :func:`amp_flags` decides) and, with
    ``buckets``, ``--bucket-widths N`` (default 16) on a bench's ``parser``."""
    import argparse

    parser.add_argument(
        "--amp", action=argparse.BooleanOptionalAction, default=None,
        help="train in mixed precision (--amp: bfloat16 on a CPU) "
             + ("[on where the CPU computes in bfloat16, as the English demos; the loop's "
                "default on CUDA]" if auto else
                "[the loop's default: on CUDA only]; rows of one table must share it"))
    if buckets:
        parser.add_argument("--bucket-widths", type=int, default=16, metavar="N",
                            help="batches of similar width (--bucket-widths; 0: off) [16]")


def amp_flags(amp: bool | None, device: str, auto: bool = True) -> list[str]:
    """``--amp`` / ``--no-amp`` for the trainings of a bench. ``None`` (auto): the English
    demos' choice on a CPU (bfloat16 where it computes in it natively: 1.4-1.8x the
    float32 steps per second on this repository's 2-core machine, docs/results.md),
    nothing elsewhere (the training loop's own default: on for CUDA). ``auto=False``:
    ``None`` is always the loop's own default (benches whose published rows ran in
    float32 on a CPU)."""
    if amp is None and not auto:
        return []
    if amp is None:
        from ocrkit.device import cpu_has_bf16, resolve_device

        if resolve_device(device).type != "cpu":
            return []
        amp = cpu_has_bf16()
    return ["--amp"] if amp else ["--no-amp"]


def spread(values, scale: float = 1.0) -> tuple[float, float, float]:
    """The mean, minimum and maximum of several seeds' ``values`` (each times ``scale``)."""
    values = [scale * v for v in values]
    if not values:
        raise ValueError("spread of no values")
    return sum(values) / len(values), min(values), max(values)


def format_spread(mean: float, lo: float, hi: float, seeds: int, digits: int = 1,
                  range_digits: int = 1) -> str:
    """``mean (min-max)``, or the value alone for one seed."""
    if seeds == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({lo:.{range_digits}f}-{hi:.{range_digits}f})"


def spread_cell(values, scale: float = 1.0, digits: int = 1) -> str:
    """:func:`format_spread` of ``values`` (times ``scale``)."""
    return format_spread(*spread(values, scale), len(values), digits, digits)
