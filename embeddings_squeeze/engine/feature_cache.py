"""Backbone features computed once per image, stored on disk and reused by later epochs and runs.

The backbone is frozen and there is no image augmentation, so an image's features never change.
A cache entry holds one split's features and label maps. Features are computed one image at a
time and stored in float16, exactly as a sender computes them, so cached and live runs see
identical numbers; the arrays are memory-mapped (the OS keeps small caches in RAM, large ones are
paged from disk). The entry's key covers everything they depend on: the split's image and
mask files (names, sizes, modification times), image size, how masks became labels (dataset,
mode, classes), backbone and its feature layer, frozen-weights identity and package version.
Any change gives a new key.

An entry is built in a private temporary folder (named by host, pid and a random part, so builders
on different machines of a shared filesystem never collide) and renamed into place when complete.
One process builds an entry while others wait: it holds ``<key>.lock`` and refreshes its time while
it works; a lock untouched for ``STALE_LOCK_SECONDS`` belonged to a process that died and is taken
over. ``meta.json`` records each array's size and modification time at build, checked on every read
(cheap, unlike re-hashing hundreds of MB in every job); an entry that does not match is moved aside,
never deleted (another process may be reading it), and rebuilt. A just-built entry that another
machine does not see complete yet is given a few seconds before it counts as broken.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from embeddings_squeeze import __version__
from embeddings_squeeze.data.splits import SegmentationSplit
from embeddings_squeeze.engine.inference import evaluation_batches
from embeddings_squeeze.models.backbones.base import FEATURE_DTYPE
from embeddings_squeeze.utils.files import atomic_path, unique_suffix

log = logging.getLogger(__name__)
FORMAT = 3  # 2: features computed one image at a time; 3: sizes and times recorded instead of hashes
ARRAYS = ("features.npy", "labels.npy")
STALE_LOCK_SECONDS = 300  # a builder refreshes its lock at every batch, far more often than this
VISIBLE_WITHIN_SECONDS = 10  # how long a shared filesystem may take to show another machine's entry


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
        "precision": backbone.feature_precision,
    }
    return hashlib.sha256(json.dumps(description).encode()).hexdigest()[:24]


class CachedSplit(Dataset):
    """A split served from the cache: (features (C, h, w) float32, labels (S, S), position)."""

    def __init__(self, folder: Path, image_ids: list[str]):
        self.folder = folder
        self.features = np.load(folder / "features.npy", mmap_mode="r")
        self.labels = np.load(folder / "labels.npy", mmap_mode="r")
        self.image_ids = image_ids

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, position: int):
        features = torch.from_numpy(np.array(self.features[position], dtype=np.float32))
        labels = torch.from_numpy(self.labels[position].astype(np.int64))
        return features, labels, position


def _file_stamps(folder: Path) -> dict:
    return {name: [(folder / name).stat().st_size, (folder / name).stat().st_mtime_ns] for name in ARRAYS}


def _is_valid(folder: Path) -> bool:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        return meta["format"] == FORMAT and _file_stamps(folder) == meta["files"]
    except (OSError, ValueError, KeyError):
        return False


def _is_valid_soon(folder: Path) -> bool:
    """``_is_valid``, allowing a shared filesystem a few seconds to show a just-built entry whole."""
    deadline = time.monotonic() + VISIBLE_WITHIN_SECONDS
    while not _is_valid(folder):
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


@contextmanager
def _build_lock(lock: Path):
    """Hold ``lock`` (created exclusively) while building; wait while another live process holds it.
    Yields a function that refreshes the lock's time."""
    said = False
    while True:
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                idle = time.time() - lock.stat().st_mtime
            except FileNotFoundError:
                continue  # released just now
            if idle > STALE_LOCK_SECONDS:  # its builder died: move the lock aside and try again
                log.warning("taking over the feature cache lock %s, untouched for %.0f s", lock, idle)
                try:
                    os.replace(lock, lock.with_name(f"{lock.name}.stale-{unique_suffix()}"))
                except FileNotFoundError:
                    pass
                continue
            if not said:  # a job that seems to hang says what it waits for
                log.info("waiting for %s: another process is building this feature cache entry", lock)
                said = True
            time.sleep(1)
    try:
        os.write(descriptor, unique_suffix().encode())
        os.close(descriptor)
        yield lambda: os.utime(lock)
    finally:
        lock.unlink(missing_ok=True)


def _build(
    folder: Path, split: SegmentationSplit, backbone, batch_size: int, device: torch.device, heartbeat
) -> None:
    """Compute every image's features into a private folder, then rename it to ``folder``."""
    try:
        with atomic_path(folder) as temporary:
            _write_entry(temporary, split, backbone, batch_size, device, heartbeat)
    except OSError:
        if not folder.is_dir():
            raise
        # a process whose lock was taken for dead finished the same entry first: keep theirs


def _write_entry(
    folder: Path, split: SegmentationSplit, backbone, batch_size: int, device: torch.device, heartbeat
) -> None:
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
        heartbeat()
    features.flush()
    labels.flush()
    del features, labels
    meta = {
        "format": FORMAT,
        "images": len(split),
        "built_by": unique_suffix(),
        "files": _file_stamps(folder),
    }
    (folder / "meta.json").write_text(json.dumps(meta))


def cached_split(
    split: SegmentationSplit, backbone, cache_dir: str | Path, batch_size: int, device
) -> CachedSplit:
    """The split's cache entry, built now if missing or broken (the backbone runs here, not in data/)."""
    folder = Path(cache_dir) / cache_key(split, backbone)
    if folder.exists() and _is_valid_soon(folder):
        log.info("reusing cached features from %s", folder)
        return CachedSplit(folder, split.image_ids)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(folder.with_name(f"{folder.name}.lock")) as heartbeat:
        if folder.exists() and not _is_valid(folder):  # broken, or changed since it was built
            aside = folder.with_name(f"{folder.name}.stale-{unique_suffix()}")
            os.replace(folder, aside)
            log.warning(
                "feature cache %s was changed or is corrupt (its arrays differ from their build); moved "
                "aside to %s (delete it when no job uses it) and rebuilt", folder, aside.name,
            )  # fmt: skip
        if folder.exists():  # another process built it while this one waited for the lock
            log.info("reusing cached features from %s", folder)
        else:
            log.info("building the feature cache entry %s (%d images)", folder, len(split))
            _build(folder, split, backbone, batch_size, device, heartbeat)
    return CachedSplit(folder, split.image_ids)
