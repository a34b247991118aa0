"""Rate at equal quality and BD-rate, against answers known by construction."""

import math

import pytest

from embeddings_squeeze.utils.rate_quality import NO_OVERLAP, ONE_POINT, bd_rate, bytes_at, method_summaries

ANCHOR = [(100.0, 0.50), (200.0, 0.60), (400.0, 0.66), (800.0, 0.70)]


def test_half_the_rate_everywhere_is_minus_50_percent():
    half = [(size / 2, miou) for size, miou in ANCHOR]
    assert bd_rate(half, ANCHOR) == pytest.approx(-50.0)
    assert bd_rate(ANCHOR, half) == pytest.approx(100.0)
    assert bd_rate(ANCHOR, ANCHOR) == pytest.approx(0.0)


def test_bd_rate_of_linear_log_rate_curves_by_hand():
    # log-rate linear in mIoU: ln r = a + b q. PCHIP reproduces collinear points exactly, and the mean
    # difference of two lines over the shared range [0.45, 0.6] is their difference at its midpoint.
    anchor = [(math.exp(2 + 10 * q), q) for q in (0.4, 0.5, 0.6)]
    test = [(math.exp(1 + 12 * q), q) for q in (0.45, 0.55, 0.65)]
    low, high = 0.45, 0.6
    midpoint = (low + high) / 2
    expected = (math.exp((1 + 12 * midpoint) - (2 + 10 * midpoint)) - 1) * 100
    assert bd_rate(test, anchor) == pytest.approx(expected, rel=1e-9)


def test_bd_rate_without_overlap_or_with_one_point():
    assert bd_rate([(10.0, 0.8), (20.0, 0.9)], ANCHOR) == NO_OVERLAP
    assert bd_rate([(10.0, 0.6)], ANCHOR) == ONE_POINT
    assert bd_rate([(10.0, 0.6), (20.0, 0.6)], ANCHOR) == ONE_POINT  # one distinct mIoU


def test_bytes_at_picks_the_cheapest_point_reaching_the_quality():
    points = [(50.0, 0.40), (90.0, 0.57), (120.0, 0.62), (300.0, 0.61)]
    assert bytes_at(points, 0.60, 95) == 90.0  # 0.57 >= 0.95 x 0.60
    assert bytes_at(points, 0.60, 99) == 120.0  # 0.594: the 0.62 and 0.61 points reach it
    assert bytes_at(points, 0.70, 99) is None


def test_method_summaries_hold_every_method():
    methods = {"vq": [(size / 2, miou) for size, miou in ANCHOR], "JPEG": ANCHOR, "mask_png": [(700.0, 0.71)]}
    summary = {entry["method"]: entry for entry in method_summaries(methods, 0.71, anchors=("JPEG", "WEBP"))}
    assert summary["vq"]["bd_rate_vs_jpeg"] == pytest.approx(-50.0)
    assert "bd_rate_vs_webp" not in summary["vq"]  # no WebP rows in this sweep
    assert "bd_rate_vs_jpeg" not in summary["JPEG"]
    assert summary["mask_png"]["bytes_at_99"] == 700.0 and summary["mask_png"]["bd_rate_vs_jpeg"] == ONE_POINT
    assert summary["vq"]["bytes_at_95"] == 400.0  # 0.95 x 0.71 = 0.6745: only the 0.70 point, at 800 / 2
    assert summary["vq"]["bytes_at_90"] == 200.0  # 0.9 x 0.71 = 0.639: the 0.66 point, at 400 / 2
