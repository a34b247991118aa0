"""Shared fixtures: a tiny synthetic Oxford-IIIT Pet tree and two tiny trained runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import TINY, parse

from embeddings_squeeze import squeeze, train_baseline
from embeddings_squeeze.data.synthetic import make_synthetic_dataset


@pytest.fixture(scope="session")
def pet_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pets")
    make_synthetic_dataset(root, n_trainval=16, n_test=6, seed=0, min_size=48, max_size=96)
    return root


@pytest.fixture(scope="session")
def trained(pet_root, tmp_path_factory) -> dict[str, Path]:
    """One ViT baseline and one VQ run, two epochs each, sharing data and seed."""
    outputs = tmp_path_factory.mktemp("outputs")
    common = [*TINY, "--data_path", pet_root, "--output_dir", outputs, "--epochs", 2, "--seed", 3]
    baseline = train_baseline.main(parse(train_baseline, *common, "--experiment_name", "tiny"))
    vq = squeeze.main(parse(squeeze, *common, "--experiment_name", "tiny_vq", "--num_vectors", 8))
    return {"baseline": baseline, "vq": vq, "outputs": outputs}
