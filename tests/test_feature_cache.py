import logging
import os
import threading
import time

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from helpers import TEST_MODEL, tiny_datamodule, tiny_model, vq_module

from embeddings_squeeze.config import QuantizerConfig
from embeddings_squeeze.engine import feature_cache
from embeddings_squeeze.engine.feature_cache import STALE_LOCK_SECONDS, cache_key, cached_split
from embeddings_squeeze.models.backbones import build_backbone
from embeddings_squeeze.models.quantizers.vq import CodebookSettings


def datamodule(root):
    module = tiny_datamodule(root)
    module.setup()
    return module


def test_cached_split_matches_the_backbone(pet_root, tmp_path):
    data = datamodule(pet_root)
    backbone = build_backbone(TEST_MODEL, 3, weights="none", image_size=64)
    cached = cached_split(data.splits["val"], backbone, tmp_path, 4, torch.device("cpu"))
    for position in range(len(cached)):
        features, labels, index = cached[position]
        image, expected_labels, _ = data.splits["val"][position]
        expected = backbone.features(image.unsqueeze(0))[0]  # what a sender computes for this image
        assert index == position and torch.equal(labels, expected_labels)
        # one precision everywhere: cached features are exactly the live ones, not just close
        assert torch.equal(features, expected)


def test_key_changes_with_any_input(pet_root, tmp_path):
    split = datamodule(pet_root).splits["train"]
    backbone = build_backbone(TEST_MODEL, 3, weights="none", image_size=64)
    key = cache_key(split, backbone)
    larger = tiny_datamodule(pet_root, tiny_model(image_size=96))
    larger.setup()
    assert cache_key(larger.splits["train"], backbone) != key
    binary = tiny_datamodule(pet_root, tiny_model(mask_mode="binary"))
    binary.setup()
    assert cache_key(binary.splits["train"], backbone) != key
    other = build_backbone(TEST_MODEL, 3, weights="none", image_size=64, seed=1)  # other random weights
    assert cache_key(split, other) != key
    backbone.feature_precision = "bfloat16"  # the same weights run in another precision
    assert cache_key(split, backbone) != key
    backbone.feature_precision = "float32"
    image = split.image_paths[0]
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        assert cache_key(split, backbone) != key
    finally:
        os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_corrupt_entry_is_rebuilt(pet_root, tmp_path, caplog, monkeypatch):
    # a local folder shows a finished entry at once: no waiting for a shared filesystem to catch up
    monkeypatch.setattr(feature_cache, "VISIBLE_WITHIN_SECONDS", 0)
    split = datamodule(pet_root).splits["val"]
    backbone = build_backbone(TEST_MODEL, 3, weights="none", image_size=64)
    first = cached_split(split, backbone, tmp_path, 4, torch.device("cpu"))
    reference = np.array(first.features)
    entry = next(p for p in tmp_path.iterdir() if p.is_dir())
    del first
    with open(entry / "features.npy", "r+b") as handle:  # flip bytes inside the array
        handle.seek(-8, os.SEEK_END)
        handle.write(b"\x00\x7c" * 4)
    rebuilt = cached_split(split, backbone, tmp_path, 4, torch.device("cpu"))
    assert "corrupt" in caplog.text
    assert np.array_equal(np.array(rebuilt.features), reference)
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_a_builder_waits_while_another_holds_the_lock_then_uses_its_entry(pet_root, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="embeddings_squeeze.engine.feature_cache")
    split = datamodule(pet_root).splits["val"]
    backbone = build_backbone(TEST_MODEL, 3, weights="none", image_size=64)
    cache, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    entry = cache / cache_key(split, backbone)
    cache.mkdir()
    lock = cache / f"{entry.name}.lock"
    lock.write_text("another process, building")
    served = []
    waiting = threading.Thread(target=lambda: served.append(cached_split(split, backbone, cache, 4, "cpu")))
    waiting.start()
    deadline = time.monotonic() + 120
    while "another process is building" not in caplog.text:  # the waiter has met the lock
        assert waiting.is_alive() and time.monotonic() < deadline, caplog.text
        time.sleep(0.05)
    assert not entry.exists() and "building the feature cache entry" not in caplog.text
    # the other process finishes: its entry appears, then its lock goes
    built = cached_split(split, backbone, elsewhere, 4, "cpu")
    os.replace(elsewhere / entry.name, entry)
    lock.unlink()
    waiting.join(timeout=120)
    assert len(served) == 1 and np.array_equal(np.array(served[0].features), np.array(built.features))
    assert caplog.text.count("building the feature cache entry") == 1  # the other's build, not a second
    assert f"reusing cached features from {entry}" in caplog.text and not lock.exists()


def test_a_lock_left_by_a_dead_builder_is_taken_over(pet_root, tmp_path, caplog):
    split = datamodule(pet_root).splits["val"]
    backbone = build_backbone(TEST_MODEL, 3, weights="none", image_size=64)
    lock = tmp_path / f"{cache_key(split, backbone)}.lock"
    lock.write_text("a process that died")
    old = time.time() - 2 * STALE_LOCK_SECONDS
    os.utime(lock, (old, old))
    cached = cached_split(split, backbone, tmp_path, 4, "cpu")
    assert len(cached) == len(split) and "taking over the feature cache lock" in caplog.text
    assert [p.name for p in tmp_path.iterdir() if ".lock.stale-" in p.name]  # moved aside, not deleted


def fit_vq(root, cache_dir=None):
    pl.seed_everything(0)
    data = datamodule(root)
    settings = CodebookSettings(dead_code_threshold=0)
    module = vq_module(QuantizerConfig(num_vectors=8, settings=settings))
    if cache_dir is not None:
        for name in ("train", "val"):
            data.serve(name, cached_split(data.splits[name], module.backbone, cache_dir, 4, "cpu"))
    pl.seed_everything(1)
    trainer = pl.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    return trainer.callback_metrics


def test_cached_training_matches_uncached(pet_root, tmp_path):
    uncached = fit_vq(pet_root)
    cached = fit_vq(pet_root, tmp_path)
    for name in ("train/loss", "val/loss", "val/miou", "val/perplexity"):
        assert cached[name].item() == pytest.approx(uncached[name].item(), rel=2e-2, abs=2e-2), name
