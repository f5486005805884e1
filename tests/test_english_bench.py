"""bench/english_bench.py's table over seeds, from hand-made per-seed rows."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench"))

import english_bench as eb

TEST = "scene (held-out fonts)"


def seed_row(seed: int, accuracy: float, cer: float, exact: float, ms: float = 5.0) -> dict:
    return {"domain": "scene", "head": "attention", "seed": seed, "parameters": 2_260_000,
            "train_seconds": 60.0, "best_step": 5000, "recipe": eb.RECIPE, "ms_per_word": ms,
            "tests": {TEST: {"accuracy": accuracy, "cer": cer, "exact_accuracy": exact,
                             "samples": 1000}}}


def test_seeds_give_mean_min_and_max_of_every_metric():
    row = eb.aggregate([seed_row(0, 0.44, 0.27, 0.40, 6.0), seed_row(1, 0.43, 0.25, 0.38, 4.0),
                        seed_row(2, 0.47, 0.29, 0.42, 5.0)])
    acc = row["tests"][TEST]["accuracy"]
    assert acc["mean"] == pytest.approx(0.4466667) and (acc["min"], acc["max"]) == (0.43, 0.47)
    assert row["tests"][TEST]["cer"]["mean"] == pytest.approx(0.27)
    assert row["seeds"] == [0, 1, 2] and row["ms_per_word"] == pytest.approx(5.0)
    assert [r["seed"] for r in row["per_seed"]] == [0, 1, 2]
    table = eb.render([row], [TEST])
    assert "| scene, attention | 0,1,2 | 44.7 (43.0-47.0) / 27.0 (40.0) | 2.26 M | 5.0 |" in table
    assert table.splitlines()[0].startswith("| model | seeds | ")


def test_one_seed_keeps_the_plain_table():
    table = eb.render([eb.aggregate([seed_row(1, 0.432, 0.269, 0.385)])], [TEST])
    assert "| scene, attention | 43.2 / 26.9 (38.5) | 2.26 M | 5.0 |" in table
    assert "seeds" not in table
