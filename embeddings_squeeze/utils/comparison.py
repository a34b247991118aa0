"""Comparison records: scored images, the running best/worst lists, and split-level results.

``engine/evaluation.py`` runs the models one image at a time and hands each image's per-model
confusion counts to a ``Comparison``; only the current best and worst candidates are kept as images,
and every image's scores go to a ``record`` callback (the CSV writer) as soon as they are known.
Scores are taken at each mask's own size; ``input_size`` scores, at the model's square input, are
kept as a secondary figure.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from embeddings_squeeze.data.labels import ClassSet
from embeddings_squeeze.utils import intervals
from embeddings_squeeze.utils.codes import CodeAtlas
from embeddings_squeeze.utils.iou import class_iou, mean_iou, per_image_iou
from embeddings_squeeze.utils.metrics import IoU, Metric, Scores, key_of
from embeddings_squeeze.utils.records import (
    DIFFERENCE_KEYS,
    TITLES,
    ComparisonResult,
    Difference,
    Estimate,
    ModelScores,
)


@dataclass
class ScoredImage:
    """One image with its label maps and both models' predictions at its own size, ready to plot."""

    position: int
    image_id: str
    baseline_iou: float
    squeezed_iou: float
    image: np.ndarray  # (H, W, 3) uint8, as read from its file
    target: np.ndarray  # (H, W) labels
    baseline_pred: np.ndarray
    squeezed_pred: np.ndarray
    codes: np.ndarray | None = None  # (h, w) the first index level the squeezed model sent, for code maps


class Extremes:
    """The ``n_best`` highest- and ``n_worst`` lowest-scoring items seen so far.

    Ties go to the earlier position, so rankings do not depend on batch size.
    """

    def __init__(self, n_best: int, n_worst: int):
        self.n_best, self.n_worst = n_best, n_worst
        self._best: list = []  # min-heap of (score, -position, item): the weakest best on top
        self._worst: list = []  # min-heap of (-score, -position, item): the least bad on top

    @staticmethod
    def _offer(heap: list, size: int, key: tuple, make_item: Callable) -> None:
        if size == 0:
            return
        if len(heap) < size:
            heapq.heappush(heap, (*key, make_item()))
        elif key > heap[0][:2]:
            heapq.heapreplace(heap, (*key, make_item()))

    def offer(self, score: float, position: int, make_item: Callable) -> None:
        """Consider an item; ``make_item`` builds it only if it enters either list. An item without a
        score (NaN: e.g. no boundary in either map for the boundary F-score) is not ranked."""
        if math.isnan(score):
            return
        self._offer(self._best, self.n_best, (score, -position), make_item)
        self._offer(self._worst, self.n_worst, (-score, -position), make_item)

    def best(self) -> list:
        return [entry[2] for entry in sorted(self._best, reverse=True)]

    def worst(self) -> list:
        return [entry[2] for entry in sorted(self._worst, reverse=True)]


