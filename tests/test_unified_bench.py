"""bench/unified_bench.py's stages build the commands they say (no training here)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench"))

import unified_bench as ub


@pytest.mark.parametrize("kwargs, name, extra", [
    ({}, "unified-s3", []),
    ({"drop": "hint"}, "unified-no-hint-s3", ["--w-hint", "0"]),
    ({"weights": ["handwriting=2"]}, "unified-dw-handwriting2-s3",
     ["--domain-weight", "handwriting=2"]),
])
def test_unified_student_stages_name_their_variant_and_pass_it_on(tmp_path, kwargs, name, extra):
    bench = ub.Bench(str(tmp_path), "cpu")
    calls = []

    def ocrkit(*args):
        calls.append([str(a) for a in args])
        return {"_seconds": 1.0}

    bench.ocrkit = ocrkit
    data = {d: {"train": f"{d}-train", "val": f"{d}-val"} for d in ub.DOMAINS}
    specialists = {d: {"checkpoint": f"{d}.pt"} for d in ub.DOMAINS}
    model = ub.distill_unified(bench, data, {"student_steps": 16}, specialists, 3, **kwargs)
    (cmd,) = calls
    assert model["checkpoint"] == os.path.join(str(tmp_path), "runs", name, "best.pt")
    assert (tmp_path / f"distill-{name}.json").is_file()
    assert cmd[0] == "distill" and "--balance-domains" in cmd
    variant = [a for i, a in enumerate(cmd) if a in ("--w-hint", "--domain-weight")
               or (i and cmd[i - 1] in ("--w-hint", "--domain-weight"))]
    assert variant == extra
    assert cmd[cmd.index("--seed") + 1] == "3"
