"""Confidence intervals for mIoU (and any metric of summed per-image statistics, ``utils/metrics.py``)
by the bootstrap over images.

A split's mIoU comes from its summed per-image confusion counts, so one resample draws N images
with replacement, sums their counts and takes the mIoU of the sum; the 95 % interval is the
2.5th and 97.5th percentiles over ``RESAMPLES`` resamples (the percentile bootstrap). A difference
between two models is resampled *paired*: the same drawn images for both. Resamples come from a
fixed seed, so the same scores always give the same interval. Other metrics pass their ``value``
of summed statistics.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from embeddings_squeeze.utils.iou import class_iou

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95


def resample_weights(images: int, resamples: int = RESAMPLES, seed: int = SEED) -> torch.Tensor:
    """(resamples, images) how often each image is drawn in each resample."""
    generator = torch.Generator().manual_seed(seed)
    drawn = torch.randint(0, images, (resamples, images), generator=generator)
    return torch.zeros(resamples, images, dtype=torch.float64).scatter_add_(
        1, drawn, torch.ones_like(drawn, dtype=torch.float64)
    )


def resampled_miou(confusions: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(N, C, C) per-image counts and (R, N) draw counts -> (R,) mIoU of each resample (classes
    present in neither its ground truth nor its predictions left out, as in ``utils/iou.py``)."""
    return resampled(confusions, weights, lambda summed: class_iou(summed).nanmean(dim=-1))


def resampled(statistics: torch.Tensor, weights: torch.Tensor, value: Callable) -> torch.Tensor:
    """(N, ...) per-image statistics and (R, N) draw counts -> (R,) ``value`` of each resample's sum."""
    images = statistics.shape[0]
    summed = (weights @ statistics.reshape(images, -1).double()).reshape(-1, *statistics.shape[1:])
    return value(summed)


def interval(values: torch.Tensor, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of ``values`` holding ``level`` of them."""
    tail = (1 - level) / 2
    low, high = torch.quantile(values, torch.tensor([tail, 1 - tail], dtype=values.dtype))
    return float(low), float(high)


def miou_interval(
    confusions: torch.Tensor, weights: torch.Tensor | None = None, value: Callable | None = None
) -> tuple[float, float]:
    """95 % interval of a split's mIoU from its (N, C, C) per-image counts (or of another metric's
    ``value`` from its per-image statistics)."""
    weights = resample_weights(len(confusions)) if weights is None else weights
    return interval(_resample(confusions, weights, value))


def difference_interval(
    first: torch.Tensor,
    second: torch.Tensor,
    weights: torch.Tensor | None = None,
    value: Callable | None = None,
) -> tuple[float, float]:
    """95 % interval of mIoU(first) - mIoU(second) (or of another metric's ``value``), resampling the
    same images for both."""
    weights = resample_weights(len(first)) if weights is None else weights
    return interval(_resample(first, weights, value) - _resample(second, weights, value))


def _resample(statistics: torch.Tensor, weights: torch.Tensor, value: Callable | None) -> torch.Tensor:
    return resampled_miou(statistics, weights) if value is None else resampled(statistics, weights, value)


def significant(bounds: tuple[float, float]) -> bool:
    """Whether a difference's interval excludes 0."""
    low, high = bounds
    return low > 0 or high < 0
