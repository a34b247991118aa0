"""Your own images and masks (``--dataset folder``)::

    <data_path>/images/<stem>.jpg|.jpeg|.png|...   RGB (or greyscale) images
    <data_path>/masks/<stem>.png                   single-channel label maps (L or P mode), same size
    <data_path>/classes.json                       ["name", ...] or {"names": [...],
                                                   "colours": [[r, g, b], ...], "ignore_index": 255}
    <data_path>/splits.json                        optional: {"train": [stems], "test": [stems],
                                                   "val": [stems] (optional)}

Mask values are labels 0..N-1 for N classes; pixels equal to ``ignore_index`` (default 255, at
least N) count in neither the loss nor the metrics. Without ``splits.json`` a seeded permutation
(``--split_seed``) holds out ``--val_fraction`` of the images as test and as much again of the
rest as val; without a ``val`` list, val is carved from ``train`` the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from embeddings_squeeze.data.labels import IGNORE_INDEX, MAX_CLASSES, ClassSet, index_to_labels, label_palette
from embeddings_squeeze.data.segmentation import SegmentationDataModule
from embeddings_squeeze.data.splits import Pool
from embeddings_squeeze.data.synthetic_scenes import make_synthetic_folder
from embeddings_squeeze.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
TEST_SEED_OFFSET = 3  # the test hold-out's permutation offset (train/val use 0, subsets 1 and 2)


class PairReader:
    """Reads the i-th image and mask of two path lists (a class, so DataLoader workers can take it)."""

    def __init__(self, images: list[Path], masks: list[Path]):
        self.images, self.masks = images, masks

    def __call__(self, index: int) -> tuple[Image.Image, Image.Image]:
        with Image.open(self.images[index]) as image, Image.open(self.masks[index]) as mask:
            image.load()
            mask.load()
            return image, mask


def read_classes(path: Path) -> tuple[ClassSet, int]:
    """The classes and the ignored mask value that ``classes.json`` describes."""
    try:
        described = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path} ({type(error).__name__}); it must be JSON, see --help") from None
    if isinstance(described, list):
        described = {"names": described}
    names = described.get("names") if isinstance(described, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise UserError(f"{path} must give a non-empty list of class names, as a list or under 'names'")
    if len(set(names)) != len(names) or len(names) > MAX_CLASSES:
        raise UserError(f"{path}: class names must be distinct and at most {MAX_CLASSES}, got {len(names)}")
    colours = described.get("colours") or label_palette(len(names))
    valid = all(
        isinstance(c, list | tuple) and len(c) == 3 and all(isinstance(v, int) and 0 <= v < 256 for v in c)
        for c in colours
    )
    if len(colours) != len(names) or not valid:
        raise UserError(f"{path}: 'colours' must hold one [r, g, b] (0..255 each) per class name")
    ignore = described.get("ignore_index", IGNORE_INDEX)
    if not isinstance(ignore, int) or not len(names) <= ignore <= 255:
        raise UserError(
            f"{path}: 'ignore_index' must be a mask value from {len(names)} to 255, got {ignore!r}"
        )
    return ClassSet(names, colours), ignore


class FolderDataModule(SegmentationDataModule):
    name = "folder"
    title = "image folder"

    synthetic_lists = ("train", "test")

    @classmethod
    def write_synthetic(cls, root, n_train, n_test, seed, min_size, max_size) -> Path:
        return make_synthetic_folder(root, n_train, n_test, seed, min_size, max_size)

    @property
    def classes(self) -> ClassSet:
        return self._described()[0]

    @property
    def label_rule(self) -> str:
        return f"{super().label_rule}:ignore={self._described()[1]}"

    def _described(self) -> tuple[ClassSet, int]:
        if not hasattr(self, "_classes"):
            self._classes = read_classes(self.folder / "classes.json")
        return self._classes

    def to_labels(self, mask: np.ndarray) -> np.ndarray:
        classes, ignore = self._described()
        return index_to_labels(mask, len(classes), ignore)

    def found(self) -> bool:
        return (self.folder / "images").is_dir() and (self.folder / "classes.json").is_file()

    def missing_message(self) -> str:
        return (
            f"no image folder dataset in {self.folder}: --dataset folder needs images/, masks/ and "
            "classes.json there (see the README); 'embeddings-squeeze make-data --dataset folder --root "
            f"{self.folder}' writes an example"
        )

    def pools(self) -> dict[str, Pool]:
        images = sorted(p for p in (self.folder / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise UserError(f"{self.folder / 'images'} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        by_stem = {}
        for image in images:
            if image.stem in by_stem:
                raise UserError(f"two images share the name {image.stem}: {by_stem[image.stem]} and {image}")
            mask = self.folder / "masks" / f"{image.stem}.png"
            if not mask.is_file():
                raise UserError(f"{image} has no mask: expected {mask}")
            by_stem[image.stem] = image
        lists = self._lists(sorted(by_stem))
        return {name: self._pool([by_stem[stem] for stem in stems]) for name, stems in lists.items()}

    def _lists(self, stems: list[str]) -> dict[str, list[str]]:
        path = self.folder / "splits.json"
        if not path.is_file():
            order = self._permutation(len(stems), offset=TEST_SEED_OFFSET)
            n_test = max(1, round(len(stems) * self.hparams.val_fraction))
            if len(stems) - n_test < 2:
                raise UserError(
                    f"{self.folder} has {len(stems)} image(s): too few for train, val and test splits"
                )
            return {
                "trainval": sorted(stems[i] for i in order[n_test:]),
                "test": sorted(stems[i] for i in order[:n_test]),
            }
        try:
            lists = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise UserError(f"cannot read {path} ({type(error).__name__}); it must be JSON") from None
        if (
            not isinstance(lists, dict)
            or not {"train", "test"} <= set(lists)
            or set(lists) - {"train", "val", "test"}
        ):
            raise UserError(f"{path} must map 'train', 'test' and optionally 'val' to lists of image names")
        known = set(stems)
        for name, listed in lists.items():
            unknown = [stem for stem in listed if stem not in known]
            if unknown:
                raise UserError(
                    f"{path}: the {name} list names {unknown[0]!r}, which has no image in images/"
                )
        if "val" not in lists:
            return {"trainval": lists["train"], "test": lists["test"]}
        return lists

    def _pool(self, images: list[Path]) -> Pool:
        masks = [self.folder / "masks" / f"{image.stem}.png" for image in images]
        return Pool(images, masks, PairReader(images, masks))
