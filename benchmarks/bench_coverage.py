"""Coverage of confidence-interval methods for segmentation scores, on simulated splits with a known truth.

    python benchmarks/bench_coverage.py                           # every cell, 500 splits each
    python benchmarks/bench_coverage.py --quick                   # 60 splits per cell: a smoke run
    python benchmarks/bench_coverage.py --cells voc:50,ade:500:5 --markdown /tmp/coverage.md

A split's score is a function of per-image statistics summed over its N test images (mIoU from summed
counts, averaged over the classes the split has; pixel accuracy; the paired difference squeezed minus
baseline; with K training seeds the mean over seeds, all on the same images). Real data cannot say
whether a 95 % interval covers 95 % of the time, because the truth is unknown; here the data come
from a simulator whose population values are known, so every interval method is scored against them.

What is simulated, per class configuration (``pets``: 3 classes in every image; ``voc``: background
plus 20 long-tailed object classes; ``ade``: 150 long-tailed classes, tail classes in well under 1 %
of the images), each a fixed population drawn once from ``POPULATION_SEED``:

- an image holds each class independently with the class's frequency (topped up to a minimum number
  of classes per image), 50k-250k labelled pixels shared among its classes by log-normal weights;
- hard images and hard objects are hard for every model: a logit difficulty per image and per
  (image, class), shared by both models and all seeds;
- a model predicts a class's pixels right with probability ``sigmoid(skill + seed effect + shared
  difficulty + the run's own noise)`` (TP ~ Binomial); the missed pixels go to the image's other
  classes in proportion to their area (mostly background where there is one); now and then a run
  paints a blob of a class absent from the image, so classes that only the predictions hold occur
  as in real data;
- the squeezed model is the baseline with a class-dependent loss of skill and its own noise;
- a training seed shifts each model's skill by a random effect (one shared by all classes plus one
  per class; the squeezed model's partly follows its baseline's). A bank of ``BANK_SEEDS`` seeds per
  configuration stands for "all the seeds one could train"; a K-seed study draws K of them.

The truth: per bank seed and model, the population per-class IoU ``E[TP] / E[TP + FP + FN]`` over the
image distribution and the population pixel accuracy, by Monte Carlo over ``TRUTH_IMAGES`` images
(expected TP in place of the binomial draw; the images and run draws are common to all seeds and both
models). A split's estimand is the mean of that IoU over the classes its estimate averages (its
ground truth's or that model's predictions'): for one seed, the run's own (what an interval over
images can cover) and the mean over the bank (what a claim about the method needs); for K >= 2 seeds,
the mean over the bank with the union of the sample seeds' class sets.

Candidates (nominal 95 %): A, the percentile bootstrap the project used, each resample re-deciding its
classes, K-seed bounds averaged over the seeds' own intervals; B, the percentile bootstrap with the
split's classes fixed (a class missing from a resample keeps its full-split value), of the seed mean
with the same images for every seed; C, BCa with the classes fixed as in B; D, the shipped
``utils/intervals.interval`` (delta method, t) with its gates and without them; E (K >= 2), a two-level
percentile bootstrap: seeds, then images (the same images for every drawn seed).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from scipy import optimize, special
from scipy.stats import norm

from embeddings_squeeze.data.labels import IGNORE_INDEX
from embeddings_squeeze.utils import intervals
from embeddings_squeeze.utils.iou import confusion_matrices
from embeddings_squeeze.utils.metrics import IoU, PixelAccuracy

LEVEL = 0.95
RESAMPLES = 2000
SPLITS = 500
QUICK_SPLITS = 60
QUICK_TRUTH_IMAGES = 40_000
POPULATION_SEED = 20_240_611  # the three populations: the same in every run, whatever --seed
BANK_SEEDS = 100
TRUTH_IMAGES = 1_000_000
TRUTH_CHUNK = 20_000
CELL_IMAGES = (12, 50, 500)
CELL_SEEDS = (1, 2, 5)

IMAGE_PIXELS = (50_000, 250_000)  # labelled pixels per image: log-uniform between these
MIN_CLASS_PIXELS = 64  # a class in an image's ground truth covers at least this many pixels
IMAGE_DIFFICULTY_SD = 0.5  # logit, shared by every model and seed
OBJECT_DIFFICULTY_SD = 0.6  # logit, per (image, class), shared by every model and seed
RUN_IMAGE_NOISE_SD = 0.2  # logit, a run's own, per image
RUN_OBJECT_NOISE_SD = 0.3  # logit, a run's own, per (image, class)
SEED_SHARED_SD = 0.12  # logit, a seed's effect on all of a model's classes at once
SEED_CLASS_SD = 0.2  # logit, a seed's effect per class
SEED_CORRELATION = 0.5  # of the squeezed model's seed effects with its baseline's
BLOB_SHARE_SD = 0.8  # log-normal spread of a blob's size around its class's typical size

STATISTICS = {
    "miou": "mIoU (squeezed model)",
    "pixel_accuracy": "pixel accuracy (squeezed model)",
    "delta_miou": "paired mIoU difference (squeezed - baseline)",
}
CANDIDATES = {
    "A": "percentile bootstrap, classes re-decided per resample; K seeds: per-seed bounds averaged",
    "B": "percentile bootstrap of the seed mean, classes fixed to the split's",
    "C": "BCa bootstrap of the seed mean, classes fixed",
    "D": "shipped intervals.interval (delta method, t) as gated",
    "D0": "the same without the class gate (MIN_CLASS_IMAGES = 0)",
    "E": "two-level percentile bootstrap: seeds, then images (K >= 2)",
}
SHIPPED_GATE = intervals.MIN_CLASS_IMAGES
GATES = (0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20)
FEWEST_BINS = ((0, 0, "0 (prediction-only)"), (1, 1, "1"), (2, 2, "2"), (3, 4, "3-4"), (5, None, "5+"))
TARGET_COVERAGE = 0.93
MIN_STATED_SHARE = 0.2  # a cell counts for the gate choice when at least this share of its splits is stated
NO_THIN_CLASSES = (
    10  # a cell whose every class of every split is in this many ground truths has no thin class
)


# ---------------------------------------------------------------------------------------------------
# Metrics on reduced statistics


class ReducedIoU:
    """IoU from (3, C) per-image statistics [TP, ground-truth pixels, predicted pixels] per class: the
    package's ``IoU`` of (C, C) confusion counts reads only these, at 1/C of the size (proven by
    ``check_reductions``)."""

    def class_values(self, summed: torch.Tensor) -> torch.Tensor:
        true_positive, truth, predicted = summed.double().unbind(dim=-2)
        union = truth + predicted - true_positive
        return torch.where(union > 0, true_positive / union, torch.nan)

    def value(self, summed: torch.Tensor) -> torch.Tensor:
        return self.class_values(summed).nanmean(dim=-1)

    def truth_counts(self, statistics: torch.Tensor) -> torch.Tensor:
        return statistics[:, 1]


class ReducedPixelAccuracy:
    """Pixel accuracy from (2,) per-image statistics [correct pixels, labelled pixels]; no values per
    class, so ``intervals`` never asks it for ``truth_counts``."""

    def class_values(self, summed: torch.Tensor) -> None:
        return None

    def value(self, summed: torch.Tensor) -> torch.Tensor:
        correct, labelled = summed.double().unbind(dim=-1)
        return torch.where(labelled > 0, correct / labelled.clamp(min=1), torch.nan)


def reduced_iou_statistics(confusions: torch.Tensor) -> torch.Tensor:
    """(N, C, C) confusion counts (rows: ground truth) -> (N, 3, C) [TP, ground truth, predicted]."""
    return torch.stack([confusions.diagonal(dim1=-2, dim2=-1), confusions.sum(-1), confusions.sum(-2)], 1)


def accuracy_statistics(iou_statistics: torch.Tensor) -> torch.Tensor:
    """(N, 3, C) reduced IoU statistics -> (N, 2) [correct, labelled] pixels."""
    return torch.stack([iou_statistics[:, 0].sum(-1), iou_statistics[:, 1].sum(-1)], -1)


@contextmanager
def class_gate_off():
    """``intervals.interval`` without its class gate, in this process only."""
    shipped = intervals.MIN_CLASS_IMAGES
    intervals.MIN_CLASS_IMAGES = 0
    try:
        yield
    finally:
        intervals.MIN_CLASS_IMAGES = shipped


def check_reductions(rng: np.random.Generator) -> None:
    """The reduced metrics give exactly the package's IoU and pixel accuracy of the equivalent
    confusion matrices, and ``intervals.interval`` the same intervals, on small random label maps with
    ignored pixels, a prediction-only class and a class in neither map."""
    classes, shape = 6, (10, 16, 16)
    target = torch.from_numpy(rng.integers(0, classes - 2, shape))  # class 4: predictions only; 5: none
    noise = torch.from_numpy(rng.integers(0, classes - 1, shape))
    prediction = torch.where(torch.from_numpy(rng.random(shape) < 0.7), target, noise)
    target[torch.from_numpy(rng.random(shape) < 0.05)] = IGNORE_INDEX
    confusions = confusion_matrices(prediction, target, classes)
    reduced = reduced_iou_statistics(confusions)
    assert torch.equal(IoU().value(confusions.sum(0)), ReducedIoU().value(reduced.sum(0)))
    assert torch.equal(
        PixelAccuracy().value(confusions.sum(0)),
        ReducedPixelAccuracy().value(accuracy_statistics(reduced).sum(0)),
    )
    with class_gate_off():
        pairs = [
            (intervals.interval([confusions], IoU()), intervals.interval([reduced], ReducedIoU())),
            (
                intervals.interval([confusions], PixelAccuracy()),
                intervals.interval([accuracy_statistics(reduced)], ReducedPixelAccuracy()),
            ),
            (
                intervals.interval([confusions], IoU(), [confusions.flip(0)]),
                intervals.interval([reduced], ReducedIoU(), [reduced.flip(0)]),
            ),
        ]
    for package, ours in pairs:
        assert ours.stated and np.allclose([package.low, package.high], [ours.low, ours.high], atol=1e-9)


# ---------------------------------------------------------------------------------------------------
# The simulator


@dataclass(frozen=True)
class Population:
    """A class configuration, drawn once: how often and how large each class is in an image, the two
    models' skills and the bank of training seeds' effects on them. Models: 0 baseline, 1 squeezed."""

    name: str
    frequency: np.ndarray  # (C,) probability that an image's ground truth holds the class
    area_log_weight: np.ndarray  # (C,) mean log-weight of a present class's share of the image
    area_log_sd: float
    min_classes: int  # an image holds at least this many classes (so misses have somewhere to go)
    blob_rate: float  # per image and run: the chance of a blob of a class absent from the image
    blob_class_odds: np.ndarray  # (C,) which class a blob takes (one present in the image: no blob)
    skill: np.ndarray  # (2, C) logit recall of each model
    seed_effect: np.ndarray  # (2, BANK_SEEDS, C) each bank seed's logit change to each model's skill

    @property
    def classes(self) -> int:
        return len(self.frequency)

    def typical_share(self) -> np.ndarray:
        """(C,) about the median share of an image a class covers where it is present: its weight
        against the mean weight of the other classes an image holds."""
        mean_weight = self.frequency * np.exp(self.area_log_weight + self.area_log_sd**2 / 2)
        others = mean_weight.sum() - mean_weight
        return np.exp(self.area_log_weight) / (np.exp(self.area_log_weight) + others)

    def run_skill(self, model: int, seed: int) -> np.ndarray:
        """(C + 1,) logit skill of one model trained with one bank seed (the last entry: padding)."""
        return np.append(self.skill[model] + self.seed_effect[model, seed], 0.0)


def zipf_frequencies(classes: int, total: float, rarest: float, offset: float, cap: float) -> np.ndarray:
    """Zipf-Mandelbrot frequencies ``min(cap, a (rank + offset)^-s)`` with the given sum (classes per
    image) and rarest class."""

    def frequencies(exponent: float) -> np.ndarray:
        ranks = np.arange(1, classes + 1)
        return np.minimum(cap, rarest * ((ranks + offset) / (classes + offset)) ** -exponent)

    exponent = optimize.brentq(lambda s: frequencies(s).sum() - total, 1e-3, 20.0)
    return frequencies(exponent)


def seed_bank(rng: np.random.Generator, classes: int) -> np.ndarray:
    """(2, BANK_SEEDS, C) logit effects of the bank's seeds: a shared and a per-class part; the
    squeezed model's correlate with its baseline's by ``SEED_CORRELATION``."""
    own = SEED_SHARED_SD * rng.standard_normal((2, BANK_SEEDS, 1)) + SEED_CLASS_SD * rng.standard_normal(
        (2, BANK_SEEDS, classes)
    )
    squeezed = SEED_CORRELATION * own[0] + np.sqrt(1 - SEED_CORRELATION**2) * own[1]
    return np.stack([own[0], squeezed])


def class_degradation(rng: np.random.Generator, classes: int, typical: float) -> np.ndarray:
    """(C,) logit skill the squeezed model loses per class: log-normal, so some classes lose much more."""
    return typical * np.exp(0.6 * rng.standard_normal(classes))


def pets_population() -> Population:
    """Oxford pets trimaps: background, pet, border, all in every image at about 60/30/10 % of it."""
    rng = np.random.default_rng([POPULATION_SEED, 0])
    skill = np.array([2.6, 1.9, 0.3])
    squeezed = skill - class_degradation(rng, 3, 0.2)
    return Population(
        name="pets",
        frequency=np.ones(3),
        area_log_weight=np.log([0.6, 0.3, 0.1]),
        area_log_sd=0.35,
        min_classes=3,
        blob_rate=0.0,  # every class is in every image: none can be painted where it is absent
        blob_class_odds=np.full(3, 1 / 3),
        skill=np.stack([skill, squeezed]),
        seed_effect=seed_bank(rng, 3),
    )


def voc_population() -> Population:
    """Pascal VOC: background in every image, 20 object classes with Zipf-like frequencies, about 1.5
    of them per image (at least one), the rarest in about 1 % of images; background is most of it."""
    rng = np.random.default_rng([POPULATION_SEED, 1])
    objects = zipf_frequencies(20, total=1.33, rarest=0.01, offset=0.0, cap=0.95)
    frequency = np.append(1.0, objects)
    area = np.append(1.2, np.zeros(20))
    odds = np.append(0.0, np.sqrt(objects))
    skill = np.append(2.8, rng.normal(1.5, 0.5, 20))
    squeezed = skill - class_degradation(rng, 21, 0.25)
    return Population(
        name="voc",
        frequency=frequency,
        area_log_weight=area,
        area_log_sd=0.9,
        min_classes=2,
        blob_rate=0.05,
        blob_class_odds=odds / odds.sum(),
        skill=np.stack([skill, squeezed]),
        seed_effect=seed_bank(rng, 21),
    )


def ade_population() -> Population:
    """ADE20K (SceneParse150): 150 classes with Zipf-like frequencies, about 12 per image, the rarest in
    0.2 % of images; frequent classes are larger and better recognised."""
    rng = np.random.default_rng([POPULATION_SEED, 2])
    frequency = zipf_frequencies(150, total=12.0, rarest=0.002, offset=10.0, cap=0.9)
    commonness = np.log10(frequency / frequency.min())  # 0 for the rarest class, about 2.7 for the commonest
    area = 0.8 * np.log(frequency / frequency.max())
    odds = np.sqrt(frequency)
    skill = 0.75 * commonness + rng.normal(0.1, 0.4, 150)
    squeezed = skill - class_degradation(rng, 150, 0.3)
    return Population(
        name="ade",
        frequency=frequency,
        area_log_weight=area,
        area_log_sd=1.0,
        min_classes=2,
        blob_rate=0.08,
        blob_class_odds=odds / odds.sum(),
        skill=np.stack([skill, squeezed]),
        seed_effect=seed_bank(rng, 150),
    )


POPULATIONS = {"pets": pets_population, "voc": voc_population, "ade": ade_population}


@dataclass(frozen=True)
class Images:
    """N images, each a row of slots: the classes its ground truth holds (padding slots: class C,
    0 pixels), their pixels, and the logit difficulty every model and seed shares."""

    classes: np.ndarray  # (N, P) int
    pixels: np.ndarray  # (N, P) float
    difficulty: np.ndarray  # (N, P)

    @property
    def labelled(self) -> np.ndarray:
        return self.pixels.sum(axis=1)


def draw_presence(population: Population, images: int, rng: np.random.Generator) -> np.ndarray:
    """(N, C) which classes each image's ground truth holds: independent draws by frequency, topped up
    by frequency-weighted draws to ``min_classes``."""
    present = rng.random((images, population.classes)) < population.frequency
    odds = population.frequency / population.frequency.sum()
    while (short := np.flatnonzero(present.sum(axis=1) < population.min_classes)).size:
        present[short, rng.choice(population.classes, short.size, p=odds)] = True
    return present


def draw_images(population: Population, images: int, rng: np.random.Generator) -> Images:
    """N images of the population, vectorised over images."""
    present = draw_presence(population, images, rng)
    slots = present.sum(axis=1).max()
    order = np.argsort(~present, axis=1, kind="stable")[:, :slots]
    filled = np.take_along_axis(present, order, axis=1)
    classes = np.where(filled, order, population.classes)
    log_weight = np.append(population.area_log_weight, 0.0)[classes]
    weight = np.exp(log_weight + population.area_log_sd * rng.standard_normal(classes.shape)) * filled
    size = np.exp(rng.uniform(*np.log(IMAGE_PIXELS), (images, 1)))
    pixels = np.where(
        filled, np.maximum(MIN_CLASS_PIXELS, np.rint(size * weight / weight.sum(1, keepdims=True))), 0
    )
    difficulty = (
        IMAGE_DIFFICULTY_SD * rng.standard_normal((images, 1))
        + OBJECT_DIFFICULTY_SD * rng.standard_normal(classes.shape)
    ) * filled
    return Images(classes, pixels.astype(float), difficulty)


@dataclass(frozen=True)
class RunDraws:
    """What is a run's own (one model trained with one seed) on N images: its logit noise per slot,
    its blob's class (C: none) and the blob's share of the image (about that of a real object of the
    class: a hallucinated object, not a wash over the image)."""

    noise: np.ndarray  # (N, P)
    blob_class: np.ndarray  # (N,)
    blob_share: np.ndarray  # (N,)


def draw_run(population: Population, images: Images, rng: np.random.Generator) -> RunDraws:
    """One run's own draws on ``images``: a blob lands with probability ``blob_rate`` on a class drawn
    by ``blob_class_odds``, and not at all when that class is in the image."""
    count, slots = images.classes.shape
    noise = RUN_IMAGE_NOISE_SD * rng.standard_normal((count, 1)) + RUN_OBJECT_NOISE_SD * rng.standard_normal(
        (count, slots)
    )
    blob = rng.random(count) < population.blob_rate
    blob_class = np.where(
        blob, rng.choice(population.classes, count, p=population.blob_class_odds), population.classes
    )
    blob_class[(images.classes == blob_class[:, None]).any(axis=1)] = population.classes
    typical = np.append(population.typical_share(), 0.0)[blob_class]
    blob_share = typical * np.exp(BLOB_SHARE_SD * rng.standard_normal(count))
    return RunDraws(noise, blob_class, blob_share)


@dataclass(frozen=True)
class RunCounts:
    """One run's counts per slot, and the blob each image got (class C: none)."""

    true_positive: np.ndarray  # (N, P)
    predicted: np.ndarray  # (N, P)
    blob_class: np.ndarray  # (N,)
    blob_pixels: np.ndarray  # (N,)


