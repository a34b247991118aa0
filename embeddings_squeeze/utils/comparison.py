"""Run the baseline and the VQ model over a split and score every image with the same IoU.

Only the current best and worst candidates are kept in memory; every image's scores go to a
``record`` callback (the CSV writer) as soon as they are known.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from embeddings_squeeze.models import SegmentationModule
from embeddings_squeeze.utils.iou import class_iou, confusion_matrices
from embeddings_squeeze.utils.rate import RateMeter


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

    class_names: tuple[str, ...]
    baseline_confusion: torch.Tensor
    vq_confusion: torch.Tensor
    baseline_iou_sum: float = 0.0
    vq_iou_sum: float = 0.0
    scored_images: int = 0
    total_images: int = 0
    # ranking ('iou' or 'delta') -> (best images, worst images)
    rankings: dict[str, tuple[list[ScoredImage], list[ScoredImage]]] = field(default_factory=dict)
    rate: dict = field(default_factory=dict)  # the VQ model's rate table on this split

    def summary(self) -> dict:
        baseline_classes = class_iou(self.baseline_confusion).tolist()
        vq_classes = class_iou(self.vq_confusion).tolist()
        baseline_miou = float(np.nanmean(baseline_classes))
        vq_miou = float(np.nanmean(vq_classes))
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
            "baseline_class_iou": dict(zip(self.class_names, baseline_classes)),
            "vq_class_iou": dict(zip(self.class_names, vq_classes)),
        }


def shares_backbone(first: SegmentationModule, second: SegmentationModule) -> bool:
    """True when both models run the same frozen encoder on the same input size."""
    keys = ("backbone", "weights_id", "image_size")
    return all(first.hparams[key] == second.hparams[key] for key in keys)


def _to_image(pixels: torch.Tensor, mean, std) -> np.ndarray:
    """(3, H, W) normalised tensor -> (H, W, 3) uint8."""
    mean = torch.tensor(mean).view(3, 1, 1)
    std = torch.tensor(std).view(3, 1, 1)
    rgb = (pixels * std + mean).clamp(0, 1)
    return (rgb.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


@torch.no_grad()
def compare_models(
    baseline: SegmentationModule,
    vq: SegmentationModule,
    loader,
    image_ids: list[str],
    n_best: int,
    n_worst: int,
    device: torch.device,
    record: Callable[[dict], None],
    share_backbone: bool = True,
    rank_by: tuple[str, ...] = ("iou",),
) -> Comparison:
    """Score both models on every image of ``loader``; rank them; measure the VQ rate.

    Each image runs on its own, the VQ model through ``encode_image`` and ``decode_mask``, so its
    prediction is exactly what decode(encode(image)) gives, whatever the loader's batch size.

    ``rank_by``: the rankings to keep, from one pass: 'iou' ranks by VQ IoU; 'delta' by VQ IoU
    minus baseline IoU, so the worst images are those where the bottleneck loses most.

    When both models share their frozen encoder, it runs once per batch for both (unless
    ``share_backbone`` is False, which only benchmarks use).
    """
    num_classes = vq.num_classes
    shared = share_backbone and shares_backbone(baseline, vq)
    baseline.to(device).eval()
    vq.to(device).eval()
    result = Comparison(
        class_names=vq.class_names,
        baseline_confusion=torch.zeros(num_classes, num_classes, dtype=torch.long),
        vq_confusion=torch.zeros(num_classes, num_classes, dtype=torch.long),
    )
    rankings = {ranking: Extremes(n_best, n_worst) for ranking in rank_by}
    rate = RateMeter(vq)
    mean, std = vq.backbone.mean, vq.backbone.std
    for images, masks, positions in tqdm(loader, desc="comparing baseline and VQ", unit="batch"):
        baseline_preds, vq_preds, batch_indices = [], [], []
        for image in images:  # one at a time, as encode and decode handle images (see encode_image)
            vq_features, indices = vq.encode_image(image)
            if shared:
                baseline_features = vq_features
            else:
                baseline_features = baseline.backbone.features(image.unsqueeze(0).to(device))
            size = image.shape[-2:]
            baseline_preds.append(baseline.logits_from_features(baseline_features, size).argmax(dim=1)[0])
            vq_preds.append(vq.decode_mask(indices))
            batch_indices.append(indices)
        baseline_pred, vq_pred = torch.stack(baseline_preds).cpu(), torch.stack(vq_preds).cpu()
        rate.update(torch.stack(batch_indices))
        baseline_confusion = confusion_matrices(baseline_pred, masks, num_classes)
        vq_confusion = confusion_matrices(vq_pred, masks, num_classes)
        result.baseline_confusion += baseline_confusion.sum(dim=0)
        result.vq_confusion += vq_confusion.sum(dim=0)
        baseline_iou = class_iou(baseline_confusion).nanmean(dim=-1).tolist()
        vq_iou = class_iou(vq_confusion).nanmean(dim=-1).tolist()
        for j, position in enumerate(positions.tolist()):
            result.total_images += 1
            record(
                {
                    "position": position,
                    "image_id": image_ids[position],
                    "baseline_iou": baseline_iou[j],
                    "vq_iou": vq_iou[j],
                    "iou_difference": vq_iou[j] - baseline_iou[j],
                }
            )
            if math.isnan(vq_iou[j]):  # no labelled pixel: nothing to rank
                continue
            result.scored_images += 1
            result.baseline_iou_sum += baseline_iou[j]
            result.vq_iou_sum += vq_iou[j]

            def make_item(j=j, position=position):
                return ScoredImage(
                    position=position,
                    image_id=image_ids[position],
                    baseline_iou=baseline_iou[j],
                    vq_iou=vq_iou[j],
                    image=_to_image(images[j], mean, std),
                    target=masks[j].to(torch.uint8).numpy(),
                    baseline_pred=baseline_pred[j].to(torch.uint8).numpy(),
                    vq_pred=vq_pred[j].to(torch.uint8).numpy(),
                )

            scores = {"iou": vq_iou[j], "delta": vq_iou[j] - baseline_iou[j]}
            for ranking, extremes in rankings.items():
                extremes.offer(scores[ranking], position, make_item)
    result.rankings = {ranking: (ext.best(), ext.worst()) for ranking, ext in rankings.items()}
    result.rate = rate.report()
    return result
