"""Datasets by their ``--dataset`` name: the built-in ones, and those added from outside the package
with ``register_dataset`` (code that calls the engine's functions) or through the
``embeddings_squeeze.datasets`` entry-point group (the command line)."""

from __future__ import annotations

from embeddings_squeeze.data.folder import FolderDataModule
from embeddings_squeeze.data.oxford_pet import OxfordPetDataModule
from embeddings_squeeze.data.segmentation import SegmentationDataModule
from embeddings_squeeze.data.voc import VOCDataModule
from embeddings_squeeze.registry import Registry

DATASETS = Registry(
    "--dataset", "embeddings_squeeze.datasets", (OxfordPetDataModule, VOCDataModule, FolderDataModule)
)
register_dataset = DATASETS.register
# checkpoints made before --dataset existed hold no dataset name: they were trained on pets
LEGACY_DATASET = OxfordPetDataModule.name


def dataset_class(name: str) -> type[SegmentationDataModule]:
    return DATASETS.find(name)