def run_counts(
    images: Images, skill: np.ndarray, draws: RunDraws, rng: np.random.Generator | None
) -> RunCounts:
    """A run's predictions: TP ~ Binomial(pixels, recall) (its expectation when ``rng`` is None, for
    the truth); missed pixels spread over the image's other classes by area; a blob's pixels taken from
    the image's largest class."""
    recall = special.expit(skill[images.classes] + images.difficulty + draws.noise)
    if rng is None:
        true_positive = images.pixels * recall
    else:
        true_positive = rng.binomial(images.pixels.astype(np.int64), recall).astype(float)
    missed = images.pixels - true_positive
    others = images.labelled[:, None] - images.pixels
    share = np.divide(missed, others, out=np.zeros_like(missed), where=others > 0)
    predicted = true_positive + images.pixels * (share.sum(axis=1, keepdims=True) - share)
    rows, largest = np.arange(len(missed)), images.pixels.argmax(axis=1)
    has_blob = draws.blob_class < len(skill) - 1  # class C (the padding entry of skill): no blob
    blob_pixels = np.where(
        has_blob, np.minimum(np.rint(draws.blob_share * images.labelled), true_positive[rows, largest]), 0.0
    )
    true_positive[rows, largest] -= blob_pixels
    predicted[rows, largest] -= blob_pixels
    return RunCounts(true_positive, predicted, draws.blob_class, blob_pixels)


