"""The one IoU definition used everywhere: per-image confusion counts, then a reduction.

A class counts for an image only if it appears in that image's ground truth or prediction
(union > 0); classes absent from both are left out of the mean instead of scoring 0 or 1.
Pixels labelled ``ignore_index`` count for nothing.
"""

from __future__ import annotations

import torch

from embeddings_squeeze.data.labels import IGNORE_INDEX


def confusion_matrices(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """(B, H, W) predictions and targets -> (B, C, C) counts, rows = target, columns = prediction."""
    batch = pred.shape[0]
    overflow = batch * num_classes * num_classes
    # cells as int32 where they fit (1.3x faster to form and count than int64)
    dtype = torch.int32 if overflow < 2**31 else torch.long
    image = torch.arange(batch, device=pred.device, dtype=dtype).view(batch, 1, 1)
    cells = (image * num_classes + target.to(dtype)) * num_classes + pred.to(dtype)
    # ignored pixels go to one extra bin, dropped after counting: selecting the labelled pixels
    # instead costs 3x the count on one thread, and 50x on two threads of a busy CPU
    cells.masked_fill_(target == ignore_index, overflow)
    counts = torch.bincount(cells.flatten(), minlength=overflow + 1)[:overflow]
    return counts.view(batch, num_classes, num_classes)


def class_iou(confusion: torch.Tensor) -> torch.Tensor:
    """(..., C, C) counts -> (..., C) IoU per class, NaN where the class is in neither map."""
    true_positive = confusion.diagonal(dim1=-2, dim2=-1).double()
    union = confusion.sum(dim=-1) + confusion.sum(dim=-2) - true_positive
    iou = true_positive / union
    return torch.where(union > 0, iou, torch.full_like(iou, float("nan")))


def per_image_iou(confusion: torch.Tensor) -> torch.Tensor:
    """(B, C, C) per-image counts -> (B,) mean IoU of each image over its present classes; NaN if it
    has no labelled pixel."""
    return class_iou(confusion).nanmean(dim=-1)


def mean_iou(confusion: torch.Tensor) -> float:
    """Dataset mIoU from summed (C, C) counts: the mean over classes present anywhere."""
    return class_iou(confusion).nanmean().item()
