"""Rate at equal quality: one number per method instead of a plot.

- ``bytes_at``: the smallest measured bytes/image among a method's points whose mIoU reaches a
  given fraction of the baseline's mIoU (None when no point does).
- ``bd_rate``: the Bjontegaard delta rate of one rate-quality curve against another, in percent:
  log-rate is interpolated as a function of mIoU with a piecewise-cubic monotone (PCHIP)
  interpolant over the mIoU range both curves cover, and the mean log-rate difference over that
  range is turned back into a rate ratio. -50 means half the bytes at equal mIoU.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.interpolate import PchipInterpolator

QUALITY_LEVELS = (90, 95, 99)  # percent of the baseline's mIoU
NO_OVERLAP = "n/a: no overlap"
ONE_POINT = "n/a: fewer than two points"


def bytes_at(points: list[tuple[float, float]], baseline_miou: float, percent: float) -> float | None:
    """Smallest bytes among (bytes, miou) ``points`` with miou >= ``percent`` % of ``baseline_miou``."""
    wanted = baseline_miou * percent / 100
    reached = [size for size, miou in points if miou >= wanted]
    return min(reached) if reached else None


def _log_rate_curve(points: list[tuple[float, float]]) -> PchipInterpolator | None:
    """PCHIP of log(bytes) over mIoU; at equal mIoU only the smallest rate counts."""
    best: dict[float, float] = {}
    for size, miou in points:
        if size > 0 and math.isfinite(miou):
            best[miou] = min(size, best.get(miou, math.inf))
    if len(best) < 2:
        return None
    quality = np.array(sorted(best))
    return PchipInterpolator(quality, np.log([best[q] for q in quality]))


def bd_rate(test: list[tuple[float, float]], anchor: list[tuple[float, float]]) -> float | str:
    """Bjontegaard delta rate (%) of ``test`` against ``anchor``, both lists of (bytes, miou).

    Returns ``ONE_POINT`` when either curve has fewer than two distinct mIoU values and
    ``NO_OVERLAP`` when their mIoU ranges do not overlap.
    """
    test_curve, anchor_curve = _log_rate_curve(test), _log_rate_curve(anchor)
    if test_curve is None or anchor_curve is None:
        return ONE_POINT
    low = max(test_curve.x[0], anchor_curve.x[0])
    high = min(test_curve.x[-1], anchor_curve.x[-1])
    if high <= low:
        return NO_OVERLAP
    mean_difference = (test_curve.integrate(low, high) - anchor_curve.integrate(low, high)) / (high - low)
    return float((math.exp(mean_difference) - 1) * 100)


def method_summaries(
    methods: dict[str, list[tuple[float, float]]], baseline_miou: float, anchors
) -> list[dict]:
    """Per method: its points, bytes at 90/95/99 % of the baseline mIoU, BD-rate against each anchor."""
    summaries = []
    for name, points in methods.items():
        entry = {"method": name, "points": len(points)}
        for percent in QUALITY_LEVELS:
            entry[f"bytes_at_{percent}"] = bytes_at(points, baseline_miou, percent)
        for anchor in anchors:
            if anchor in methods and anchor != name:
                entry[f"bd_rate_vs_{anchor.lower()}"] = bd_rate(points, methods[anchor])
        summaries.append(entry)
    return summaries
