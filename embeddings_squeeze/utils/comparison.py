"""Comparison utilities: scored images, the running best/worst lists, and split-level results.

``engine/evaluation.py`` runs the models; only the current best and worst candidates are kept in
memory, and every image's scores go to a ``record`` callback (the CSV writer) as soon as known.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from embeddings_squeeze.data.labels import ClassSet
from embeddings_squeeze.utils.iou import class_iou, mean_iou


@dataclass
class ScoredImage:
    """One image with its label maps and both models' predictions, ready to plot."""

    position: int
    image_id: str
    baseline_iou: float
    vq_iou: float
    image: np.ndarray  # (H, W, 3) uint8, de-normalised
    target: np.ndarray  # (H, W) labels
    baseline_pred: np.ndarray
    vq_pred: np.ndarray


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
        """Consider an item; ``make_item`` builds it only if it enters either list."""
        self._offer(self._best, self.n_best, (score, -position), make_item)
        self._offer(self._worst, self.n_worst, (-score, -position), make_item)

    def best(self) -> list:
        return [entry[2] for entry in sorted(self._best, reverse=True)]

    def worst(self) -> list:
        return [entry[2] for entry in sorted(self._worst, reverse=True)]


@dataclass
class Comparison:
    """Dataset-level results of comparing the two models on one split."""

    classes: ClassSet
    baseline_confusion: torch.Tensor
    vq_confusion: torch.Tensor
    baseline_iou_sum: float = 0.0
    vq_iou_sum: float = 0.0
    scored_images: int = 0
    total_images: int = 0
    # ranking ('iou' or 'delta') -> (best images, worst images)
    rankings: dict[str, tuple[list[ScoredImage], list[ScoredImage]]] = field(default_factory=dict)
    rate: dict = field(default_factory=dict)  # the VQ model's rate table on this split
    task_floor: dict = field(default_factory=dict)  # lossless mask sizes (utils/task_floor.py)

    def summary(self) -> dict:
        baseline_classes = class_iou(self.baseline_confusion).tolist()
        vq_classes = class_iou(self.vq_confusion).tolist()
        baseline_miou, vq_miou = mean_iou(self.baseline_confusion), mean_iou(self.vq_confusion)
        scored = max(self.scored_images, 1)
        baseline_mean = self.baseline_iou_sum / scored
        vq_mean = self.vq_iou_sum / scored
        return {
            "images": self.total_images,
            "images_scored": self.scored_images,
            "baseline_miou": baseline_miou,
            "vq_miou": vq_miou,
            "miou_difference": vq_miou - baseline_miou,
            "baseline_mean_image_iou": baseline_mean,
            "vq_mean_image_iou": vq_mean,
            "mean_image_iou_difference": vq_mean - baseline_mean,
            "baseline_class_iou": dict(zip(self.classes.names, baseline_classes)),
            "vq_class_iou": dict(zip(self.classes.names, vq_classes)),
        }


def shares_backbone(first, second) -> bool:
    """True when both models (segmentation modules) run the same frozen encoder on the same input size."""
    keys = ("backbone", "weights_id", "image_size", "feature_layer")
    return all(first.hparams[key] == second.hparams[key] for key in keys)
