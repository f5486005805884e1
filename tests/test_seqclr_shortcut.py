"""bench/seqclr_shortcut.py's window statistics on hand-made instances."""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench"))

import seqclr_shortcut as ss


def test_instances_that_carry_only_their_position_are_told_apart_within_images_only():
    # 3 images x 2 windows; every instance is its window's unit vector and nothing else
    e = torch.eye(4)
    za = torch.stack([e[w] for _ in range(3) for w in range(2)])
    s = ss.summary([ss.window_stats(za, za.clone(), windows=2)])
    assert s["top1 within the image"] == 100.0
    assert s["top1 across images, same window"] == 0.0  # a tie with a rival does not count
    assert (s["cos pos"], s["cos same_window"]) == (1.0, 1.0)
    assert (s["cos same_image"], s["cos other"]) == (0.0, 0.0)


def test_instances_that_carry_their_image_are_told_apart_across_images():
    e = torch.eye(5)
    za = torch.stack([e[2 + i] + 0.1 * e[w] for i in range(3) for w in range(2)])
    s = ss.summary([ss.window_stats(za, za.clone(), windows=2)])
    assert s["top1 across images, same window"] == 100.0
    assert s["cos same_image"] == pytest.approx(1 / 1.01, abs=1e-3)
    assert s["cos same_window"] == pytest.approx(0.01 / 1.01, abs=1e-3)

def test_counts_of_each_kind_of_pair():
    za, zb = torch.randn(6, 4), torch.randn(6, 4)  # 3 images x 2 windows per view
    s = ss.window_stats(za, zb, windows=2)
    m = 6
    assert s["anchors"] == 2 * m and s["n pos"] == 2 * m
    assert s["n same_image"] == 2 * m * 2  # the other window of its image, both views
    assert s["n same_window"] == 2 * m * 4  # its window in the 2 other images, both views
    assert s["n other"] == 2 * m * 4
