"""Pascal VOC 2012 segmentation (``--dataset voc``): torchvision's ``VOCSegmentation`` under
``<data_path>/VOCdevkit/VOC2012``.

The official ``val`` list is the test split (VOC's test masks are not public); train and val are
carved from the official ``train`` list by the split seed. Masks are palette PNGs whose indices
are the 21 labels; 255 marks object boundaries and is ignored in the loss and the metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torchvision.datasets import VOCSegmentation

from embeddings_squeeze.data.labels import (
    IGNORE_INDEX,
    VOC_CLASS_NAMES,
    ClassSet,
    index_to_labels,
    label_palette,
)
from embeddings_squeeze.data.segmentation import SegmentationDataModule, download_failed
from embeddings_squeeze.data.splits import Pool
from embeddings_squeeze.data.synthetic_scenes import make_synthetic_voc
from embeddings_squeeze.errors import UserError

VOC_CLASSES = ClassSet(VOC_CLASS_NAMES, label_palette(len(VOC_CLASS_NAMES)))
YEAR = "2012"
LISTS = {"trainval": "train", "test": "val"}  # our pool -> the official image set it comes from


class VOCDataModule(SegmentationDataModule):
    name = "voc"
    title = "Pascal VOC 2012"
    download_size = "about 2 GB: the VOC 2012 trainval archive"

    synthetic_lists = ("train", "val")

    @classmethod
    def write_synthetic(cls, root, n_train, n_test, seed, min_size, max_size) -> Path:
        return make_synthetic_voc(root, n_train, n_test, seed, min_size, max_size)

    @property
    def folder(self) -> Path:
        return self.data_path / "VOCdevkit" / f"VOC{YEAR}"

    @classmethod
    def fixed_classes(cls, mask_mode: str | None) -> ClassSet:
        return VOC_CLASSES

    def to_labels(self, mask: np.ndarray) -> np.ndarray:
        return index_to_labels(mask, len(VOC_CLASSES), IGNORE_INDEX)

    def found(self) -> bool:
        lists = self.folder / "ImageSets" / "Segmentation"
        return all((lists / f"{name}.txt").is_file() for name in LISTS.values())

    def missing_message(self) -> str:
        return (
            f"Pascal VOC {YEAR} not found in {self.folder}; pass --data_path to the folder holding "
            f"VOCdevkit/, or run 'embeddings-squeeze make-data --dataset voc --root {self.data_path}' for "
            "synthetic data"
        )

    def fetch(self) -> None:
        try:
            VOCSegmentation(self.data_path, year=YEAR, image_set="train", download=True)
        except (OSError, RuntimeError) as error:  # URLError is an OSError
            raise download_failed(
                self.title,
                self.folder,
                error,
                "pass --data_path to where VOCdevkit/ is, or run "
                f"'embeddings-squeeze make-data --dataset voc --root {self.data_path}' for synthetic data",
            ) from None

    def pools(self) -> dict[str, Pool]:
        return {pool: self._pool(image_set) for pool, image_set in LISTS.items()}

    def _pool(self, image_set: str) -> Pool:
        try:
            voc = VOCSegmentation(self.data_path, year=YEAR, image_set=image_set)
        except (OSError, RuntimeError, ValueError):
            raise UserError(
                f"cannot read the {image_set} list of {self.folder}: the folder is incomplete; "
                "download it again or regenerate it"
            ) from None
        return Pool(voc.images, voc.masks, voc.__getitem__)
