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
    WEBP_LOSSLESS_HEADER,
    ContextMaskCoder,
    grid_oracle,
    png_file,
    png_header_bytes,
    upsample,
    webp_file,
)
from embeddings_squeeze.utils.payload import HEADER

ORACLE_CELLS = (7, 14, 28, 56)
# the context-coded masks and oracles are framed as a payload is (utils/payload.py): the same header,
# so they compare with payloads on equal terms
SIZE_BYTES = HEADER.size


class TaskFloor:
    """Accumulates lossless mask sizes (and grid-oracle scores) over a split."""

    def __init__(self, class_names: tuple[str, ...], reference: bool = False):
        self.class_names = tuple(class_names)
        labels = len(class_names)
        self.reference = reference
        self.prediction_coder = ContextMaskCoder(labels)
        self.target_coder = ContextMaskCoder(labels + 1)  # ground truth may hold the ignore label
        self.sizes: dict[str, list[int]] = defaultdict(list)
        self.headers: dict[str, list[int]] = defaultdict(list)  # the fixed part of each file
        self.oracle_confusions: dict[int, list[torch.Tensor]] = defaultdict(list)  # per image

    def _add(self, name: str, total: int, header: int) -> None:
        self.sizes[name].append(total)
        self.headers[name].append(header)

    def _code(self, prefix: str, mask: np.ndarray, coder: ContextMaskCoder, labels: int) -> None:
        png = png_file(mask, labels)
        self._add(f"{prefix}_png", len(png), png_header_bytes(png))
        self._add(f"{prefix}_webp", len(webp_file(mask)), WEBP_LOSSLESS_HEADER)
        self._add(f"{prefix}_context", SIZE_BYTES + len(coder.encode(mask)), SIZE_BYTES)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """One image's (H, W) baseline prediction and ground truth."""
        labels = len(self.class_names)
        self._code("mask", prediction.cpu().numpy().astype(np.uint8), self.prediction_coder, labels)
        if not self.reference:
            return
        target = target.cpu().numpy()
        self._code("gt_mask", np.where(target == IGNORE_INDEX, labels, target), self.target_coder, labels + 1)
        for cells in ORACLE_CELLS:
            grid = grid_oracle(target, cells, labels, IGNORE_INDEX)
            self._add(
                f"grid_oracle_{cells}", SIZE_BYTES + len(self.prediction_coder.encode(grid)), SIZE_BYTES
            )
            restored = torch.from_numpy(upsample(grid, target.shape))
            confusion = confusion_matrices(restored[None], torch.from_numpy(target)[None], labels)[0]
            self.oracle_confusions[cells].append(confusion)

    def report(self) -> dict[str, dict]:
        """Per row name: mean and median bytes per image, the mean fixed part of a file, and the
        oracles' mIoU and class IoU (their per-image counts: ``oracle_confusions``)."""
        rows = {}
        for name, sizes in self.sizes.items():
            rows[name] = {
                "bytes_mean": statistics.fmean(sizes),
                "bytes_median": statistics.median(sizes),
                "header_bytes": statistics.fmean(self.headers[name]),
            }
        for cells, confusions in self.oracle_confusions.items():
            counts = torch.stack(confusions)
            rows[f"grid_oracle_{cells}"].update(
                miou=mean_iou(counts.sum(dim=0)),
                class_iou=dict(zip(self.class_names, class_iou(counts.sum(dim=0)).tolist())),
            )
        return rows
