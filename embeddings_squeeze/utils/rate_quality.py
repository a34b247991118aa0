"""Rate at equal quality: one number per method instead of a plot, without over-reading thin curves.

Every curve is first reduced to its Pareto front: a point stays only if it scores higher than
every cheaper point (a dominated point says nothing about what the method can do).

- ``bytes_at``: bytes per image at which a method reaches a given fraction of the baseline's mIoU.
  log(bytes) is interpolated linearly between the two front points that bracket the threshold.
  When even the cheapest point tried passes it, that point's bytes are only an upper bound (the
  method might need fewer), and are marked so. None when no point reaches it.
- ``bd_rate``: the Bjontegaard delta rate of one front against another, in percent: log-rate is
  interpolated as a function of mIoU with a piecewise-cubic monotone (PCHIP) interpolant over the
  mIoU range both fronts cover, and the mean log-rate difference over that range becomes a rate
  ratio (-50 means half the bytes at equal mIoU). It is reported only when that shared range is at
  least half of the narrower front's range and wider than the widest 95 % interval of the fronts'
  points against their baseline (``resolution``): an overlap thinner than the noise makes no number.
- ``standing``: where two fronts stand over the bytes both cover, a word even when BD-rate is n/a.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.interpolate import PchipInterpolator

QUALITY_LEVELS = (90, 95, 99)  # percent of the baseline's mIoU
MIN_OVERLAP = 0.5  # of the narrower front's mIoU range, for a BD-rate
NO_OVERLAP = "n/a: no overlap"
FEW_POINTS = "n/a: fewer than two points on"  # how every such reason starts (``too_few_points``)
THIN_OVERLAP = "n/a: overlap under half the narrower range"
NO_RESOLUTION = "n/a: a point without an interval"

Point = tuple[float, float]  # (bytes per image, mIoU)
Names = dict[Point, str]  # points by the name of the result they come from, where known


def _measured(point: Point) -> bool:
    size, miou = point
    return size > 0 and math.isfinite(miou)


def pareto_front(points: list[Point]) -> list[Point]:
    """The points no cheaper-or-equal point beats in mIoU, by increasing bytes (and mIoU)."""
    front: list[Point] = []
    for size, miou in sorted(points, key=lambda point: (point[0], -point[1])):
        if _measured((size, miou)) and (not front or miou > front[-1][1]):
            front.append((size, miou))
    return front


def bytes_at(points: list[Point], baseline_miou: float, percent: float) -> tuple[float | None, bool]:
    """(bytes at ``percent`` % of ``baseline_miou``, whether that is an upper bound) on the front."""
    wanted = baseline_miou * percent / 100
    front = pareto_front(points)
    reaching = next((i for i, (_, miou) in enumerate(front) if miou >= wanted), None)
    if reaching is None:
        return None, False
    if reaching == 0:
        return front[0][0], True
    (low_bytes, low_miou), (high_bytes, high_miou) = front[reaching - 1], front[reaching]
    share = (wanted - low_miou) / (high_miou - low_miou)
    return math.exp(math.log(low_bytes) + share * (math.log(high_bytes) - math.log(low_bytes))), False


def too_few_points(points: list[Point], whose: str, names: Names | None = None) -> str:
    """Why a front of fewer than two points makes no BD-rate, naming each point left out of it."""
    front = pareto_front(points)
    measured = [point for point in points if _measured(point)]
    left_out = sorted(measured)
    for point in front:
        left_out.remove(point)
    reasons = [f"{FEW_POINTS} {whose} front ({len(front)} of {len(points)} point{'s' * (len(points) != 1)})"]
    if left_out:
        shown = ", ".join(_point_text(point, names or {}) for point in left_out)
        reasons.append(f"left out, as an equally cheap or cheaper point scores as high or higher: {shown}")
    if len(measured) < len(points):
        reasons.append(f"{len(points) - len(measured)} without measured bytes or mIoU")
    return "; ".join(reasons)


def _point_text(point: Point, names: Names) -> str:
    size, miou = point
    measured = f"{size:.1f} B at mIoU {miou:.4f}"
    return f"{names[point]} ({measured})" if point in names else measured


def _log_rate_curve(front: list[Point]) -> PchipInterpolator:
    """PCHIP of log(bytes) over mIoU along a front (two or more points)."""
    return PchipInterpolator([miou for _, miou in front], np.log([size for size, _ in front]))


def overlap(test: list[Point], anchor: list[Point]) -> list[float] | None:
    """[low, high] of the mIoU range both fronts cover, None when they share none."""
    test, anchor = pareto_front(test), pareto_front(anchor)
    if not test or not anchor:
        return None
    low, high = max(test[0][1], anchor[0][1]), min(test[-1][1], anchor[-1][1])
    return [low, high] if high > low else None


def bd_rate(
    test: list[Point], anchor: list[Point], resolution: float | None = 0.0, names: Names | None = None
) -> float | str:
    """Bjontegaard delta rate (%) of ``test`` against ``anchor`` (see the module docstring), or why
    there is none; ``resolution``: the widest interval of the points' mIoU (None: some point has none);
    ``names``: the points' names, for the reason."""
    for points, whose in ((test, "its"), (anchor, "the anchor's")):
        if len(pareto_front(points)) < 2:
            return too_few_points(points, whose, names)
    test, anchor = pareto_front(test), pareto_front(anchor)
    shared = overlap(test, anchor)
    if shared is None:
        return NO_OVERLAP
    low, high = shared
    narrower = min(test[-1][1] - test[0][1], anchor[-1][1] - anchor[0][1])
    if high - low < MIN_OVERLAP * narrower:
        return THIN_OVERLAP
    if resolution is None:
        return NO_RESOLUTION
    if high - low <= resolution:
        return f"n/a: overlap {high - low:.4f} within the points' 95 % intervals ({resolution:.4f} wide)"
    test_curve, anchor_curve = _log_rate_curve(test), _log_rate_curve(anchor)
    mean_difference = (test_curve.integrate(low, high) - anchor_curve.integrate(low, high)) / (high - low)
    return float((math.exp(mean_difference) - 1) * 100)


