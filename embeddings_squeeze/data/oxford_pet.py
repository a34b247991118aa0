"""Oxford-IIIT Pet (``--dataset pet``): torchvision's ``OxfordIIITPet`` under ``<data_path>/oxford-iiit-pet``.

The official ``trainval`` list is carved into train and val by the split seed; the official
``test`` list is the test split. Trimaps become pet/background/border or pet/background labels
(``--mask_mode``, see ``data/labels.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torchvision.datasets import OxfordIIITPet

from embeddings_squeeze.data.labels import MASK_MODES, ClassSet, pet_classes, trimap_to_labels
from embeddings_squeeze.data.segmentation import SegmentationDataModule, download_failed
from embeddings_squeeze.data.splits import Pool
from embeddings_squeeze.data.synthetic import make_synthetic_dataset
from embeddings_squeeze.errors import UserError


class OxfordPetDataModule(SegmentationDataModule):
    name = "pet"
    title = "Oxford-IIIT Pet"
    mask_modes = MASK_MODES
    download_size = "about 800 MB: 7,349 images and their trimaps"

    synthetic_lists = ("trainval", "test")

    @classmethod
    def write_synthetic(cls, root, n_train, n_test, seed, min_size, max_size) -> Path:
        return make_synthetic_dataset(root, n_train, n_test, seed, min_size, max_size)

    @property
    def folder(self) -> Path:
        return self.data_path / "oxford-iiit-pet"

    @classmethod
    def fixed_classes(cls, mask_mode: str | None) -> ClassSet:
        return pet_classes(cls.resolve_mask_mode(mask_mode))

    def to_labels(self, mask: np.ndarray) -> np.ndarray:
        return trimap_to_labels(mask, self.hparams.mask_mode)

    def found(self) -> bool:
        return all((self.folder / sub).is_dir() for sub in ("images", "annotations"))

    def missing_message(self) -> str:
        return f"Oxford-IIIT Pet not found in {self.folder}; {self._what_to_do()}"

    def _what_to_do(self) -> str:
        if self.folder.is_dir():  # a partial copy, which make-data would refuse to write over
            lacking = [f"{sub}/" for sub in ("images", "annotations") if not (self.folder / sub).is_dir()]
            return (
                f"it lacks {' and '.join(lacking)}; remove {self.folder} to download it again, or pass "
                "--data_path to where the whole oxford-iiit-pet/ is"
            )
        return (
            f"pass --data_path to where oxford-iiit-pet/ is, or run 'embeddings-squeeze make-data --root "
            f"{self.data_path}' for synthetic data"
        )

    def fetch(self) -> None:
        remedy = self._what_to_do()  # for the folder as the user left it, not as the download does
        try:
            OxfordIIITPet(self.data_path, split="trainval", download=True)
        except (OSError, RuntimeError) as error:  # URLError is an OSError
            raise download_failed(self.title, self.folder, error, remedy) from None

    def pools(self) -> dict[str, Pool]:
        return {split: self._pool(split) for split in ("trainval", "test")}

    def _pool(self, split: str) -> Pool:
        try:
            pets = OxfordIIITPet(self.data_path, split=split, target_types="segmentation")
        except (OSError, ValueError):
            raise UserError(
                f"cannot read the {split} list of {self.folder}: the folder is incomplete; "
                "download it again or regenerate it"
            ) from None
        # torchvision keeps the file paths privately; ids, error messages and the cache need them
        return Pool(pets._images, pets._segs, pets.__getitem__)
