"""A split's images: the pool of files a dataset lists, and the positions a split takes from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import (
    Dataset,
    get_worker_info,
)

from embeddings_squeeze.data.loading import UnreadableSample
from embeddings_squeeze.data.transforms import PairTransform
from embeddings_squeeze.errors import UserError


@dataclass
class Pool:
    """One list of a dataset: ``read(i)`` gives the i-th (image, mask) pair of PIL images.

    ``read`` is the dataset's own loader where one exists (torchvision's ``OxfordIIITPet`` and
    ``VOCSegmentation`` items), so the files are read exactly as that loader reads them.
    """

    image_paths: list[Path]
    mask_paths: list[Path]
    read: Callable[[int], tuple[Image.Image, Image.Image]]

    def __len__(self) -> int:
        return len(self.image_paths)

    def read_mask(self, index: int) -> tuple[Image.Image, Image.Image]:
        """The i-th pair with the mask's pixels read as every dataset's loader reads them (PIL's
        ``open``) and the image opened for its size and mode only, its pixels never decoded."""
        with Image.open(self.image_paths[index]) as image, Image.open(self.mask_paths[index]) as mask:
            mask.load()
            return image, mask


class SegmentationSplit(Dataset):
    """Selected items of a pool; yields (image, labels, position in this split).

    ``label_rule`` names how masks became labels (dataset, mode, classes): the feature cache keys
    its entries by it.
    """

    def __init__(self, pool: Pool, indices: list[int], transform: PairTransform, label_rule: str):
        self.pool = pool
        self.indices = indices
        self.transform = transform
        self.label_rule = label_rule
        self.image_paths = [Path(pool.image_paths[i]) for i in indices]
        self.mask_paths = [Path(pool.mask_paths[i]) for i in indices]
        self.image_ids = [path.stem for path in self.image_paths]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        return self.load(position, lambda image, mask: (*self.transform(image, mask), position))

    def native_labels(self, position: int) -> torch.Tensor:
        """The mask's labels at its own size, (H, W), without decoding the image's pixels."""
        return self.load(position, self.transform.native_labels, self.pool.read_mask)

    def native_image(self, position: int) -> np.ndarray:
        """The image at its own size, (H, W, 3) uint8, as figures show it."""
        return self.load(position, lambda image, mask: np.asarray(image.convert("RGB")))

    def load(self, position: int, convert: Callable[[Image.Image, Image.Image], object], read=None):
        """``convert(image, mask)`` of this split's ``position``-th pair, as ``read`` gives it (the
        pool's ``read`` unless given); one clear error for a file that cannot be read or does not fit
        its dataset."""
        try:
            image, mask = (read or self.pool.read)(self.indices[position])
            return convert(image, mask)
        except ValueError as error:  # our own checks of the mask's values, mode and size
            problem = str(error)
        except (OSError, UnidentifiedImageError):
            problem = "the image or its mask is missing, truncated or not an image"
        message = (
            f"cannot read sample {self.image_ids[position]} ({self.image_paths[position]}, mask "
            f"{self.mask_paths[position]}): {problem}; fix or remove this file"
        )
        if get_worker_info() is not None:  # see UnreadableSample
            return UnreadableSample(message)
        raise UserError(message)


class EvaluationSplit(Dataset):
    """A split as evaluations read it: (inputs, labels at the input size, labels at the mask's own
    size, position). Scores are computed at the mask's own size, as segmentation benchmarks do.

    The inputs are the images, or (``served``: a dataset of (features, labels, position) of the same
    images in the same order) their cached backbone features, which models take as they are; then
    only the masks are read from the files.
    """

    def __init__(self, split: SegmentationSplit, served: Dataset | None = None):
        self.split = split
        self.served = served
        self.image_ids = split.image_ids

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, position: int):
        if self.served is not None:
            features, labels, _ = self.served[position]
            native = self.split.native_labels(position)
            return native if isinstance(native, UnreadableSample) else (features, labels, native, position)
        transform = self.split.transform

        def convert(image, mask):
            return (*transform(image, mask), transform.native_labels(image, mask), position)

        return self.split.load(position, convert)
