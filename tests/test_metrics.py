"""Metric definitions checked against hand-computed cases (ocrkit/metrics.py docstring)."""

from __future__ import annotations

import pytest

from ocrkit.metrics import Calibration, Metrics, evaluate_strings, positional_hits


def test_hand_computed_corpus():
    gts = ["汪淼转身", "abc", "你好 世界", ""]
    preds = ["汪淼转", "abd", "你好 世界", "x"]
    r = evaluate_strings(preds, gts)
    # Characters (spaces count): |gt| = 4 + 3 + 5 + 0 = 12.
    # EDs: 1 (deletion), 1 (substitution), 0, 1 (insertion) -> 3.
    assert r["samples"] == 4
    assert r["cer"] == pytest.approx(3 / 12)
    assert r["clp_ed"] == pytest.approx(1 - 3 / 12)
    # Positional hits: 3 + 2 + 5 + 0 = 10 of 12.
    assert r["clp"] == pytest.approx(10 / 12)
    assert r["ilp"] == r["accuracy"] == pytest.approx(1 / 4)
    # 1-NED: (1-1/4) + (1-1/3) + 1 + (1-1/1) over 4.
    assert r["one_minus_ned"] == pytest.approx((0.75 + 2 / 3 + 1 + 0) / 4)
    assert r["ed1_accuracy"] == 1.0
    # Words: gt tokens 1 + 1 + 2 + 0 = 4; token edits 1 + 1 + 0 + 1 = 3.
    assert r["wer"] == pytest.approx(3 / 4)


def test_positional_clp_ignores_extra_and_penalises_shifts():
    assert positional_hits("abcd", "abc") == 3  # extra predicted char: not penalised
    assert positional_hits("bc", "abc") == 0  # a deletion at the start shifts everything
    r = evaluate_strings(["xabc"], ["abc"])
    assert r["clp"] == 0.0 and r["cer"] == pytest.approx(1 / 3)


def test_multirow_newlines_are_not_characters():
    r = evaluate_strings(["天地\n玄黄"], ["天地玄黄"])
    assert r["ilp"] == 1.0 and r["cer"] == 0.0 and r["clp"] == 1.0


def test_empty_strings():
    r = evaluate_strings([""], [""])
    assert r["ilp"] == 1.0 and r["one_minus_ned"] == 1.0 and r["cer"] == 0.0
    assert r["clp"] == 1.0 and r["wer"] == 0.0
    r = evaluate_strings(["a"], [""])
    assert r["ilp"] == 0.0 and r["one_minus_ned"] == 0.0 and r["cer"] == 1.0 and r["clp"] == 0.0
    r = evaluate_strings([""], ["ab"])
    assert r["cer"] == 1.0 and r["ed1_accuracy"] == 0.0 and r["one_minus_ned"] == 0.0


def test_accumulation_equals_one_shot_and_checks_lengths():
    m = Metrics()
    m.update(["ab"], ["ab"])
    m.update(["c"], ["d"])
    assert m.result() == evaluate_strings(["ab", "c"], ["ab", "d"])
    with pytest.raises(ValueError):
        m.update(["a"], [])


def test_calibration_by_hand():
    cal = Calibration()
    #             conf  right?
    cal.update([0.95, 0.92, 0.55, 0.3, 1.0],
               ["abc", "abd", "x", "", "a\nb"],
               ["abc", "abc", "x", "q", "ab"])  # newlines do not count: "a\nb" == "ab"
    r = cal.result()
    assert r["samples"] == 5 and r["accuracy"] == pytest.approx(0.6)
    assert r["mean_confidence"] == pytest.approx(3.72 / 5)
    # bins of 0.1: [0.3] wrong, [0.55] right, [0.92, 0.95, 1.0] two right of three
    ece = (abs(0 - 0.3) + abs(1 - 0.55) + abs(2 - (0.92 + 0.95 + 1.0))) / 5
    assert r["ece"] == pytest.approx(ece)
    levels = {x["min_confidence"]: (x["kept"], x["accuracy"]) for x in r["levels"]}
    assert levels[0.5] == (pytest.approx(0.8), pytest.approx(0.75))
    assert levels[0.9] == (pytest.approx(0.6), pytest.approx(2 / 3))
    assert levels[0.95] == (pytest.approx(0.4), pytest.approx(1.0))  # >= is kept
    assert levels[0.99] == (pytest.approx(0.2), pytest.approx(1.0))
    assert r["confident_errors"] == 1  # "abd" at 0.92


def test_calibration_of_nothing_and_of_a_perfectly_calibrated_reader():
    assert Calibration().result() == {"samples": 0, "ece": None, "levels": [],
                                      "confident_errors": 0}
    cal = Calibration()
    cal.update([0.25] * 4, ["a", "b", "b", "b"], ["a", "a", "a", "a"])  # 1 of 4 right
    r = cal.result()
    assert r["ece"] == pytest.approx(0.0)
    assert [x["accuracy"] for x in r["levels"]] == [None] * 6  # nothing reaches 0.5
    two = Calibration()
    two.update([0.95, 0.15], ["a", "b"], ["a", "a"])  # bins apart: 0.05 and 0.15
    assert two.result()["ece"] == pytest.approx(0.1)  # in one bin it would be 0.05
    with pytest.raises(ValueError, match="3 confidences for 2 predictions"):
        cal.update([0.1, 0.2, 0.3], ["a", "b"], ["a", "b"])
