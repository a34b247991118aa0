"""Intervals of split-level scores (``utils/intervals.py``) against computations done another way: the
delta method by hand for a ratio, the jackknife, seeds' variance added by hand, Holm's adjustment of a
textbook family; the refusals (too few images, thin classes, no spread) and the caveat (rare classes);
coverage of a known truth."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from embeddings_squeeze.utils import intervals
from embeddings_squeeze.utils.iou import confusion_matrices
from embeddings_squeeze.utils.metrics import IoU, PixelAccuracy


def per_image_counts(seed: int, images: int = 40, classes: int = 3, noise: float = 0.3) -> torch.Tensor:
    """(images, C, C) counts of noisy predictions of random 16 x 16 label maps."""
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(0, classes, (images, 16, 16), generator=generator)
    flip = torch.rand(images, 16, 16, generator=generator) < noise
    prediction = torch.where(flip, torch.randint(0, classes, target.shape, generator=generator), target)
    return confusion_matrices(prediction, target, classes)


def effective_images(contributions: np.ndarray) -> float:
    """How many images carry the variance: (sum d^2)^2 / sum d^4 of the deviations."""
    deviations = contributions - contributions.mean()
    return (deviations**2).sum() ** 2 / (deviations**4).sum()


def test_pixel_accuracy_interval_is_the_ratio_estimators_delta_method_by_hand():
    counts = per_image_counts(0, images=25)
    right = counts.diagonal(dim1=1, dim2=2).sum(dim=1).double().numpy()
    labelled = counts.sum(dim=(1, 2)).double().numpy()
    ratio = right.sum() / labelled.sum()
    # the textbook variance of a ratio of sums: sum of squared residuals right - ratio * labelled
    residuals = right - ratio * labelled
    error = math.sqrt(len(right) / (len(right) - 1) * (residuals**2).sum()) / labelled.sum()
    half = stats.t.ppf(0.975, effective_images(residuals) - 1) * error
    found = intervals.interval([counts], PixelAccuracy())
    assert found.estimate == pytest.approx(ratio)
    assert (found.low, found.high) == pytest.approx((ratio - half, ratio + half), rel=1e-6)


def test_miou_standard_error_matches_the_jackknife():
    counts = per_image_counts(1, images=60)
    metric = IoU()
    leave_one_out = np.array([metric.value(torch.cat([counts[:i], counts[i + 1 :]]).sum(0)[None]).item()
                              for i in range(len(counts))])  # fmt: skip
    jackknife = math.sqrt((len(counts) - 1) * leave_one_out.var())
    found = intervals.interval([counts], metric)
    freedom = effective_images(leave_one_out) - 1  # the jackknife's deviations are the contributions'
    delta = (found.high - found.estimate) / stats.t.ppf(0.975, freedom)
    assert delta == pytest.approx(jackknife, rel=0.03)  # two first-order approximations of one variance


def test_seeds_add_their_own_variance_with_k_minus_one_degrees_of_freedom():
    runs = [per_image_counts(0, noise=noise) for noise in (0.25, 0.3, 0.4)]  # three seeds, the same images
    metric = PixelAccuracy()
    singles = [intervals.interval([run], metric) for run in runs]
    estimates = np.array([single.estimate for single in singles])
    # each image's contribution to the seed mean: the mean of its contributions to each seed's ratio
    right = np.stack([run.diagonal(dim1=1, dim2=2).sum(dim=1).double().numpy() for run in runs])
    labelled = np.stack([run.sum(dim=(1, 2)).double().numpy() for run in runs])
    contributions = ((right - estimates[:, None] * labelled) / labelled.sum(axis=1, keepdims=True)).mean(0)
    images = len(contributions)
    image_variance = images * contributions.var(ddof=1)
    seed_variance = estimates.var(ddof=1) / len(runs)
    half = stats.t.ppf(0.975, len(runs) - 1) * math.sqrt(image_variance + seed_variance)
    found = intervals.interval(runs, metric)
    assert found.estimate == pytest.approx(estimates.mean())
    mean = estimates.mean()
    assert (found.low, found.high) == pytest.approx((mean - half, mean + half), rel=1e-6)
    assert found.high - found.low > max(single.high - single.low for single in singles)


def test_a_paired_difference_is_narrower_than_unpaired_and_tested():
    good, worse = per_image_counts(0, noise=0.3), per_image_counts(0, noise=0.35)  # the same images
    paired = intervals.interval([good], IoU(), [worse])
    unpaired = intervals.interval([good], IoU(), [worse[torch.randperm(len(worse))]])
    assert paired.high - paired.low < unpaired.high - unpaired.low  # pairing removes the images' own variance
    assert paired.estimate == pytest.approx(
        IoU().value(good.sum(0)[None]).item() - IoU().value(worse.sum(0)[None]).item()
    )
    # a t-test and its interval agree: at the level 1 - p, the interval ends at no difference
    dual = intervals.interval([good], IoU(), [worse], level=1 - paired.p_value)
    assert min(abs(dual.low), abs(dual.high)) == pytest.approx(0, abs=1e-6)
    assert intervals.interval([good], IoU()).p_value is None  # a score is not tested against 0


def test_no_interval_for_too_few_images_thin_classes_or_no_spread():
    counts = per_image_counts(2)
    assert intervals.interval([counts[:2]], IoU()).note == "2 images: too few for an interval"
    identical = intervals.interval([counts], IoU(), [counts])
    assert identical.estimate == 0 and not identical.stated and identical.note.startswith("no spread")
    three = per_image_counts(3, classes=3)
    three[:, 2, :] = 0  # class 2 in no ground truth ...
    three[0, 2, 2] = 30  # ... but one
    found = intervals.interval([three], IoU())
    assert not found.stated and found.note.startswith("a class of the mean in the ground truth of 1 image(s)")
    assert intervals.interval([three], PixelAccuracy()).stated  # no classes, no such refusal
    three[1, 2, 2] = 30  # in two images: still too few
    assert intervals.interval([three], IoU()).note.startswith("a class of the mean in the ground truth of 2")
    three[2, 2, 2] = 30  # in three: an interval, with the caveat of its measured coverage
    found = intervals.interval([three], IoU())
    assert found.stated and "covered about 92 % of the truth in simulation" in found.note


def test_holm_adjusts_a_textbook_family():
    # p-values 0.01, 0.04, 0.03 of three tests: 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    assert intervals.holm([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.06, None, 0.06])
    assert intervals.significant(0.03) and not intervals.significant(0.06)
    assert intervals.significant(None) is None
    assert intervals.verdict(0.06) == "Holm p = 0.06: no difference shown"
    assert intervals.verdict(None, "2 images: too few for an interval").startswith("no interval")


def test_a_three_class_interval_covers_a_known_truth():
    """Pixels of class c predicted right with probability sigmoid(logit r_c + d), d an image's
    difficulty ~ N(0, 0.5^2); misses split evenly over the other classes. The population IoU of each
    class is then E[TP] / E[TP + FP + FN] with the mean recall over difficulties; 300 seeded splits of
    30 images."""
    rng = np.random.default_rng(0)
    logits = np.log(np.array([0.7, 0.8, 0.9]) / (1 - np.array([0.7, 0.8, 0.9])))
    share = np.array([0.5, 0.3, 0.2])
    mean_recall = (1 / (1 + np.exp(-(logits[:, None] + rng.normal(0, 0.5, 10**6))))).mean(axis=1)
    missed = share * (1 - mean_recall)
    false_positives = np.array([sum(missed[o] / 2 for o in range(3) if o != c) for c in range(3)])
    truth = np.mean(share * mean_recall / (share + false_positives))
    covered = 0
    for _ in range(300):
        pixels = rng.integers(500, 5000, size=30)
        difficulty = rng.normal(0, 0.5, size=30)
        counts = np.zeros((30, 3, 3))
        for i in range(30):
            per_class = rng.multinomial(pixels[i], share)
            hits = rng.binomial(per_class, 1 / (1 + np.exp(-(logits + difficulty[i]))))
            for c in range(3):
                counts[i, c] = (per_class[c] - hits[c]) / 2
                counts[i, c, c] = hits[c]
        found = intervals.interval([torch.from_numpy(counts)], IoU())
        covered += found.low <= truth <= found.high
    assert 0.92 <= covered / 300 <= 0.98  # nominal 95 %; 300 splits give about +-1.3 points of noise


@settings(max_examples=60, deadline=None)
@given(
    images=st.integers(1, 12),
    classes=st.integers(1, 12),
    seeds=st.integers(1, 3),
    data=st.data(),
)
def test_every_stated_interval_holds_its_estimate(images, classes, seeds, data):
    """Whatever the counts (absent classes, empty images, identical models, one class), an interval
    is either stated around its estimate or withheld with a reason."""
    cells = st.lists(st.integers(0, 30), min_size=classes * classes, max_size=classes * classes)
    shape = (images, classes, classes)
    runs = [torch.tensor([data.draw(cells) for _ in range(images)]).view(shape) for _ in range(seeds)]
    for metric in (IoU(), PixelAccuracy()):
        for baselines in (None, [run.flip(0) for run in runs], runs):
            found = intervals.interval(runs, metric, baselines)
            if found.stated:  # perhaps with a caveat on its coverage
                assert found.low <= found.estimate <= found.high
            else:
                assert found.note