@dataclass
class Comparison:
    """Split-level results of models scored on the same images: ``baseline``, ``squeezed`` and, when
    given, a ``reference`` (the continuous bottleneck), by every metric of ``metrics`` (IoU first)."""

    classes: ClassSet
    models: tuple[str, ...] = ("baseline", "squeezed")
    metrics: tuple[Metric, ...] = (IoU(),)
    total_images: int = 0
    scores: dict[str, Scores] = field(default_factory=dict)  # per model, at each mask's own size
    input_confusion: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # per image, input size
    # ranking (a metric, or 'delta_' and a metric) -> (best images, worst images)
    rankings: dict[str, tuple[list[ScoredImage], list[ScoredImage]]] = field(default_factory=dict)
    rate: dict = field(default_factory=dict)  # the squeezed model's rate table on this split
    task_floor: dict = field(default_factory=dict)  # lossless mask sizes (utils/task_floor.py)
    atlas: CodeAtlas | None = None  # what each code stands for (index-sending quantizers)

    def __post_init__(self):
        for name in self.models:
            self.scores[name] = Scores(list(self.metrics), self.classes.names)
            self.input_confusion[name] = []

    def add(
        self, statistics: dict[str, dict[str, torch.Tensor]], input_confusion: dict[str, torch.Tensor]
    ) -> dict:
        """One image's statistics per model at its own size (``utils/metrics.image_statistics``) and
        its (C, C) counts at the input size; returns, per metric name, each model's value for this
        image (NaN when it has no labelled pixel)."""
        self.total_images += 1
        values = {}
        for name in self.models:
            values[name] = self.scores[name].add_statistics(statistics[name])
            self.input_confusion[name].append(input_confusion[name])
        return {
            metric.name: {name: values[name][metric.name] for name in self.models} for metric in self.metrics
        }

    def stacked(self, name: str, input_size: bool = False) -> torch.Tensor:
        """(N, C, C) per-image counts of one model, at each mask's own size or at the input size."""
        size = len(self.classes)
        counts = self.input_confusion[name] if input_size else self.scores[name].statistics["confusion"]
        return torch.stack(counts) if counts else torch.zeros(0, size, size, dtype=torch.long)

    def result(self) -> ComparisonResult:
        """Per model and metric: the split's value with its 95 % interval (``utils/intervals.py``)
        and its class values; the mIoU at the input size and the mean per-image IoU; the paired
        differences against the baseline (and the reference) with their intervals and p-values,
        Holm-adjusted together over every difference of the comparison."""
        image_iou = {name: per_image_iou(self.stacked(name)) for name in self.models}
        scored = ~torch.isnan(image_iou["squeezed"])
        models = {}
        for name in self.models:
            mean_image = image_iou[name][scored].mean().item() if scored.any() else math.nan
            reason = degenerate(self.stacked(name).sum(dim=0), self.classes.names)
            input_size = mean_iou(self.stacked(name, input_size=True).sum(dim=0))
            models[name] = ModelScores(name, self.scores[name].results(), input_size, mean_image, reason)
        pairs = [pair for pair in DIFFERENCE_KEYS if set(pair) <= set(self.models)]
        found = [(pair, metric, self._difference(*pair, metric)) for pair in pairs for metric in self.metrics]
        adjusted = intervals.holm([interval.p_value for *_, interval in found])
        differences = tuple(
            Difference(*pair, key_of(m), _paired(models, pair, key_of(m), interval), interval.p_value, p_holm)
            for (pair, m, interval), p_holm in zip(found, adjusted)
        )
        warnings = tuple(
            f"warning: the {TITLES[name]} model {scores.degenerate}; its mIoU means little"
            for name, scores in models.items()
            if scores.degenerate is not None
        )
        return ComparisonResult(
            images=self.total_images,
            images_scored=int(scored.sum()),
            metrics=tuple(metric.name for metric in self.metrics),
            models=models,
            differences=differences,
            mean_image_iou_difference=models["squeezed"].mean_image_iou - models["baseline"].mean_image_iou,
            warnings=warnings,
        )

    def _difference(self, first: str, second: str, metric: Metric) -> intervals.Interval:
        """The interval of ``first`` minus ``second`` in ``metric``, paired on the same images."""
        if not self.total_images:
            return intervals.Interval(math.nan, note="no images")
        first_images, second_images = self.scores[first].stacked(metric), self.scores[second].stacked(metric)
        return intervals.interval([first_images], metric, [second_images])


def _paired(
    models: dict[str, ModelScores], pair: tuple[str, str], key: str, found: intervals.Interval
) -> Estimate:
    """The difference of the two models' split values with the paired interval ``found``."""
    first, second = pair
    difference = models[first][key].value - models[second][key].value
    return Estimate(difference, found.bounds(), found.note)


ONE_CLASS_SHARE = 0.99  # a model predicting one class for this share of the pixels has learnt nothing


def degenerate(confusion: torch.Tensor, class_names) -> str | None:
    """Why predictions summed in a (C, C) confusion (rows: ground truth) carry no information, if
    they do not: one class for nearly every pixel, or IoU 0 for every class but the commonest.

    Their mIoU can still look fair: the commonest class alone scores about its share of the pixels,
    which averaged with the zeros can match a weak baseline that spreads its errors.
    """
    total = confusion.sum()
    if total == 0:
        return None
    predicted = confusion.sum(dim=0).double() / total
    if predicted.max() >= ONE_CLASS_SHARE:
        return f"predicts {class_names[int(predicted.argmax())]} for {predicted.max():.1%} of the pixels"
    iou, truth = class_iou(confusion), confusion.sum(dim=1)
    others = [c for c in range(len(class_names)) if truth[c] > 0 and c != int(truth.argmax())]
    if others and all(iou[c] == 0 for c in others):
        return f"IoU 0 for every class but {class_names[int(truth.argmax())]}"
    return None


def shares_backbone(first, second) -> bool:
    """True when both models (segmentation modules) run the same frozen encoder on the same input size,
    in the same precision."""
    keys = ("backbone", "weights_id", "image_size", "feature_layer")
    same_precision = first.backbone.feature_precision == second.backbone.feature_precision
    return same_precision and all(first.hparams[key] == second.hparams[key] for key in keys)