def image_statistics(images: Images, counts: RunCounts, classes: int) -> torch.Tensor:
    """(N, 3, C) per-image [TP, ground truth, predicted] pixels per class."""
    dense = np.zeros((len(images.classes), 3, classes + 1))
    for row, values in enumerate((counts.true_positive, images.pixels, counts.predicted)):
        np.put_along_axis(dense[:, row], images.classes, values, axis=1)
    dense[np.arange(len(dense)), 2, counts.blob_class] += counts.blob_pixels
    return torch.from_numpy(np.ascontiguousarray(dense[:, :, :classes]))


def class_sums(images: Images, counts: RunCounts, classes: int) -> np.ndarray:
    """(3, C) [TP, ground truth, predicted] pixels per class summed over the images."""
    flat = images.classes.ravel()
    sums = np.stack(
        [
            np.bincount(flat, weights=values.ravel(), minlength=classes + 1)
            for values in (counts.true_positive, images.pixels, counts.predicted)
        ]
    )
    sums[2] += np.bincount(counts.blob_class, weights=counts.blob_pixels, minlength=classes + 1)
    return sums[:, :classes]


# ---------------------------------------------------------------------------------------------------
# The truth


@dataclass(frozen=True)
class Truth:
    """Population values per model (0 baseline, 1 squeezed) and bank seed, with the Monte Carlo error of
    the all-class mIoU and its difference (half the difference between the two halves of the images)."""

    class_iou: np.ndarray  # (2, BANK_SEEDS, C)
    pixel_accuracy: np.ndarray  # (2, BANK_SEEDS)
    miou_error: float  # root mean square over seeds and models
    delta_error: float  # root mean square over seeds

    def miou(self, model: int, seeds, classes: np.ndarray) -> float:
        """Mean over ``seeds`` of the population IoU averaged over ``classes`` (a (C,) mask)."""
        return float(self.class_iou[model][seeds][..., classes].mean())


