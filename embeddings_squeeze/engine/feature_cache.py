"""Backbone features computed once per image, stored on disk and reused by later epochs and runs.

The backbone is frozen and there is no image augmentation, so an image's features never change.
A cache entry holds one split's features and label maps. Features are computed one image at a
time and stored in float16, exactly as a sender computes them, so cached and live runs see
identical numbers; the arrays are memory-mapped (the OS keeps small caches in RAM, large ones are
paged from disk). The entry's key covers everything they depend on: the split's image and
mask files (names, sizes, modification times), image size, how masks became labels (dataset,
mode, classes), backbone and its feature layer, frozen-weights identity and package version.
Any change gives a new key.

An entry is built in a private temporary folder and renamed into place when complete, so
concurrent builders never see each other's partial files; ``meta.json`` records the SHA-256 of
each array, and an entry whose arrays do not match it is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from embeddings_squeeze import __version__
from embeddings_squeeze.data.segmentation import SegmentationSplit
from embeddings_squeeze.engine.inference import evaluation_batches
from embeddings_squeeze.models.backbones.base import FEATURE_DTYPE
from embeddings_squeeze.utils.files import atomic_path

log = logging.getLogger(__name__)
FORMAT = 2  # 2: features computed one image at a time


def cache_key(split: SegmentationSplit, backbone) -> str:
    """A digest of everything the cached features and labels depend on."""
    files = []
    for image_path, mask_path in zip(split.image_paths, split.mask_paths):
        for path in (image_path, mask_path):
            status = path.stat()
            files.append([path.name, status.st_size, status.st_mtime_ns])
    description = {
        "format": FORMAT,
        "package": __version__,
        "files": files,
        "image_size": split.transform.image.image_size,
        "labels": split.label_rule,
        "backbone": backbone.name,
        "feature_layer": backbone.feature_layer,
        "weights": backbone.weights_id,
    }
    return hashlib.sha256(json.dumps(description).encode()).hexdigest()[:24]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class CachedSplit(Dataset):
    """A split served from the cache: (features (C, h, w) float32, labels (S, S), position)."""

    def __init__(self, folder: Path, image_ids: list[str]):
        self.features = np.load(folder / "features.npy", mmap_mode="r")
        self.labels = np.load(folder / "labels.npy", mmap_mode="r")
        self.image_ids = image_ids

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, position: int):
        features = torch.from_numpy(np.array(self.features[position], dtype=np.float32))
        labels = torch.from_numpy(self.labels[position].astype(np.int64))
        return features, labels, position


def _is_valid(folder: Path) -> bool:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        return all(_sha256(folder / name) == digest for name, digest in meta["sha256"].items())
    except (OSError, ValueError, KeyError):
        return False


def _build(folder: Path, split: SegmentationSplit, backbone, batch_size: int, device: torch.device) -> None:
    """Compute every image's features into a private folder, then rename it to ``folder``."""
    try:
        with atomic_path(folder) as temporary:
            _write_entry(temporary, split, backbone, batch_size, device)
    except OSError:
        if not folder.is_dir():
            raise
        # another process finished the same entry first: keep theirs


def _write_entry(
    folder: Path, split: SegmentationSplit, backbone, batch_size: int, device: torch.device
) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    features = labels = None
    desc = f"caching backbone features ({len(split)} images)"
    for images, masks, positions in evaluation_batches(
        backbone, DataLoader(split, batch_size=batch_size), device, desc
    ):
        batch_features = backbone.features_one_by_one(images.to(device)).to(FEATURE_DTYPE).cpu().numpy()
        if features is None:  # shapes are known after the first batch
            shape = (len(split), *batch_features.shape[1:])
            features = np.lib.format.open_memmap(folder / "features.npy", "w+", np.float16, shape)
            labels = np.lib.format.open_memmap(
                folder / "labels.npy", "w+", np.uint8, (len(split), *masks.shape[1:])
            )
        features[positions.numpy()] = batch_features
        labels[positions.numpy()] = masks.numpy().astype(np.uint8)
    features.flush()
    labels.flush()
    del features, labels
    meta = {"format": FORMAT, "images": len(split), "sha256": {}}
    for name in ("features.npy", "labels.npy"):
        meta["sha256"][name] = _sha256(folder / name)
    (folder / "meta.json").write_text(json.dumps(meta))


def cached_split(
    split: SegmentationSplit, backbone, cache_dir: str | Path, batch_size: int, device
) -> CachedSplit:
    """The split's cache entry, built now if missing or damaged (the backbone runs here, not in data/)."""
    folder = Path(cache_dir) / cache_key(split, backbone)
    if folder.exists() and not _is_valid(folder):
        log.warning("feature cache %s is incomplete or corrupt; rebuilding it", folder)
        shutil.rmtree(folder, ignore_errors=True)
    if not folder.exists():
        _build(folder, split, backbone, batch_size, device)
    else:
        log.info("reusing cached features from %s", folder)
    return CachedSplit(folder, split.image_ids)
