"""What the benches share: each stage an ``ocrkit`` command run as a subprocess, its
JSON kept under OUT so an interrupted bench continues where it stopped."""

from __future__ import annotations

import json
import os
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
