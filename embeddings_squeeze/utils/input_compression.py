"""The naive alternative: compress the input image (JPEG, WebP) and run the uncompressed model remotely.

Each test image is taken at the model's input size (as the data pipeline resizes it), encoded at
a given quality, measured in bytes, decoded, and segmented by the baseline model.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, features
from torchvision.transforms import functional as TF
from tqdm import tqdm

from embeddings_squeeze.utils.iou import class_iou, confusion_matrices

JPEG_QUALITIES = (5, 10, 20, 40, 60, 80, 95)


def codecs() -> list[str]:
    """Image codecs Pillow supports here: JPEG always, WebP when built with it."""
    return ["JPEG", "WEBP"] if features.check("webp") else ["JPEG"]


def _round_trip(pixels: torch.Tensor, mean, std, codec: str, quality: int) -> tuple[torch.Tensor, int]:
    """Normalised (3, S, S) image -> (decoded normalised image, encoded bytes)."""
    mean_t, std_t = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    rgb = ((pixels * std_t + mean_t).clamp(0, 1) * 255).round().to(torch.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb.permute(1, 2, 0).numpy()).save(buffer, format=codec, quality=quality)
    size = buffer.tell()
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        array = np.array(decoded.convert("RGB"))  # a writable copy for torch
    restored = TF.normalize(TF.to_tensor(array), list(mean), list(std))
    return restored, size


@torch.no_grad()
def evaluate_input_compression(baseline, loader, codec: str, quality: int, device) -> dict:
    """mIoU of ``baseline`` on images sent as ``codec`` at ``quality``, and their mean size."""
    baseline.to(device).eval()
    mean, std = baseline.backbone.mean, baseline.backbone.std
    confusion = torch.zeros(baseline.num_classes, baseline.num_classes, dtype=torch.long)
    sizes = []
    for images, masks, _ in tqdm(loader, desc=f"{codec} quality {quality}", unit="batch", leave=False):
        restored = []
        for image in images:
            decoded, size = _round_trip(image, mean, std, codec, quality)
            restored.append(decoded)
            sizes.append(size)
        prediction = baseline.predict_masks(torch.stack(restored).to(device)).cpu()
        confusion += confusion_matrices(prediction, masks, baseline.num_classes).sum(dim=0)
    per_class = class_iou(confusion)
    return {
        "codec": codec,
        "quality": quality,
        "payload_bytes_mean": float(np.mean(sizes)),
        "miou": float(per_class.nanmean()),
        "class_iou": dict(zip(baseline.class_names, per_class.tolist())),
    }
