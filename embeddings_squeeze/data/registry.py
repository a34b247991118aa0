"""Datasets by their ``--dataset`` name: the built-in ones, and those added from outside the package
with ``register_dataset`` (code that calls the engine's functions) or through the
``embeddings_squeeze.datasets`` entry-point group (the command line)."""

from __future__ import annotations

from importlib.metadata import entry_points

from embeddings_squeeze.data.folder import FolderDataModule
from embeddings_squeeze.data.oxford_pet import OxfordPetDataModule
from embeddings_squeeze.data.segmentation import SegmentationDataModule
from embeddings_squeeze.data.voc import VOCDataModule
from embeddings_squeeze.errors import UserError

ENTRY_POINTS = "embeddings_squeeze.datasets"
DATASETS: dict[str, type[SegmentationDataModule]] = {
    cls.name: cls for cls in (OxfordPetDataModule, VOCDataModule, FolderDataModule)
}


def register_dataset(cls: type[SegmentationDataModule]) -> type[SegmentationDataModule]:
    """Make ``cls`` available as ``--dataset <cls.name>``; usable as a class decorator."""
    if not cls.name:
        raise ValueError(f"{cls.__name__}.name must be set")
    DATASETS[cls.name] = cls
    return cls


def dataset_class(name: str) -> type[SegmentationDataModule]:
    if name not in DATASETS:
        for entry in entry_points(group=ENTRY_POINTS, name=name):
            register_dataset(entry.load())
    if name not in DATASETS:
        raise UserError(
            f"unknown --dataset {name!r}; choose {', '.join(DATASETS)}, or a dataset registered as the "
            "README's 'Extending' shows"
        )
    return DATASETS[name]
