"""Rebuild a trained model from its checkpoint file alone, without executing code from it."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models import MODULES, SegmentationModule
from embeddings_squeeze.models.segmentation_module import CHECKPOINT_FORMAT, CHECKPOINT_KEY, FROZEN_PREFIX

KIND_NAMES = {"baseline": "a baseline (train_baseline.py)", "vq": "a VQ (squeeze.py)"}


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's contents, loaded with ``weights_only=True`` (plain data, no code)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"checkpoint not found: {path}; training saves <output_dir>/<experiment_name>/version_N/last.ckpt"
        )
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives; anything else is foreign or cut
        raise UserError(f"{path} is not a readable checkpoint (truncated, corrupt or another kind of file)")
    try:
        # memory-mapped: reading the metadata of a large checkpoint does not read its weights
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"{path} was refused: loading it would run code stored in the file (it holds objects other "
            "than tensors and plain values); use a checkpoint written by embeddings_squeeze training"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile):
        raise UserError(
            f"{path} is not a readable checkpoint (truncated or corrupt); copy it again or retrain"
        ) from None
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint:
        raise UserError(
            f"{path} is not an embeddings_squeeze checkpoint; pass a last.ckpt written by training"
        )
    info = checkpoint[CHECKPOINT_KEY]
    if info.get("format_version") != CHECKPOINT_FORMAT or info.get("kind") not in MODULES:
        raise UserError(
            f"{path} has checkpoint format {info.get('format_version')!r} (kind {info.get('kind')!r}); "
            f"this version reads format {CHECKPOINT_FORMAT}: retrain or use the matching release"
        )
    return checkpoint


def expect_kind(checkpoint: dict, kind: str, flag: str, path: str | Path) -> None:
    """Refuse a checkpoint of the wrong kind; ``flag`` names the option it came from."""
    found = checkpoint[CHECKPOINT_KEY]["kind"]
    if found != kind:
        raise UserError(f"{flag} {path} holds {KIND_NAMES[found]} model; {flag} needs {KIND_NAMES[kind]} one")


def instantiate(checkpoint: dict, path: str | Path) -> SegmentationModule:
    """The untrained model a checkpoint describes (its frozen weights, if stored, still to load)."""
    info = checkpoint[CHECKPOINT_KEY]
    hparams = dict(checkpoint["hyper_parameters"])
    if info["frozen_weights_stored"]:
        hparams["weights"] = "none"  # the stored frozen weights replace the random init on load
    try:
        return MODULES[info["kind"]](**hparams)
    except TypeError as error:
        raise UserError(f"{path} has hyperparameters this version does not know ({error})") from None


def build_module(checkpoint: dict, path: str | Path) -> SegmentationModule:
    """Rebuild the model a checkpoint describes and load its weights; returns it in eval mode."""
    info = checkpoint[CHECKPOINT_KEY]
    module = instantiate(checkpoint, path)
    result = module.load_state_dict(checkpoint["state_dict"], strict=False)
    stored = info["frozen_weights_stored"]
    missing = [k for k in result.missing_keys if stored or not k.startswith(FROZEN_PREFIX)]
    if missing or result.unexpected_keys:
        first = (missing or result.unexpected_keys)[0]
        raise UserError(
            f"{path} does not match the model it describes ({len(missing)} missing, "
            f"{len(result.unexpected_keys)} unexpected tensors, e.g. {first}); "
            "it may come from another version"
        )
    return module.eval()


def load_module(path: str | Path, kind: str, flag: str = "--checkpoint") -> SegmentationModule:
    """Read, check and rebuild in one call."""
    checkpoint = read_checkpoint(path)
    expect_kind(checkpoint, kind, flag, path)
    return build_module(checkpoint, path)
