"""Oxford-IIIT Pet segmentation as a Lightning DataModule.

Splits: ``train`` and ``val`` are carved from the official ``trainval`` list by a random
permutation seeded with ``split_seed`` (the list is sorted by breed, so cutting it by position
would leave whole breeds out of training); ``test`` is the official test list. ``subset_size``
keeps the first N images of each split's seeded permutation, so small runs are still random
samples and the same split seed always picks the same images. ``seed`` only shuffles training
batches: runs with different seeds share one split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    Sampler,
    default_collate,
    get_worker_info,
)
from torchvision.datasets import OxfordIIITPet
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from embeddings_squeeze.config import DataConfig
from embeddings_squeeze.data.labels import MASK_MODES, trimap_to_labels
from embeddings_squeeze.errors import UserError


class PetTransform:
    """Resize image and trimap to the same square size: bilinear for pixels, nearest for labels.

    No crop: the classification presets centre-crop, which would cut pets out of the mask.
    """

    def __init__(self, image_size: int, mask_mode: str, mean, std):
        self.image_size = image_size
        self.mask_mode = mask_mode
        self.mean, self.std = list(mean), list(std)

    def image(self, image: Image.Image) -> torch.Tensor:
        """Any PIL image -> normalised (3, S, S) tensor."""
        size = [self.image_size, self.image_size]
        image = TF.resize(image.convert("RGB"), size, InterpolationMode.BILINEAR, antialias=True)
        return TF.normalize(TF.to_tensor(image), self.mean, self.std)

    def __call__(self, image: Image.Image, trimap: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = self.image(image)
        size = [self.image_size, self.image_size]
        trimap = TF.resize(trimap, size, InterpolationMode.NEAREST)
        labels = trimap_to_labels(np.asarray(trimap, dtype=np.uint8), self.mask_mode)
        return pixels, torch.from_numpy(labels.astype(np.int64))


def denormalize(pixels: torch.Tensor, mean, std) -> torch.Tensor:
    """Normalised (3, H, W) pixels -> the (3, H, W) uint8 image ``PetTransform.image`` started from."""
    mean = torch.tensor(mean, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(std, device=pixels.device).view(3, 1, 1)
    return ((pixels * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)


class PetSplit(Dataset):
    """Selected items of an OxfordIIITPet list; yields (image, labels, position in this split)."""

    def __init__(self, pets: OxfordIIITPet, indices: list[int], transform: PetTransform):
        self.pets = pets
        self.indices = indices
        self.transform = transform
        # torchvision keeps the file paths privately; we need them for ids and error messages
        self.image_paths = [pets._images[i] for i in indices]
        self.image_ids = [path.stem for path in self.image_paths]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        try:
            image, trimap = self.pets[self.indices[position]]
            return (*self.transform(image, trimap), position)
        except ValueError as error:  # our own check of the trimap values
            problem = str(error)
        except (OSError, UnidentifiedImageError):
            problem = "the image or its trimap is truncated or not an image"
        message = (
            f"cannot read sample {self.image_ids[position]} ({self.image_paths[position]}): {problem}; "
            "fix or remove this file"
        )
        if get_worker_info() is not None:  # see UnreadableSample
            return UnreadableSample(message)
        raise UserError(message)


@dataclass(frozen=True)
class UnreadableSample:
    """What a DataLoader worker returns for a file it cannot read, instead of raising.

    An exception raised in a worker process reaches the main process only as traceback text; this
    travels as data, and ``CheckedDataLoader`` raises it there as the UserError it is.
    """

    message: str


def collate_or_report(items: list):
    """``default_collate``, or the first ``UnreadableSample`` among ``items``."""
    for item in items:
        if isinstance(item, UnreadableSample):
            return item
    return default_collate(items)


class CheckedDataLoader(DataLoader):
    """A DataLoader that turns an ``UnreadableSample`` from a worker into a UserError."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, collate_fn=collate_or_report, **kwargs)

    def __iter__(self):
        for batch in super().__iter__():
            if isinstance(batch, UnreadableSample):
                raise UserError(batch.message)
            yield batch


class EpochShuffleSampler(Sampler[int]):
    """A new random order each epoch, drawn from (seed, epoch) alone.

    The order never depends on what ran before, so a run resumed at epoch k sees exactly the
    batches an uninterrupted run would. Lightning calls ``set_epoch`` before every epoch.
    """

    def __init__(self, length: int, seed: int):
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())


