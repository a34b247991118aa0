"""The task floor: bytes per image of sending the baseline's finished mask, measured one image at a time.

A feature codec is worth sending only if it costs less than running the head on the sender and
sending its mask, which scores the baseline's mIoU exactly. With ``reference=True`` it also
measures, for information, the same coders on the ground-truth masks and the grid oracles:
the ground truth reduced to N x N majority labels, context-coded, upsampled and scored.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

import numpy as np
import torch

from embeddings_squeeze.data.labels import IGNORE_INDEX
from embeddings_squeeze.utils.iou import class_iou, confusion_matrices, mean_iou
from embeddings_squeeze.utils.mask_coding import (
    ContextMaskCoder,
    grid_oracle,
    png_bytes,
    upsample,
    webp_bytes,
)

ORACLE_CELLS = (7, 14, 28, 56)
MASK_CODERS = ("png", "webp", "context")


class TaskFloor:
    """Accumulates lossless mask sizes (and grid-oracle scores) over a split."""

    def __init__(self, class_names: tuple[str, ...], reference: bool = False):
        self.class_names = tuple(class_names)
        labels = len(class_names)
        self.reference = reference
        self.prediction_coder = ContextMaskCoder(labels)
        self.target_coder = ContextMaskCoder(labels + 1)  # ground truth may hold the ignore label
        self.sizes: dict[str, list[int]] = defaultdict(list)
        self.oracle_confusion = {
            cells: torch.zeros(labels, labels, dtype=torch.long) for cells in ORACLE_CELLS
        }

    def _code(self, prefix: str, mask: np.ndarray, coder: ContextMaskCoder) -> None:
        self.sizes[f"{prefix}_png"].append(png_bytes(mask))
        self.sizes[f"{prefix}_webp"].append(webp_bytes(mask))
        self.sizes[f"{prefix}_context"].append(len(coder.encode(mask)))

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """One image's (H, W) baseline prediction and ground truth."""
        self._code("mask", prediction.cpu().numpy().astype(np.uint8), self.prediction_coder)
        if not self.reference:
            return
        target = target.cpu().numpy()
        labels = len(self.class_names)
        self._code("gt_mask", np.where(target == IGNORE_INDEX, labels, target), self.target_coder)
        for cells, confusion in self.oracle_confusion.items():
            grid = grid_oracle(target, cells, labels, IGNORE_INDEX)
            self.sizes[f"grid_oracle_{cells}"].append(len(self.prediction_coder.encode(grid)))
            restored = torch.from_numpy(upsample(grid, target.shape))
            confusion += confusion_matrices(restored[None], torch.from_numpy(target)[None], labels)[0]

    def report(self) -> dict[str, dict]:
        """Per row name: mean and median bytes per image, and the oracles' mIoU and class IoU."""
        rows = {}
        for name, sizes in self.sizes.items():
            rows[name] = {"bytes_mean": statistics.fmean(sizes), "bytes_median": statistics.median(sizes)}
        for cells, confusion in self.oracle_confusion.items():
            if f"grid_oracle_{cells}" in rows:
                rows[f"grid_oracle_{cells}"].update(
                    miou=mean_iou(confusion),
                    class_iou=dict(zip(self.class_names, class_iou(confusion).tolist())),
                )
        return rows