def standing(test: list[Point], anchor: list[Point]) -> str:
    """Where ``test``'s front stands against ``anchor``'s at the bytes both cover: mIoU interpolated
    linearly in log(bytes), compared at every point of either front in the shared range."""
    test, anchor = pareto_front(test), pareto_front(anchor)
    if not test or not anchor:
        return "no points"
    low, high = max(test[0][0], anchor[0][0]), min(test[-1][0], anchor[-1][0])
    if high < low:
        cheaper = test[-1][0] < anchor[0][0]
        return (
            "all its points cheaper than the anchor's"
            if cheaper
            else "all its points dearer than the anchor's"
        )
    at = np.log([size for size, _ in test + anchor if low <= size <= high])

    def miou_at(front):
        return np.interp(at, np.log([size for size, _ in front]), [miou for _, miou in front])

    difference = miou_at(test) - miou_at(anchor)
    if np.all(difference > 0):
        return "better at every shared rate"
    if np.all(difference < 0):
        return "worse at every shared rate"
    return "crosses the anchor"


def method_summary(
    name: str,
    points: list[Point],
    baseline_miou: float,
    anchors: dict[str, list[Point]],
    resolution: dict[str, float | None] | None = None,
    names: Names | None = None,
) -> dict:
    """One method's points, bytes at 90/95/99 % of ``baseline_miou`` and its standing against each
    anchor; ``resolution``: per method, the widest 95 % interval of its points (None: one has none);
    ``names``: the points' names, for the reasons a BD-rate is not given."""
    resolution = resolution or {}
    entry = {"method": name, "points": len(points)}
    for percent in QUALITY_LEVELS:
        value, upper_bound = bytes_at(points, baseline_miou, percent)
        entry[f"bytes_at_{percent}"] = value
        entry[f"bytes_at_{percent}_upper_bound"] = upper_bound
    for anchor, anchor_points in anchors.items():
        if anchor != name:
            key = anchor.lower()
            widths = (resolution.get(name, 0.0), resolution.get(anchor, 0.0))
            widest = None if None in widths else max(widths)
            entry[f"bd_rate_vs_{key}"] = bd_rate(points, anchor_points, widest, names)
            entry[f"miou_overlap_vs_{key}"] = overlap(points, anchor_points)
            entry[f"standing_vs_{key}"] = standing(points, anchor_points)
    return entry


def method_summaries(
    methods: dict[str, list[Point]],
    baseline_miou: float,
    anchors,
    resolution: dict | None = None,
    names: Names | None = None,
) -> list[dict]:
    """``method_summary`` of every method, against the anchors among them (e.g. JPEG, WEBP)."""
    present = {anchor: methods[anchor] for anchor in anchors if anchor in methods}
    return [
        method_summary(name, points, baseline_miou, present, resolution, names)
        for name, points in methods.items()
    ]