def iou_of_sums(sums: np.ndarray) -> np.ndarray:
    true_positive, truth, predicted = np.moveaxis(sums, -2, 0)
    return true_positive / (truth + predicted - true_positive)


def population_truth(population: Population, images: int, rng: np.random.Generator) -> Truth:
    """Monte Carlo over ``images`` images in chunks; each chunk's images and run draws serve every
    bank seed and both models (common random numbers), with expected TP in place of the binomial."""
    sums = np.zeros((2, 2, BANK_SEEDS, 3, population.classes))  # half, model, seed
    for chunk in range(max(2, images // TRUTH_CHUNK)):
        drawn = draw_images(population, min(TRUTH_CHUNK, images // 2), rng)
        draws = draw_run(population, drawn, rng)
        for model in range(2):
            for seed in range(BANK_SEEDS):
                counts = run_counts(drawn, population.run_skill(model, seed), draws, None)
                sums[chunk % 2, model, seed] += class_sums(drawn, counts, population.classes)
    halves = iou_of_sums(sums).mean(axis=-1)  # (half, model, seed) all-class mIoU
    half_delta = halves[:, 1] - halves[:, 0]
    total = sums.sum(axis=0)
    return Truth(
        iou_of_sums(total),
        total[:, :, 0].sum(-1) / total[:, :, 1].sum(-1),
        float(np.sqrt(np.mean(((halves[0] - halves[1]) / 2) ** 2))),
        float(np.sqrt(np.mean(((half_delta[0] - half_delta[1]) / 2) ** 2))),
    )


# ---------------------------------------------------------------------------------------------------
# One simulated study and its intervals


@dataclass(frozen=True)
class Replicates:
    """One statistic of one split, seed by seed: full-split estimates (K,), bootstrap replicates with the
    classes re-decided per resample (K, R) and with the split's classes fixed (K, R), and the
    leave-one-image-out values with the classes fixed (K, N)."""

    estimate: np.ndarray
    redecided: np.ndarray
    fixed: np.ndarray
    jackknife: np.ndarray

    def __sub__(self, other: Replicates) -> Replicates:
        return Replicates(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    @staticmethod
    def stacked(per_seed: list[Replicates]) -> Replicates:
        return Replicates(*(np.stack([getattr(r, f.name) for r in per_seed]) for f in fields(Replicates)))


def resample_counts(images: int, resamples: int, generator: torch.Generator) -> torch.Tensor:
    """(R, N) how often each image is drawn in each resample, as the project's former
    ``utils/bootstrap.py`` drew them (from a generator per split here, not one fixed seed)."""
    drawn = torch.randint(0, images, (resamples, images), generator=generator)
    return torch.zeros(resamples, images, dtype=torch.float64).scatter_add_(
        1, drawn, torch.ones(resamples, images, dtype=torch.float64)
    )


def fixed_class_mean(class_values: torch.Tensor, full: torch.Tensor) -> np.ndarray:
    """Mean over the split's classes, a class in neither map of a resample keeping its full-split value."""
    return torch.where(torch.isnan(class_values), full, class_values).mean(dim=-1).numpy()


def pixel_accuracy_of(sums: torch.Tensor) -> np.ndarray:
    return (sums[..., 0, :].sum(-1) / sums[..., 1, :].sum(-1)).numpy()


def run_replicates(statistics: torch.Tensor, weights: torch.Tensor) -> dict[str, Replicates]:
    """One run's mIoU and pixel accuracy replicates (no seed axis yet) from its (N, 3, C) statistics
    and the split's (R, N) resample counts."""
    in_split = statistics[:, 1:].sum(dim=(0, 1)) > 0
    kept = statistics[:, :, in_split]
    total = kept.sum(dim=0)
    resampled = (weights @ kept.reshape(len(kept), -1)).reshape(-1, *total.shape)
    left_out = total - kept
    metric = ReducedIoU()
    full = metric.class_values(total)
    resampled_values = metric.class_values(resampled)
    accuracy = pixel_accuracy_of(resampled)
    return {
        "miou": Replicates(
            full.mean().numpy(),
            resampled_values.nanmean(-1).numpy(),
            fixed_class_mean(resampled_values, full),
            fixed_class_mean(metric.class_values(left_out), full),
        ),
        "pixel_accuracy": Replicates(
            pixel_accuracy_of(total), accuracy, accuracy, pixel_accuracy_of(left_out)
        ),
    }


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> np.ndarray:
    """(..., 2) the percentile interval over the last axis."""
    tail = (1 - level) / 2
    return np.moveaxis(np.quantile(values, [tail, 1 - tail], axis=-1), 0, -1)


def bca_interval(
    replicates: np.ndarray, estimate: float, jackknife: np.ndarray, level: float = LEVEL
) -> np.ndarray:
    """Efron's BCa interval: bias correction from the replicates' share below the estimate (clipped to
    half a replicate from 0 and 1, where scipy would give NaN), acceleration from the jackknife."""
    count = len(replicates)
    below = (np.sum(replicates < estimate) + np.sum(replicates <= estimate)) / (2 * count)
    bias = norm.ppf(np.clip(below, 0.5 / count, 1 - 0.5 / count))
    spread = jackknife.mean() - jackknife
    scale = np.sum(spread**2) ** 1.5
    acceleration = np.sum(spread**3) / (6 * scale) if scale > 0 else 0.0
    z = norm.ppf([(1 - level) / 2, (1 + level) / 2])
    adjusted = norm.cdf(bias + (bias + z) / (1 - acceleration * (bias + z)))
    return np.quantile(replicates, adjusted)


def bootstrap_intervals(replicates: Replicates, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Candidates A, B, C and (K >= 2) E from one statistic's replicates."""
    seeds, resamples = replicates.fixed.shape
    seed_mean = replicates.fixed.mean(axis=0)
    found = {
        "A": percentile_interval(replicates.redecided).mean(axis=0),
        "B": percentile_interval(seed_mean),
        "C": bca_interval(seed_mean, replicates.estimate.mean(), replicates.jackknife.mean(axis=0)),
    }
    if seeds > 1:
        drawn_seeds = rng.integers(0, seeds, (resamples, seeds))
        found["E"] = percentile_interval(replicates.fixed[drawn_seeds, np.arange(resamples)[:, None]].mean(1))
    return found


def class_set(statistics: torch.Tensor) -> np.ndarray:
    """(C,) the classes a run's mean averages: in the split's ground truth or the run's predictions."""
    return (statistics[:, 1:].sum(dim=(0, 1)) > 0).numpy()


def fewest_truth_images(runs: list[torch.Tensor]) -> int:
    """The fewest ground truths any class of any run's mean is in (0: a prediction-only class), as
    ``intervals`` counts them for its gate."""
    return min(int((run[:, 1] > 0).sum(0)[torch.from_numpy(class_set(run))].min()) for run in runs)


def shipped_intervals(squeezed: list[torch.Tensor], baseline: list[torch.Tensor]) -> dict:
    """Candidate D without its class gate, per statistic: (bounds, NaN when not stated; the fewest
    ground truths of a class of its mean; the estimate)."""
    accuracy = [accuracy_statistics(run) for run in squeezed]
    with class_gate_off():
        found = {
            "miou": intervals.interval(squeezed, ReducedIoU()),
            "pixel_accuracy": intervals.interval(accuracy, ReducedPixelAccuracy()),
            "delta_miou": intervals.interval(squeezed, ReducedIoU(), baseline),
        }
    fewest = {
        "miou": fewest_truth_images(squeezed),
        "pixel_accuracy": sys.maxsize,
        "delta_miou": fewest_truth_images(squeezed + baseline),
    }
    return {
        name: (
            np.array([i.low, i.high] if i.stated else [np.nan, np.nan], dtype=float),
            fewest[name],
            i.estimate,
        )
        for name, i in found.items()
    }


@dataclass(frozen=True)
class Study:
    """One simulated K-seed study on one split: both models' per-image statistics per seed."""

    bank_seeds: np.ndarray  # (K,)
    runs: list[list[torch.Tensor]]  # [model][seed] (N, 3, C)


def simulate_study(population: Population, images: int, seeds: int, rng: np.random.Generator) -> Study:
    """K distinct bank seeds, N images, and each (model, seed) run's own draws on those same images."""
    bank_seeds = rng.choice(BANK_SEEDS, seeds, replace=False)
    drawn = draw_images(population, images, rng)
    runs = [
        [
            image_statistics(
                drawn,
                run_counts(drawn, population.run_skill(model, seed), draw_run(population, drawn, rng), rng),
                population.classes,
            )
            for seed in bank_seeds
        ]
        for model in range(2)
    ]
    return Study(bank_seeds, runs)


def study_targets(study: Study, truth: Truth) -> dict[str, tuple[float, float]]:
    """Per statistic: (the run's own truth, NaN for K >= 2; the mean over the bank of seeds) over the
    classes the estimate averages (K >= 2: the union of the seeds' class sets)."""
    sets = [np.logical_or.reduce([class_set(run) for run in model_runs]) for model_runs in study.runs]
    everyone = slice(None)
    one_seed = len(study.bank_seeds) == 1
    seed = study.bank_seeds[0]

    def miou(model: int, seeds) -> float:
        return truth.miou(model, seeds, sets[model])

    run = {
        "miou": miou(1, seed),
        "pixel_accuracy": float(truth.pixel_accuracy[1, seed]),
        "delta_miou": miou(1, seed) - miou(0, seed),
    }
    bank = {
        "miou": miou(1, everyone),
        "pixel_accuracy": float(truth.pixel_accuracy[1].mean()),
        "delta_miou": miou(1, everyone) - miou(0, everyone),
    }
    return {name: (run[name] if one_seed else np.nan, bank[name]) for name in STATISTICS}


def study_intervals(study: Study, resamples: int, rng: np.random.Generator) -> dict[str, dict]:
    """Per statistic: the estimate, every candidate's bounds and the fewest ground truths of a class of
    the mean."""
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    weights = resample_counts(len(study.runs[0][0]), resamples, generator)
    per_model = [[run_replicates(run, weights) for run in model_runs] for model_runs in study.runs]
    squeezed = {
        name: Replicates.stacked([r[name] for r in per_model[1]]) for name in ("miou", "pixel_accuracy")
    }
    baseline_miou = Replicates.stacked([r["miou"] for r in per_model[0]])
    replicates = {**squeezed, "delta_miou": squeezed["miou"] - baseline_miou}
    shipped = shipped_intervals(study.runs[1], study.runs[0])
    found = {}
    for name in STATISTICS:
        bounds, fewest, shipped_estimate = shipped[name]
        estimate = float(replicates[name].estimate.mean())
        assert np.isclose(estimate, shipped_estimate, rtol=0, atol=1e-9)
        found[name] = {
            "estimate": estimate,
            "fewest": fewest,
            "bounds": {**bootstrap_intervals(replicates[name], rng), "D0": bounds},
        }
    return found


def check_shipped_gate(population: Population, rng: np.random.Generator, studies: int = 12) -> None:
    """Stating D's interval exactly when the fewest ground truths of a class of the mean reach the
    shipped ``MIN_CLASS_IMAGES`` (and the same bounds) is what ``intervals.interval`` does with its gate
    on: checked on small voc studies, which have thin and prediction-only classes."""
    for _ in range(studies):
        study = simulate_study(population, 12, 2, rng)
        gated = intervals.interval(study.runs[1], ReducedIoU(), study.runs[0])
        bounds, fewest, _ = shipped_intervals(study.runs[1], study.runs[0])["delta_miou"]
        assert gated.stated == (fewest >= SHIPPED_GATE)
        assert not gated.stated or np.allclose(bounds, [gated.low, gated.high], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------------
# Cells


@dataclass(frozen=True)
class Cell:
    """One cell of the grid: a population, a split size N and a number of seeds K."""

    population: str
    images: int
    seeds: int

    @property
    def label(self) -> str:
        return f"{self.population} N={self.images} K={self.seeds}"


@dataclass
class StatisticRecord:
    """One statistic over a cell's splits."""

    estimate: np.ndarray  # (S,)
    run_truth: np.ndarray  # (S,) NaN for K >= 2
    seed_truth: np.ndarray  # (S,)
    fewest: np.ndarray  # (S,)
    bounds: dict[str, np.ndarray]  # candidate -> (S, 2), NaN where not stated

    def stated(self, candidate: str, gate: int = 0) -> np.ndarray:
        """Which splits the candidate states an interval for (D: with the class gate at ``gate``)."""
        stated = ~np.isnan(self.bounds["D0" if candidate == "D" else candidate][:, 0])
        return stated & (self.fewest >= gate) if candidate == "D" else stated

    def interval_bounds(self, candidate: str) -> np.ndarray:
        return self.bounds["D0" if candidate == "D" else candidate]

    def claimed_truth(self) -> np.ndarray:
        """What an interval of this cell claims to cover: one seed, the run's truth; K seeds, the bank's."""
        return self.seed_truth if np.isnan(self.run_truth).all() else self.run_truth


@dataclass(frozen=True)
class CellResult:
    cell: Cell
    records: dict[str, StatisticRecord]
    seconds: float


def run_cell(
    cell: Cell,
    population: Population,
    truth: Truth,
    splits: int,
    resamples: int,
    seed: int,
    population_index: int,
) -> CellResult:
    """Simulate ``splits`` studies of one cell, each from its own seed, and gather every statistic's
    estimates, truths, fewest ground truths of a class and intervals."""
    started = time.perf_counter()
    rows = []
    for split in range(splits):
        rng = np.random.default_rng([seed, population_index, cell.images, cell.seeds, split])
        study = simulate_study(population, cell.images, cell.seeds, rng)
        rows.append((study_targets(study, truth), study_intervals(study, resamples, rng)))
    records = {}
    for name in STATISTICS:
        candidates = rows[0][1][name]["bounds"].keys()
        records[name] = StatisticRecord(
            np.array([found[name]["estimate"] for _, found in rows]),
            np.array([targets[name][0] for targets, _ in rows]),
            np.array([targets[name][1] for targets, _ in rows]),
            np.array([found[name]["fewest"] for _, found in rows]),
            {c: np.stack([found[name]["bounds"][c] for _, found in rows]) for c in candidates},
        )
    return CellResult(cell, records, time.perf_counter() - started)


def selected_cells(selectors: str | None) -> list[Cell]:
    """Cells matching comma-separated ``population[:images[:seeds]]`` selectors (all without any)."""
    every = [Cell(p, n, k) for p in POPULATIONS for n in CELL_IMAGES for k in CELL_SEEDS]
    if not selectors:
        return every
    chosen = []
    for selector in selectors.split(","):
        parts = selector.strip().split(":")
        matches = [c for c in every if [c.population, str(c.images), str(c.seeds)][: len(parts)] == parts]
        if not matches:
            raise SystemExit(
                f"--cells: {selector!r} matches no cell (population[:images[:seeds]], "
                f"populations {', '.join(POPULATIONS)}, images {CELL_IMAGES}, seeds {CELL_SEEDS})"
            )
        chosen += [c for c in matches if c not in chosen]
    return chosen


# ---------------------------------------------------------------------------------------------------
# Tables


def covers(bounds: np.ndarray, target: np.ndarray) -> np.ndarray:
    return (bounds[:, 0] <= target) & (target <= bounds[:, 1])


def share(mask: np.ndarray) -> str:
    return f"{100 * mask.mean():.1f}" if mask.size else "-"


def coverage_text(record: StatisticRecord, candidate: str, target: np.ndarray, gate: int = 0) -> str:
    if candidate not in record.bounds and candidate != "D":
        return "-"
    stated = record.stated(candidate, gate)
    return share(covers(record.interval_bounds(candidate)[stated], target[stated]))


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def coverage_table(results: list[CellResult], name: str) -> str:
    """Coverage (%) per cell and candidate, against the run's own truth (one seed) and the bank's."""
    rows = []
    for result in results:
        record = result.records[name]
        truths = [("run", record.run_truth)] if result.cell.seeds == 1 else []
        for label, target in [*truths, ("seed mean", record.seed_truth)]:
            rows.append(
                [
                    result.cell.label,
                    label,
                    *(
                        coverage_text(record, c, target, SHIPPED_GATE if c == "D" else 0)
                        for c in ("A", "B", "C", "D")
                    ),
                    share(record.stated("D", SHIPPED_GATE)),
                    coverage_text(record, "D0", target),
                    coverage_text(record, "E", target),
                ]
            )
    header = ["cell", "truth", "A", "B", "C", f"D (gate {SHIPPED_GATE})", "D stated %", "D0 (no gate)", "E"]
    return markdown_table(header, rows)


def width_and_hold_table(results: list[CellResult], name: str) -> str:
    """Median width and the share of intervals holding their own estimate, per cell and candidate."""
    rows = []
    for result in results:
        record = result.records[name]
        row = [result.cell.label]
        for candidate in ("A", "B", "C", "D", "D0", "E"):
            if candidate not in record.bounds and candidate != "D":
                row.append("-")
                continue
            stated = record.stated(candidate, SHIPPED_GATE if candidate == "D" else 0)
            bounds = record.interval_bounds(candidate)[stated]
            if not len(bounds):
                row.append("none stated")
                continue
            width = np.median(bounds[:, 1] - bounds[:, 0])
            holds = covers(bounds, record.estimate[stated])
            row.append(f"{width:.4f} / {share(holds)}")
        rows.append(row)
    header = ["cell", "A", "B", "C", f"D (gate {SHIPPED_GATE})", "D0 (no gate)", "E"]
    return markdown_table(header, rows)


def fewest_table(results: list[CellResult], name: str) -> str:
    """D without its gate: coverage (%) of the claimed truth by the fewest ground truths any class of the
    mean is in, with the number of splits in each bin."""
    rows = []
    for result in results:
        record = result.records[name]
        hit = covers(record.bounds["D0"], record.claimed_truth())
        cells = []
        for low, high, _ in FEWEST_BINS:
            inside = (record.fewest >= low) & (record.fewest <= (high if high is not None else sys.maxsize))
            inside &= record.stated("D0")
            cells.append(f"{share(hit[inside])} ({inside.sum()})" if inside.any() else "-")
        rows.append([result.cell.label, *cells])
    return markdown_table(["cell", *(label for _, _, label in FEWEST_BINS)], rows)


def gate_scan(results: list[CellResult]) -> list[dict]:
    """Per gate value, for mIoU and its difference: D's coverage of the claimed truth in each cell stating
    at least ``MIN_STATED_SHARE`` of its splits (judged); the cells stating fewer (withheld); the cells
    without thin classes (every class of every split in ``NO_THIN_CLASSES`` ground truths: no gate up to
    that touches them); the mean share stated."""
    scan = []
    for gate in GATES:
        entry = {"gate": gate}
        for name in ("miou", "delta_miou"):
            judged, counts, withheld, thin_free, stated_shares = {}, {}, [], set(), []
            for result in results:
                record = result.records[name]
                stated = record.stated("D", gate)
                stated_shares.append(stated.mean())
                if (record.fewest >= NO_THIN_CLASSES).all():
                    thin_free.add(result.cell)
                if stated.mean() < MIN_STATED_SHARE:
                    withheld.append(result.cell)
                    continue
                target = record.claimed_truth()[stated]
                judged[result.cell] = covers(record.bounds["D0"][stated], target).mean()
                counts[result.cell] = int(stated.sum())
            entry[name] = {
                "judged": judged,
                "counts": counts,
                "withheld": withheld,
                "thin_free": thin_free,
                "stated": float(np.mean(stated_shares)),
            }
        scan.append(entry)
    return scan


def short_cells(found: dict) -> list[Cell]:
    return [cell for cell, coverage in found["judged"].items() if coverage < TARGET_COVERAGE]


def gate_table(scan: list[dict]) -> str:
    """D's stated intervals gate by gate: the worst judged cell, the share stated, the cells short."""
    rows = []
    for entry in scan:
        row = [str(entry["gate"])]
        for name in ("miou", "delta_miou"):
            found = entry[name]
            worst = min(found["judged"].items(), key=lambda item: item[1], default=None)
            short = [
                f"{cell.label}{' (no thin class)' * (cell in found['thin_free'])}"
                for cell in short_cells(found)
            ]
            row += [
                f"{100 * worst[1]:.1f} ({worst[0].label})" if worst else "-",
                f"{100 * found['stated']:.1f}",
                ", ".join(short) or "none",
                str(len(found["withheld"])),
            ]
        rows.append(row)
    header = ["MIN_CLASS_IMAGES"]
    for name in ("mIoU", "ΔmIoU"):
        header += [
            f"{name}: worst coverage (cell)",
            f"{name}: mean % stated",
            f"{name}: cells < {100 * TARGET_COVERAGE:.0f} %",
            f"{name}: cells stating < {100 * MIN_STATED_SHARE:.0f} %",
        ]
    return markdown_table(header, rows)


def judged_with_thin_classes(entry: dict, one_seed: bool) -> dict[str, tuple[float, int]]:
    """At one gate: the coverage and number of stated intervals of each judged cell with thin classes
    (one seed, or K >= 2), by "cell statistic"."""
    return {
        f"{cell.label} {'ΔmIoU' if name == 'delta_miou' else 'mIoU'}": (coverage, entry[name]["counts"][cell])
        for name in ("miou", "delta_miou")
        for cell, coverage in entry[name]["judged"].items()
        if cell not in entry[name]["thin_free"] and (cell.seeds == 1) == one_seed
    }


def listed(coverages: dict[str, tuple[float, int]]) -> str:
    """Cell statistics with their coverage and, as its Monte Carlo error depends on it, their count."""
    return (
        ", ".join(
            f"{label} ({100 * coverage:.1f} % of {count})" for label, (coverage, count) in coverages.items()
        )
        or "none"
    )


def gate_recommendation(scan: list[dict]) -> str:
    """The gate judged where only the images vary (one seed): the smallest up to ``NO_THIN_CLASSES`` at
    which every one-seed cell with thin classes that it still judges covers ``TARGET_COVERAGE``, else the
    one that comes closest; then what that gate leaves short with K >= 2 seeds, and the cells without
    thin classes that fall short whatever the gate."""
    worst = {}
    for entry in scan:
        coverages = judged_with_thin_classes(entry, one_seed=True)
        if entry["gate"] <= NO_THIN_CLASSES and coverages:
            worst[entry["gate"]] = min(coverage for coverage, _ in coverages.values())
    if not worst:
        return "No gate judges any one-seed cell with thin classes (each states too few intervals)."
    passing = [gate for gate, coverage in worst.items() if coverage >= TARGET_COVERAGE]
    gate = passing[0] if passing else max(worst, key=worst.get)
    entry = next(entry for entry in scan if entry["gate"] == gate)
    target = f"{100 * TARGET_COVERAGE:.0f} %"
    if passing:
        verdict = (
            f"Smallest MIN_CLASS_IMAGES at which every judged one-seed cell with thin classes covers {target}"
        )
    else:
        verdict = (
            f"No MIN_CLASS_IMAGES up to {NO_THIN_CLASSES} brings every one-seed cell with thin classes that "
            f"it still judges to {target}; the closest (highest worst coverage)"
        )
    seeded = judged_with_thin_classes(entry, one_seed=False)
    thin_free_short = {
        f"{cell.label} {'ΔmIoU' if name == 'delta_miou' else 'mIoU'}": (
            entry[name]["judged"][cell],
            entry[name]["counts"][cell],
        )
        for name in ("miou", "delta_miou")
        for cell in short_cells(entry[name])
        if cell in entry[name]["thin_free"]
    }
    withheld = sorted({cell.label for name in ("miou", "delta_miou") for cell in entry[name]["withheld"]})
    return (
        f"{verdict}: **{gate}**. One-seed cells with thin classes judged "
        f"there: {listed(judged_with_thin_classes(entry, one_seed=True))}. With K >= 2 seeds, short there: "
        f"{listed({k: v for k, v in seeded.items() if v[0] < TARGET_COVERAGE})}. Short without a thin class "
        f"(every class of every split in {NO_THIN_CLASSES}+ ground truths, so no gate up to that applies): "
        f"{listed(thin_free_short)}. Stating under {100 * MIN_STATED_SHARE:.0f} % of their splits there "
        f"(not judged): {', '.join(withheld) or 'none'}."
    )


def classes_per_image(population: Population) -> float:
    """The mean number of classes in an image's ground truth, top-up included (from 20,000 images)."""
    return float(draw_presence(population, 20_000, np.random.default_rng(POPULATION_SEED)).sum(1).mean())


def calibration_table(results: list[CellResult], truths: dict[str, Truth], populations: dict) -> str:
    """What the simulated populations look like, and whether the seed spread and the truth's own error
    are of the intended size against the image noise (the spread of one-seed estimates about their run's
    truth)."""
    rows = []
    for name, truth in truths.items():
        population = populations[name]
        all_classes = np.ones(population.classes, bool)
        miou = truth.class_iou.mean(-1)  # (2, BANK_SEEDS)
        image_noise = {}
        for images in (50, 500):
            found = [r for r in results if r.cell == Cell(name, images, 1)]
            record = found[0].records["miou"] if found else None
            image_noise[images] = f"{np.std(record.estimate - record.run_truth):.4f}" if record else "n/a"
        rows.append(
            [
                name,
                str(population.classes),
                f"{classes_per_image(population):.2f}",
                f"{population.frequency.min():.3f}",
                " / ".join(f"{truth.miou(model, slice(None), all_classes):.3f}" for model in range(2)),
                f"{miou[1].std():.4f}",
                f"{(miou[1] - miou[0]).std():.4f}",
                image_noise[50],
                image_noise[500],
                f"{truth.miou_error:.5f}",
                f"{truth.delta_error:.5f}",
            ]
        )
    header = [
        "population",
        "classes",
        "classes per image",
        "rarest class's frequency",
        "population mIoU, all classes (baseline / squeezed)",
        "seed sd of mIoU",
        "seed sd of ΔmIoU",
        "image sd of mIoU at N=50 (K=1)",
        "image sd at N=500",
        "truth MC error, mIoU",
        "truth MC error, ΔmIoU",
    ]
    return markdown_table(header, rows)


def report(
    results: list[CellResult],
    truths: dict[str, Truth],
    populations: dict,
    command: str,
    elapsed: float,
    splits: int,
    resamples: int,
    truth_images: int,
) -> str:
    """The Markdown page: the command and settings, the populations, and every table."""
    scan = gate_scan(results)
    digest = hashlib.sha256(Path(intervals.__file__).read_bytes()).hexdigest()[:12]
    parts = [
        "# Coverage of 95 % intervals on simulated splits (`benchmarks/bench_coverage.py`)",
        f"Command: `{command}`  \nElapsed: {elapsed:.0f} s on one thread.  \n"
        f"{splits} splits per cell (Monte Carlo SE of a coverage near 95 %: "
        f"{100 * np.sqrt(0.95 * 0.05 / splits):.1f} points); {resamples} bootstrap resamples; "
        f"a bank of {BANK_SEEDS} seeds per population; truth from {truth_images:,} images. "
        f"`intervals.py` sha256 {digest}, MIN_IMAGES = {intervals.MIN_IMAGES}, shipped MIN_CLASS_IMAGES = "
        f"{SHIPPED_GATE}.",
        "Candidates: " + "; ".join(f"**{k}** {v}" for k, v in CANDIDATES.items()) + ".",
        "## Populations\n\n" + calibration_table(results, truths, populations),
    ]
    for name, title in STATISTICS.items():
        parts.append(
            f"## {title}: coverage %\n\nTruth `run`: the run's own population value (one seed); "
            f"`seed mean`: its mean over the bank of seeds.\n\n" + coverage_table(results, name)
        )
        parts.append(
            f"## {title}: median width / % of intervals holding their own estimate\n\n"
            + width_and_hold_table(results, name)
        )
    for name in ("miou", "delta_miou"):
        parts.append(
            f"## {STATISTICS[name]}: D without its gate, coverage % (splits) by the fewest ground "
            f"truths any class of the mean is in\n\nAgainst the run's truth for one seed, the bank's "
            f"for K >= 2.\n\n" + fewest_table(results, name)
        )
    parts.append(
        f"## Choosing MIN_CLASS_IMAGES\n\nD's stated intervals at each gate, against the truth they "
        f"claim (run for one seed, bank for K >= 2); cells stating under "
        f"{100 * MIN_STATED_SHARE:.0f} % of their splits are not judged.\n\n"
        + gate_table(scan)
        + "\n\n"
        + gate_recommendation(scan)
    )
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--splits", type=int, default=SPLITS, help="simulated splits per cell")
    parser.add_argument("--cells", help="comma-separated population[:images[:seeds]], e.g. voc,ade:500:5")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_SPLITS} splits per cell, truth from {QUICK_TRUTH_IMAGES:,} images",
    )
    parser.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits and the truth's images")
    parser.add_argument("--markdown", type=Path, help="write the tables to this Markdown file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = QUICK_SPLITS if args.quick else args.splits
    truth_images = QUICK_TRUTH_IMAGES if args.quick else TRUTH_IMAGES
    command = " ".join(["python", *sys.argv])
    started = time.perf_counter()
    check_reductions(np.random.default_rng([args.seed, 99]))
    check_shipped_gate(voc_population(), np.random.default_rng([args.seed, 98]))
    cells = selected_cells(args.cells)
    populations, truths, results = {}, {}, []
    for index, name in enumerate(POPULATIONS):
        chosen = [cell for cell in cells if cell.population == name]
        if not chosen:
            continue
        populations[name] = POPULATIONS[name]()
        truth_started = time.perf_counter()
        truths[name] = population_truth(
            populations[name], truth_images, np.random.default_rng([args.seed, index])
        )
        print(f"{name}: truth in {time.perf_counter() - truth_started:.0f} s", file=sys.stderr, flush=True)
        for cell in chosen:
            results.append(
                run_cell(cell, populations[name], truths[name], splits, args.resamples, args.seed, index)
            )
            print(
                f"{cell.label}: {splits} splits in {results[-1].seconds:.0f} s", file=sys.stderr, flush=True
            )
    text = report(
        results,
        truths,
        populations,
        command,
        time.perf_counter() - started,
        splits,
        args.resamples,
        truth_images,
    )
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
