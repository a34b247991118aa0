"""How an image and its mask become the model's input: resized to a square, normalised, labelled."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF


class ImageTransform:
    """Any PIL image -> a normalised (3, S, S) tensor, resized bilinearly to the square side S.

    No crop: the classification presets centre-crop, which would cut objects out of the mask.
    """

    def __init__(self, image_size: int, mean, std):
        self.image_size = image_size
        self.mean, self.std = list(mean), list(std)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        size = [self.image_size, self.image_size]
        image = TF.resize(image.convert("RGB"), size, InterpolationMode.BILINEAR, antialias=True)
        return TF.normalize(TF.to_tensor(image), self.mean, self.std)


class PairTransform:
    """An image and its mask file, resized to the same square: bilinear for pixels, nearest for labels.

    ``to_labels`` maps the mask's values to labels (``data/labels.py``) and raises ValueError on a
    value the dataset does not define.
    """

    def __init__(self, image: ImageTransform, to_labels: Callable[[np.ndarray], np.ndarray]):
        self.image = image
        self.to_labels = to_labels

    def __call__(self, image: Image.Image, mask: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        self.check(image, mask)
        size = [self.image.image_size, self.image.image_size]
        mask = TF.resize(mask, size, InterpolationMode.NEAREST)
        labels = self.to_labels(np.asarray(mask, dtype=np.uint8))
        return self.image(image), torch.from_numpy(labels.astype(np.int64))

    def native_labels(self, image: Image.Image, mask: Image.Image) -> torch.Tensor:
        """The mask's labels at its own size, (H, W): what scores are computed against."""
        self.check(image, mask)
        return torch.from_numpy(self.to_labels(np.asarray(mask, dtype=np.uint8)).astype(np.int64))

    @staticmethod
    def check(image: Image.Image, mask: Image.Image) -> None:
        if image.size != mask.size:
            raise ValueError(
                f"the image is {image.size[0]}x{image.size[1]} but its mask {mask.size[0]}x{mask.size[1]}"
            )
        if mask.mode not in ("L", "P", "1"):
            raise ValueError(f"the mask is a {mask.mode} image, not a single-channel label map")
