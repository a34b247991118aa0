"""The Lightning DataModule every segmentation dataset shares (its transforms, splits, loaders and
samplers live in ``transforms.py``, ``splits.py``, ``loading.py`` and ``samplers.py``).

A dataset subclass (``oxford_pet``, ``voc``, ``folder``, or one registered from outside) says
where its files are, how to fetch them, its classes and how a mask file becomes labels
(``data/labels.py``); the rest is shared.

Splits: a dataset lists a ``trainval`` pool and a ``test`` pool (or ``train``, ``val`` and
``test`` when it fixes all three). ``train`` and ``val`` are carved from ``trainval`` by a random
permutation seeded with ``split_seed`` (lists are often sorted by class, so cutting by position
would leave whole classes out of training). ``subset_size`` keeps the first N images of each
split's seeded permutation, so small runs are still random samples and the same split seed always
picks the same images. ``seed`` only shuffles training batches: runs with different seeds share
one split.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    Sampler,
)

from embeddings_squeeze.config import DataConfig
from embeddings_squeeze.data.labels import ClassSet
from embeddings_squeeze.data.loading import CheckedDataLoader
from embeddings_squeeze.data.samplers import (
    EpochShuffleSampler,
    ShardedEpochShuffleSampler,
    UnpaddedDistributedSampler,
)
from embeddings_squeeze.data.splits import EvaluationSplit, Pool, SegmentationSplit
from embeddings_squeeze.data.transforms import ImageTransform, PairTransform
from embeddings_squeeze.errors import UserError

log = logging.getLogger(__name__)


class SegmentationDataModule(pl.LightningDataModule):
    """A segmentation dataset resized to ``image_size`` squares, split and batched.

    Subclasses set ``name`` (the ``--dataset`` value) and ``title``, and give ``classes``,
    ``to_labels``, ``found`` and ``pools``; ``fetch`` downloads the data where that is possible.

    Args:
        data: where the data is, how it is split and batched (see ``DataConfig``).
        image_size: side of the square the images and masks are resized to.
        mask_mode: the label mode of datasets that have one (Oxford-IIIT Pet), else None.
        seed: seeds the order of training batches (never the split).
        mean, std: normalisation of the backbone's weights.
        download: fetch the dataset when it is missing (where the dataset can be downloaded).
    """

    name = ""
    title = ""  # how figures and reports name the dataset
    download_size = ""  # what ``fetch`` downloads, said before it starts, e.g. "about 800 MB"
    mask_modes: tuple[str, ...] = ()  # the --mask_mode values this dataset takes, if any
    synthetic_lists: tuple[str, str] = ("train", "test")  # what make-data's two counts fill

    def __init__(
        self,
        data: DataConfig,
        image_size: int,
        mask_mode: str | None,
        seed: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        download: bool = True,
    ):
        super().__init__()
        mask_mode = self.resolve_mask_mode(mask_mode)
        if not 0 < data.val_fraction < 1:
            raise UserError(f"--val_fraction must be between 0 and 1, got {data.val_fraction}")
        # what a checkpoint needs to rebuild the same batches; where the files are may change
        stored = {k: v for k, v in asdict(data).items() if k not in ("data_path", "num_workers")}
        self.save_hyperparameters(
            {
                **stored,
                "dataset": self.name,
                "image_size": image_size,
                "mask_mode": mask_mode,
                "seed": seed,
                "mean": mean,
                "std": std,
                # where the files were, so later commands find them from any folder
                "trained_data_path": str(Path(data.data_path).resolve()),
            }
        )
        self.data_path = Path(data.data_path)
        self.download = download
        self.num_workers = data.num_workers
        self.image_transform = ImageTransform(image_size, mean, std)
        self.files: dict[str, SegmentationSplit] = {}  # each split's image and mask files
        self.splits: dict[str, Dataset] = {}  # what training reads: the files, or cached features

    @classmethod
    def resolve_mask_mode(cls, mask_mode: str | None) -> str | None:
        """The mask mode a run uses: the dataset's first when none is given; refused where none apply."""
        if mask_mode is None:
            return cls.mask_modes[0] if cls.mask_modes else None
        if not cls.mask_modes:
            raise UserError(
                f"--mask_mode applies to --dataset pet, not to --dataset {cls.name}; leave it out"
            )
        if mask_mode not in cls.mask_modes:
            raise UserError(f"--mask_mode must be one of {', '.join(cls.mask_modes)}, got {mask_mode!r}")
        return mask_mode

    @classmethod
    def write_synthetic(
        cls, root: str | Path, n_train: int, n_test: int, seed: int, min_size: int, max_size: int
    ) -> Path:
        """Write a synthetic dataset in this dataset's on-disk layout under ``root`` (``make-data``);
        returns the folder written."""
        raise UserError(f"--dataset {cls.name} has no synthetic writer; write its files yourself")

    @classmethod
    def fixed_classes(cls, mask_mode: str | None) -> ClassSet | None:
        """The classes, where the dataset fixes them (None where its files say, as in ``folder``)."""
        return None

    # -- what a dataset defines ------------------------------------------------------------------

    @property
    def folder(self) -> Path:
        """Where the dataset's files are: ``data_path`` or a folder inside it."""
        return self.data_path

    @property
    def classes(self) -> ClassSet:
        """Names and colours of the classes, in label order."""
        return self.fixed_classes(self.hparams.mask_mode)

    def to_labels(self, mask: np.ndarray) -> np.ndarray:
        """A mask file's (H, W) uint8 values -> labels; raises ValueError on undefined values."""
        raise NotImplementedError

    def found(self) -> bool:
        """Whether the dataset's files are under ``data_path``."""
        raise NotImplementedError

    def missing_message(self) -> str:
        """One line saying what is missing and what to do."""
        raise NotImplementedError

    def fetch(self) -> None:
        """Download the dataset into ``data_path``; datasets that cannot be downloaded do nothing."""

    def pools(self) -> dict[str, Pool]:
        """``trainval`` and ``test``, or ``train``, ``val`` and ``test`` when the dataset fixes all three."""
        raise NotImplementedError

    @property
    def label_rule(self) -> str:
        """How masks become labels: the feature cache keys its entries by it."""
        return f"{self.name}:{self.hparams.mask_mode}:{','.join(self.classes.names)}"

    # -- shared ----------------------------------------------------------------------------------

    def inside_dataset(self) -> Path | None:
        """The ``data_path`` meant, when the one given is inside the folder the dataset keeps in it
        (``oxford-iiit-pet/``, ``VOCdevkit/``), e.g. one level too deep."""
        path = self.data_path.resolve()
        if self.folder.resolve() == path:  # the dataset lies in data_path itself
            return None
        top = self.folder.resolve().relative_to(path).parts[0]
        return next((meant for meant in list(path.parents)[:3] if path.is_relative_to(meant / top)), None)

    def prepare_data(self) -> None:
        """Check ``data_path``; download the dataset when it is missing (where it can be): its size is
        said first, and folders the download made are removed again when it fails."""
        if self.found():
            return
        meant = self.inside_dataset()
        if meant is not None:
            raise UserError(
                f"--data_path {self.data_path} is inside the {self.title} folder; pass --data_path {meant}"
            )
        if not self.download:
            return
        made = [path for path in (self.data_path, self.folder) if not path.exists()]
        if self.download_size:
            log.info("downloading %s (%s) into %s", self.title, self.download_size, self.folder)
        try:
            self.fetch()
        except UserError:
            for path in reversed(made):  # the deepest first; a folder that holds anything is kept
                if path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
            raise

    def setup(self, stage: str | None = None) -> None:
        if self.files:
            return
        if not self.found():
            raise UserError(self.missing_message())
        pools = self.pools()
        if "val" in pools:
            chosen = {name: (pools[name], self._permutation(len(pools[name]), offset)) for name, offset in
                      (("train", 0), ("val", 2), ("test", 1))}  # fmt: skip
        else:
            trainval = pools["trainval"]
            order = self._permutation(len(trainval), offset=0)
            n_val = max(1, round(len(order) * self.hparams.val_fraction))
            if len(order) - n_val < 1:
                raise UserError(f"trainval has {len(order)} image(s): too few to hold out validation")
            test = pools["test"]
            chosen = {
                "train": (trainval, order[n_val:]),
                "val": (trainval, order[:n_val]),
                "test": (test, self._permutation(len(test), offset=1)),
            }
        transform = PairTransform(self.image_transform, self.to_labels)
        limit = self.hparams.subset_size
        for name, (pool, indices) in chosen.items():
            kept = sorted(indices[:limit] if limit is not None else indices)
            if not kept:
                raise UserError(
                    f"the {name} split of {self.title} in {self.data_path} is empty; check its lists"
                )
            self.files[name] = SegmentationSplit(pool, kept, transform, self.label_rule)
        self.splits.update(self.files)

    def serve(self, split: str, dataset: Dataset) -> None:
        """Serve ``split`` from another dataset of the same images in the same order (cached features),
        to training and to evaluations alike."""
        self.setup()
        self.splits[split] = dataset

    def split_record(self) -> dict:
        """The image ids of every split, for the run directory's split file."""
        return {
            "dataset": self.name,
            "split_seed": self.hparams.split_seed,
            "val_fraction": self.hparams.val_fraction,
            "subset_size": self.hparams.subset_size,
            **{name: split.image_ids for name, split in self.splits.items()},
        }

    def dataloader(self, split: str, sampler: Sampler | None = None, drop_last: bool = False) -> DataLoader:
        """Batches of one split in list order, or in ``sampler``'s order."""
        self.setup()
        return CheckedDataLoader(
            self.splits[split],
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def evaluation_dataloader(self, split: str) -> DataLoader:
        """Batches of (inputs, labels, labels at each mask's own size, positions) of one split, in list
        order: the inputs are images, or the split's cached features where it is served from the cache
        (see ``EvaluationSplit``)."""
        self.setup()
        served = self.splits[split]
        return CheckedDataLoader(
            EvaluationSplit(self.files[split], None if served is self.files[split] else served),
            batch_size=self.hparams.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _world(self) -> tuple[int, int]:
        """(rank, world size) of the attached trainer; (0, 1) when used on its own."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _evaluation_dataloader(self, split: str) -> DataLoader:
        self.setup()
        rank, world_size = self._world()
        if world_size == 1:
            return self.dataloader(split)
        return self.dataloader(split, UnpaddedDistributedSampler(len(self.splits[split]), rank, world_size))

    def train_dataloader(self) -> DataLoader:
        # the Trainer runs with use_distributed_sampler=False: the samplers here are the ones used
        self.setup()
        rank, world_size = self._world()
        split, seed = self.splits["train"], self.hparams.seed
        if world_size == 1:
            sampler = EpochShuffleSampler(len(split), seed)
        else:
            sampler = ShardedEpochShuffleSampler(len(split), seed, rank, world_size, self.hparams.batch_size)
        # a last training batch of one image breaks BatchNorm in training mode (DeepLab's ASPP
        # pooling branch): drop it; the next epoch's order puts other images last
        lone_last_image = len(sampler) % self.hparams.batch_size == 1 and len(sampler) > 1
        return self.dataloader("train", sampler, drop_last=lone_last_image)

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_dataloader("test")

    def _permutation(self, length: int, offset: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.hparams.split_seed + offset)
        return torch.randperm(length, generator=generator).tolist()


def download_failed(title: str, folder: Path, error: Exception, remedy: str) -> UserError:
    """The one line for a dataset that is missing and could not be downloaded."""
    return UserError(
        f"{title} not found in {folder} and the download failed ({type(error).__name__}: no network?); "
        + remedy
    )
