"""Confidence intervals of split-level scores, of paired differences and of means over seeds.

A score is a metric's ``value`` of per-image statistics summed over the split (``utils/metrics.py``):
mIoU from summed confusion counts, Dice, pixel accuracy, the pooled boundary F. Its interval:

- **classes fixed**: a metric with values per class averages the classes the whole split has (in
  its ground truth or predictions); the interval is for the mean over exactly those classes, the
  estimand the score itself estimates. (Resampling images and re-deciding the classes per resample
  averaged resamples over fewer, easier classes: intervals beside, not around, the estimate.)
- **delta method over images**: the score is a smooth function of sums over images, so its
  sampling variance over images is ``N`` times the variance of each image's linear contribution
  (the directional derivative of the score along that image's statistics, taken numerically);
  paired differences subtract the two models' contributions image by image.
- **seeds**: a mean over training seeds (each model scored on the same images, each difference
  against its own seed's baseline) adds the seeds' own variance, ``var(per-seed scores) / K``, to
  the images' variance of the mean's contributions; degrees of freedom by Welch-Satterthwaite.
  One seed: the interval covers the test images only, for that training run.
- **Student t** with those degrees of freedom, so an interval always holds its estimate.

No interval is stated (``Interval.note`` says why) for fewer than ``MIN_IMAGES`` images, for a split
where a class of the mean is in the ground truth of fewer than ``MIN_CLASS_IMAGES`` images (its
variance cannot be estimated), or where every image contributes alike (zero spread). The measured
coverage of this method and of the alternatives is in ``benchmarks/bench_coverage.py`` and
``benchmarks/RESULTS.md``.

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
MIN_CLASS_IMAGES = 2  # a class of the mean in fewer ground truths than this: no interval
_STEP = 1e-3  # relative step of the numerical derivative along one image's statistics
_CHUNK_VALUES = 2**24  # statistics values evaluated at once in the derivative (memory bound)


@dataclass(frozen=True)
class Interval:
    """An estimate, its ``LEVEL`` interval (``low``/``high`` None when none is stated, ``note``
    says why) and, for differences, the two-sided p-value against no difference."""

    estimate: float
    low: float | None = None
    high: float | None = None
    p_value: float | None = None
    note: str | None = None

    @property
    def stated(self) -> bool:
        return self.low is not None

    def bounds(self) -> list[float] | None:
        return [self.low, self.high] if self.stated else None


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
    estimates, contributions, thin = [], [], set()
    for index, run in enumerate(runs):
        estimate, contribution = _linearised(run, metric)
        thin |= _thin_classes(run, metric)
        if baselines is not None:
            paired, paired_contribution = _linearised(baselines[index], metric)
            estimate, contribution = estimate - paired, contribution - paired_contribution
            thin |= _thin_classes(baselines[index], metric)
        estimates.append(estimate)
        contributions.append(contribution)
    seeds = len(runs)
    estimate = sum(estimates) / seeds
    if not math.isfinite(estimate):
        return Interval(estimate, note="no score")
    if images < MIN_IMAGES:
        return Interval(estimate, note=f"{images} image{'s' * (images > 1)}: too few for an interval")
    if thin:
        return Interval(
            estimate,
            note=f"{len(thin)} class{'es' * (len(thin) > 1)} in the ground truth of fewer than "
            f"{MIN_CLASS_IMAGES} images: too few for an interval",
        )
    mean_contribution = torch.stack(contributions).mean(dim=0)
    image_variance = images * float(mean_contribution.var(correction=1))
    seed_variance = 0.0
    if seeds > 1:
        seed_variance = float(torch.tensor(estimates, dtype=torch.float64).var(correction=1)) / seeds
    variance = image_variance + seed_variance
    if not variance > 1e-24:  # every image (and seed) contributes alike: a point, not an interval
        return Interval(estimate, note="no spread over images: no interval")
    terms = image_variance**2 / (images - 1) + (seed_variance**2 / (seeds - 1) if seeds > 1 else 0.0)
    freedom = variance**2 / terms
    error = math.sqrt(variance)
    half = float(stats.t.ppf(0.5 + level / 2, freedom)) * error
    p_value = float(2 * stats.t.sf(abs(estimate) / error, freedom)) if baselines is not None else None
    return Interval(estimate, estimate - half, estimate + half, p_value)


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


def _thin_classes(run: torch.Tensor, metric) -> set[int]:
    """Classes of the metric's mean present in the ground truth of fewer than ``MIN_CLASS_IMAGES``
    images (prediction-only classes included); none for metrics without class values."""
    summed = run.sum(dim=0)
    classes = metric.class_values(summed[None])
    if classes is None:
        return set()
    present = ~torch.isnan(classes[0])
    in_truth = (metric.truth_counts(run) > 0).sum(dim=0)
    return set(torch.nonzero(present & (in_truth < MIN_CLASS_IMAGES)).flatten().tolist())


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
    evidence of none), or why it was not tested."""
    if note is not None:
        return f"no interval: {note}"
    if adjusted_p is None:
        return "not tested"
    shown = f"Holm p = {adjusted_p:.2g}" if adjusted_p >= 0.001 else "Holm p < 0.001"
    return shown if significant(adjusted_p) else f"{shown}: no difference shown"


def bounds_text(bounds: Sequence[float] | None, signed: bool = False) -> str:
    """``[low, high]`` to three places (signed for differences), or that none is stated."""
    if bounds is None:
        return "[no interval]"
    sign = "+" if signed else ""
    return f"[{bounds[0]:{sign}.3f}, {bounds[1]:{sign}.3f}]"
