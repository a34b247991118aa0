"""Confidence intervals of split-level scores, of paired differences and of means over seeds.

A score is a metric's ``value`` of per-image statistics summed over the split (``utils/metrics.py``):
mIoU from summed confusion counts, Dice, pixel accuracy, the pooled boundary F. Its interval:

- **classes fixed**: a metric with values per class averages the classes the whole split has (in
  its ground truth or predictions); the interval is for the mean over exactly those classes, the
  estimand the score itself estimates, rather than over whichever classes a resample of the images
  happens to hold.
- **delta method over images**: the score is a smooth function of sums over images, so its
  sampling variance over images is ``N`` times the variance of each image's linear contribution
  (the directional derivative of the score along that image's statistics, taken numerically);
  paired differences subtract the two models' contributions image by image.
- **Student t**, so an interval always holds its estimate (clipped to the metric's ``bounds``,
  where the truth must lie), with the effective number of images
  behind the variance, ``(sum d^2)^2 / sum d^4`` of the contributions' deviations, less one as its
  degrees of freedom: when a few images carry the variance (a rare class), the interval widens.
- **seeds**: a mean over training seeds (each model scored on the same images, each difference
  against its own seed's baseline) adds the seeds' own variance, ``var(per-seed scores) / K``, to
  the images' variance of the mean's contributions, with ``K - 1`` degrees of freedom: a variance
  from two seeds is too uncertain to be trusted more. One seed: the interval covers the test images
  only, for that training run (its seed-to-seed spread is not in it).

No interval is stated (``Interval.note`` says why) for fewer than ``MIN_IMAGES`` images, for a split
where a class of the mean is in the ground truth of fewer than ``MIN_CLASS_IMAGES`` images (a class
in one or two images cannot show how it varies: measured coverage 43-87 % for one seed), or where
every image contributes alike (zero spread). Where a class of the mean is in the ground truth of
fewer than ``FEW_CLASS_IMAGES`` images, one seed's interval is stated with a caveat: its measured
coverage is below nominal there (about 92 %; over seeds it covers). The measured coverage of this
method and of the alternatives, on simulated splits with a known truth, is in
``benchmarks/bench_coverage.py`` and ``benchmarks/RESULTS.md``.

Multiplicity: ``holm`` adjusts the p-values of a family of differences (a comparison's metrics, a
sweep's rows) so that "significant" holds for the family at ``1 - LEVEL``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from scipy import stats

LEVEL = 0.95
MIN_IMAGES = 3  # fewer images: no interval
MIN_CLASS_IMAGES = 3  # a class of the mean in fewer ground truths than this: no interval (measured)
FEW_CLASS_IMAGES = 5  # ... in fewer than this: an interval with the caveat of its measured coverage
_STEP = 1e-3  # relative step of the numerical derivative along one image's statistics
_CHUNK_VALUES = 2**24  # statistics values evaluated at once in the derivative (memory bound)


@dataclass(frozen=True)
class Interval:
    """An estimate, its ``LEVEL`` interval (``low``/``high`` None when none is stated, ``note``
    says why; or stated with a ``note`` on its measured coverage) and, for differences, the two-sided
    p-value against no difference."""

    estimate: float
    low: float | None = None
    high: float | None = None
    p_value: float | None = None
    note: str | None = None

    @property
    def stated(self) -> bool:
        return self.low is not None

    def bounds(self) -> tuple[float, float] | None:
        return (self.low, self.high) if self.stated else None


def interval(
    runs: Sequence[torch.Tensor],
    metric,
    baselines: Sequence[torch.Tensor] | None = None,
    level: float = LEVEL,
) -> Interval:
    """The mean over seeds of ``metric`` (minus each seed's ``baselines`` score, paired) with its
    interval: ``runs`` holds one (N, ...) tensor of per-image statistics per seed, every one of the
    same N images in the same order."""
    images = len(runs[0])
    if any(len(run) != images for run in (*runs, *(baselines or ()))):
        raise ValueError("every run must hold the statistics of the same images")
    if images == 0:
        return Interval(math.nan, note="no images")
    estimates, contributions = [], []
    for index, run in enumerate(runs):
        estimate, contribution = _linearised(run, metric)
        if baselines is not None:
            paired, paired_contribution = _linearised(baselines[index], metric)
            estimate, contribution = estimate - paired, contribution - paired_contribution
        estimates.append(estimate)
        contributions.append(contribution)
    estimate = sum(estimates) / len(runs)
    fewest = min(_fewest_truth_images(run, metric) for run in (*runs, *(baselines or ())))
    refusal = _refusal(estimate, images, fewest)
    if refusal is not None:
        return Interval(estimate, note=refusal)
    deviations = torch.stack(contributions).mean(dim=0)
    variance, freedom = _variance(deviations - deviations.mean(), estimates)
    if not variance > 1e-24:  # every image (and seed) contributes alike: a point, not an interval
        return Interval(estimate, note="no spread over images: no interval")
    error = math.sqrt(variance)
    half = float(stats.t.ppf(0.5 + level / 2, freedom)) * error
    p_value = float(2 * stats.t.sf(abs(estimate) / error, freedom)) if baselines is not None else None
    least, most = getattr(metric, "bounds", (-math.inf, math.inf))
    if baselines is not None:  # a difference of two values in [least, most]
        least, most = least - most, most - least
    caveat = None
    if fewest < FEW_CLASS_IMAGES and len(runs) == 1:  # over seeds (K - 1 freedom) thin classes covered
        caveat = (
            f"a class of the mean in the ground truth of only {fewest} images: one seed's interval covered "
            "about 92 % of the truth in simulation, under the nominal 95 %"
        )
    # the truth lies in the metric's range
    return Interval(estimate, max(estimate - half, least), min(estimate + half, most), p_value, caveat)


def _refusal(estimate: float, images: int, fewest: float) -> str | None:
    """Why no interval can be stated, before any variance is looked at (None: one can)."""
    if not math.isfinite(estimate):
        return "no score"
    if images < MIN_IMAGES:
        return f"{images} image{'s' * (images > 1)}: too few for an interval"
    if fewest < MIN_CLASS_IMAGES:
        return f"a class of the mean in the ground truth of {fewest} image(s): too few for an interval"
    return None


def _variance(deviations: torch.Tensor, estimates: list[float]) -> tuple[float, float]:
    """(variance, degrees of freedom) of a seed mean from its images' (N,) centred contributions and the
    seeds' own estimates: over images alone, the effective number of images less one; over seeds,
    their number less one."""
    images, seeds = len(deviations), len(estimates)
    variance = images / (images - 1) * float((deviations**2).sum())
    if seeds == 1:  # the images that carry the variance, not all of them
        spread = float((deviations**4).sum())
        return variance, max(1.0, float((deviations**2).sum() ** 2) / spread - 1) if spread > 0 else 1.0
    variance += float(torch.tensor(estimates, dtype=torch.float64).var(correction=1)) / seeds
    return variance, seeds - 1.0


def _value_function(summed: torch.Tensor, metric):
    """The metric as a function of summed statistics with its classes fixed to those of ``summed``."""
    classes = metric.class_values(summed[None])
    if classes is None:
        return metric.value
    present = ~torch.isnan(classes[0])

    def value(statistics: torch.Tensor) -> torch.Tensor:
        return metric.class_values(statistics)[..., present].nanmean(dim=-1)

    return value


def _linearised(run: torch.Tensor, metric) -> tuple[float, torch.Tensor]:
    """The metric of the summed (N, ...) statistics, and each image's (N,) linear contribution to it:
    the central difference along the image's statistics, ``d value(S + t x_i) / dt`` at t = 0."""
    run = run.double()
    summed = run.sum(dim=0)
    value = _value_function(summed, metric)
    estimate = float(value(summed[None])[0])
    per_chunk = max(1, _CHUNK_VALUES // max(1, summed.numel()))
    slopes = []
    for chunk in run.split(per_chunk):
        ahead = value(summed + _STEP * chunk)
        behind = value(summed - _STEP * chunk)
        slopes.append((ahead - behind) / (2 * _STEP))
    return estimate, torch.cat(slopes).nan_to_num(0.0)


def _fewest_truth_images(run: torch.Tensor, metric) -> float:
    """The fewest images whose ground truth holds a class of the metric's mean (0 for a class in the
    predictions only); infinite for metrics without class values."""
    classes = metric.class_values(run.sum(dim=0)[None])
    if classes is None:
        return math.inf
    present = ~torch.isnan(classes[0])
    in_truth = (metric.truth_counts(run) > 0).sum(dim=0)
    return int(in_truth[present].min()) if present.any() else math.inf


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family's p-values (None: not tested, left out of the family):
    an adjusted p-value below ``1 - LEVEL`` is significant with the family-wise error held at it."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


def significant(adjusted_p: float | None, level: float = LEVEL) -> bool | None:
    """Whether a difference is significant at ``level`` after adjustment (None: not tested)."""
    return None if adjusted_p is None else adjusted_p < 1 - level


def verdict(adjusted_p: float | None, note: str | None = None) -> str:
    """A difference's standing in words: significant after Holm, or no difference shown (which is not
    evidence of none), or why it was not tested (``note``)."""
    if adjusted_p is None:
        return f"no interval: {note}" if note else "not tested"
    shown = f"Holm p = {adjusted_p:.2g}" if adjusted_p >= 0.001 else "Holm p < 0.001"
    return shown if significant(adjusted_p) else f"{shown}: no difference shown"


def bounds_text(bounds: Sequence[float] | None, signed: bool = False) -> str:
    """``[low, high]`` to three places (signed for differences), or that none is stated."""
    if bounds is None:
        return "[no interval]"
    sign = "+" if signed else ""
    return f"[{bounds[0]:{sign}.3f}, {bounds[1]:{sign}.3f}]"
