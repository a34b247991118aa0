"""Intervals of mIoU by the bootstrap over images, against scipy's own bootstrap on the same data."""

import numpy as np
import pytest
import torch
from scipy.stats import bootstrap as scipy_bootstrap

from embeddings_squeeze.utils import bootstrap
from embeddings_squeeze.utils.iou import confusion_matrices, mean_iou


def per_image_counts(seed: int, images: int = 40, classes: int = 3, noise: float = 0.3) -> torch.Tensor:
    """(images, C, C) counts of noisy predictions of random 16 x 16 label maps."""
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(0, classes, (images, 16, 16), generator=generator)
    flip = torch.rand(images, 16, 16, generator=generator) < noise
    prediction = torch.where(flip, torch.randint(0, classes, target.shape, generator=generator), target)
    return confusion_matrices(prediction, target, classes)


def scipy_interval(statistic, *samples) -> tuple[float, float]:
    """scipy's percentile bootstrap of ``statistic`` over paired image indices."""
    indices = np.arange(len(samples[0]))
    result = scipy_bootstrap(
        (indices,), lambda drawn: statistic(*(sample[drawn] for sample in samples)), vectorized=False,
        n_resamples=4000, method="percentile", random_state=np.random.default_rng(1),
    )  # fmt: skip
    return result.confidence_interval.low, result.confidence_interval.high


def test_miou_interval_agrees_with_scipy():
    counts = per_image_counts(0)
    ours = bootstrap.miou_interval(counts, bootstrap.resample_weights(len(counts), resamples=4000))
    theirs = scipy_interval(lambda drawn: mean_iou(drawn.sum(dim=0)), counts)
    assert ours == pytest.approx(theirs, abs=0.01)  # two Monte Carlo estimates of one interval
    assert ours[0] < mean_iou(counts.sum(dim=0)) < ours[1]


def test_paired_difference_agrees_with_scipy_and_is_narrower_than_unpaired():
    good, worse = per_image_counts(0, noise=0.3), per_image_counts(0, noise=0.35)  # the same images
    weights = bootstrap.resample_weights(len(good), resamples=4000)
    ours = bootstrap.difference_interval(good, worse, weights)
    theirs = scipy_interval(lambda a, b: mean_iou(a.sum(dim=0)) - mean_iou(b.sum(dim=0)), good, worse)
    assert ours == pytest.approx(theirs, abs=0.01)
    unpaired = bootstrap.difference_interval(good, worse[torch.randperm(len(worse))], weights)
    assert ours[1] - ours[0] < unpaired[1] - unpaired[0]  # pairing removes the images' own variance


def test_resamples_are_seeded_and_an_identical_model_is_not_significant():
    counts = per_image_counts(2)
    assert bootstrap.miou_interval(counts) == bootstrap.miou_interval(counts)
    assert bootstrap.difference_interval(counts, counts) == (0.0, 0.0)
    assert not bootstrap.significant((0.0, 0.0)) and bootstrap.significant((0.01, 0.05))
    weights = bootstrap.resample_weights(5, resamples=3)
    assert weights.sum(dim=1).tolist() == [5.0, 5.0, 5.0]  # each resample draws as many images
