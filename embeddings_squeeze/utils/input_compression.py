"""The naive alternative: compress the input image (JPEG, WebP) and run the uncompressed model remotely.

Each test image is taken at the model's input size (as the data pipeline resizes it), encoded at
a given quality, measured in bytes and decoded; ``engine/evaluation.py`` segments it with the
baseline model.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, features
from torchvision.transforms import functional as TF

from embeddings_squeeze.data.segmentation import denormalize

JPEG_QUALITIES = (5, 10, 20, 40, 60, 80, 95)


def codecs() -> list[str]:
    """Image codecs Pillow supports here: JPEG always, WebP when built with it."""
    return ["JPEG", "WEBP"] if features.check("webp") else ["JPEG"]


def round_trip(pixels: torch.Tensor, mean, std, codec: str, quality: int) -> tuple[torch.Tensor, int]:
    """Normalised (3, S, S) image -> (decoded normalised image, encoded bytes)."""
    rgb = denormalize(pixels, mean, std)
    buffer = io.BytesIO()
    Image.fromarray(rgb.permute(1, 2, 0).numpy()).save(buffer, format=codec, quality=quality)
    size = buffer.tell()
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        array = np.array(decoded.convert("RGB"))  # a writable copy for torch
    restored = TF.normalize(TF.to_tensor(array), list(mean), list(std))
    return restored, size