class UnpaddedDistributedSampler(Sampler[int]):
    """Every image exactly once across processes (rank r takes r, r + world, ...).

    ``DistributedSampler`` pads the split with repeated images to even the shards, which would
    count those images twice in validation and test metrics.
    """

    def __init__(self, length: int, rank: int, world_size: int):
        self.indices = list(range(rank, length, world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


class OxfordPetDataModule(pl.LightningDataModule):
    """Oxford-IIIT Pet with segmentation targets, resized to ``image_size`` squares.

    Args:
        data: where the data is, how it is split and batched (see ``DataConfig``).
        image_size: side of the square the images and masks are resized to.
        mask_mode: ``trimap`` (pet, background, border) or ``binary`` (border ignored).
        seed: seeds the order of training batches (never the split).
        mean, std: normalisation of the backbone's weights preset.
        download: fetch the dataset when ``oxford-iiit-pet/`` is missing.
    """

    def __init__(
        self,
        data: DataConfig,
        image_size: int,
        mask_mode: str,
        seed: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        download: bool = True,
    ):
        super().__init__()
        if mask_mode not in MASK_MODES:
            raise UserError(f"--mask_mode must be one of {', '.join(MASK_MODES)}, got {mask_mode!r}")
        if not 0 < data.val_fraction < 1:
            raise UserError(f"--val_fraction must be between 0 and 1, got {data.val_fraction}")
        # what a checkpoint needs to rebuild the same batches; where the files are may change
        stored = {k: v for k, v in asdict(data).items() if k not in ("data_path", "num_workers")}
        self.save_hyperparameters(
            {
                **stored,
                "image_size": image_size,
                "mask_mode": mask_mode,
                "seed": seed,
                "mean": mean,
                "std": std,
            }
        )
        self.data_path = str(data.data_path)
        self.download = download
        self.num_workers = data.num_workers
        self.transform = PetTransform(image_size, mask_mode, mean, std)
        self.splits: dict[str, Dataset] = {}

    @property
    def dataset_folder(self) -> Path:
        return Path(self.data_path) / "oxford-iiit-pet"

    def prepare_data(self) -> None:
        if self._exists() or not self.download:
            return
        try:
            OxfordIIITPet(self.data_path, split="trainval", download=True)
        except (OSError, RuntimeError) as error:  # URLError is an OSError
            raise UserError(
                f"Oxford-IIIT Pet not found in {self.dataset_folder} and the download failed "
                f"({type(error).__name__}: no network?); pass --data_path to where oxford-iiit-pet/ is, "
                f"or run 'embeddings-squeeze make-data --root {self.data_path}' for synthetic data"
            ) from None

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        if not self._exists():
            raise UserError(
                f"Oxford-IIIT Pet not found in {self.dataset_folder}; pass --data_path to the folder "
                f"holding oxford-iiit-pet/, or run 'embeddings-squeeze make-data --root "
                f"{self.data_path}' for synthetic data"
            )
        trainval = self._load("trainval")
        test = self._load("test")
        order = self._permutation(len(trainval), offset=0)
        n_val = max(1, round(len(order) * self.hparams.val_fraction))
        if len(order) - n_val < 1:
            raise UserError(f"trainval has {len(order)} image(s): too few to hold out validation")
        chosen = {
            "train": (trainval, order[n_val:]),
            "val": (trainval, order[:n_val]),
            "test": (test, self._permutation(len(test), offset=1)),
        }
        limit = self.hparams.subset_size
        for name, (pets, indices) in chosen.items():
            kept = sorted(indices[:limit] if limit is not None else indices)
            if not kept:
                raise UserError(f"the {name} split is empty; check the dataset's list files")
            self.splits[name] = PetSplit(pets, kept, self.transform)

    def serve(self, split: str, dataset: Dataset) -> None:
        """Serve ``split`` from another dataset of the same images in the same order (cached features)."""
        self.setup()
        self.splits[split] = dataset

    def split_record(self) -> dict:
        """The image ids of every split, for the run directory's split file."""
        return {
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
            sampler = DistributedSampler(split, world_size, rank, shuffle=True, seed=seed)
        # a last training batch of one image breaks BatchNorm in training mode (DeepLab's ASPP
        # pooling branch): drop it; the next epoch's order puts other images last
        lone_last_image = len(sampler) % self.hparams.batch_size == 1 and len(sampler) > 1
        return self.dataloader("train", sampler, drop_last=lone_last_image)

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_dataloader("test")

    def _exists(self) -> bool:
        return all((self.dataset_folder / sub).is_dir() for sub in ("images", "annotations"))

    def _load(self, split: str) -> OxfordIIITPet:
        try:
            return OxfordIIITPet(self.data_path, split=split, target_types="segmentation")
        except (OSError, ValueError):
            raise UserError(
                f"cannot read the {split} list of {self.dataset_folder}: the folder is incomplete; "
                "download it again or regenerate it"
            ) from None

    def _permutation(self, length: int, offset: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.hparams.split_seed + offset)
        return torch.randperm(length, generator=generator).tolist()
