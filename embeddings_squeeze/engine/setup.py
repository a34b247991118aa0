"""What every command builds the same way: the device for work outside the Trainer, and the data."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

from embeddings_squeeze.config import DataConfig, ModelConfig, RuntimeConfig
from embeddings_squeeze.data.registry import dataset_class
from embeddings_squeeze.data.segmentation import SegmentationDataModule
from embeddings_squeeze.engine.checkpoint import load_module
from embeddings_squeeze.engine.rate import payload_coder
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models import SQUEEZED, SqueezedSegmentationModule
from embeddings_squeeze.models.backbones import backbone_normalization
from embeddings_squeeze.models.quantizers.base import PayloadCoder

log = logging.getLogger(__name__)


def pick_device(runtime: RuntimeConfig) -> torch.device:
    """The one device for work outside the Trainer (feature caching, evaluation, payloads)."""
    accelerator, devices = runtime.accelerator, runtime.devices
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        index = int(str(devices).strip("[]").split(",")[0]) if "," in str(devices) else 0
        return torch.device("cuda", index)
    if accelerator in ("gpu", "cuda"):
        raise UserError(f"--accelerator {accelerator} was asked for but no CUDA device is visible")
    return torch.device("cpu")


def datamodule_for(data: DataConfig, model: ModelConfig, seed: int) -> SegmentationDataModule:
    """The data ``model`` is trained or evaluated on, normalised as its backbone's weights expect."""
    dataset = dataset_class(model.dataset)
    mean, std = backbone_normalization(model.backbone)
    return dataset(data, model.image_size, model.mask_mode, seed, mean, std)


def recorded_folder(data: DataConfig, recorded: str | None, whose: str) -> DataConfig:
    """``data`` with a data folder: the one given, else (``data_path`` None: no --data_path) the one
    ``whose`` run was trained on where it still exists (said in one line), else the default location."""
    if data.data_path is not None:
        return data
    if recorded is not None and Path(recorded).is_dir():
        log.info("using the data %s was trained on: %s (--data_path gives other data)", whose, recorded)
        return replace(data, data_path=recorded)
    if recorded is not None:
        log.info("the data %s was trained on is no longer in %s; looking in %s", whose, recorded,
                 DataConfig.data_path)  # fmt: skip
    return replace(data, data_path=DataConfig.data_path)


def load_coder(
    checkpoint: str, runtime: RuntimeConfig, dataset: str | None = None
) -> tuple[SqueezedSegmentationModule, PayloadCoder]:
    """What encode and decode both need: the squeezed model on its device and its payload coder;
    a checkpoint trained on another ``dataset`` than the one named (None: any) is refused."""
    module = load_module(checkpoint, SQUEEZED, "--checkpoint", dataset).to(pick_device(runtime))
    return module, payload_coder(module)
