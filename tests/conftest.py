"""Shared fixtures: a tiny synthetic Oxford-IIIT Pet tree and two tiny trained runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import TINY, parse
from hypothesis import settings
from torchvision.models import vit_b_32

from embeddings_squeeze import squeeze, train_baseline
from embeddings_squeeze.data.synthetic import make_synthetic_dataset
from embeddings_squeeze.data.synthetic_scenes import make_synthetic_folder, make_synthetic_voc

# Hypothesis draws the same examples on every machine and keeps no example database in the checkout
settings.register_profile("embeddings_squeeze", database=None, derandomize=True, deadline=None)
settings.load_profile("embeddings_squeeze")

# every proxy variable points at a local port nothing listens on: a download attempt fails at once
UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture(scope="session", autouse=True)
def unreachable_network():
    """No test downloads anything, on a connected machine too: downloads through urllib (torch hub,
    torchvision datasets), requests and httpx (Hugging Face) go to a port that refuses them.
    Tests of what an unreachable download does name this fixture to say they rely on it."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("http_proxy", "https_proxy", "all_proxy"):
            patch.setenv(name, UNREACHABLE)
            patch.setenv(name.upper(), UNREACHABLE)
        for name in ("no_proxy", "NO_PROXY"):
            patch.delenv(name, raising=False)
        patch.setenv("HF_HUB_OFFLINE", "1")  # read when the hub is imported: subprocesses
        yield UNREACHABLE


@pytest.fixture(scope="session")
def pet_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pets")
    make_synthetic_dataset(root, n_trainval=16, n_test=6, seed=0, min_size=48, max_size=96)
    return root


@pytest.fixture(scope="session")
def voc_root(tmp_path_factory) -> Path:
    """A tiny synthetic Pascal VOC 2012 tree: 12 images in the train list, 4 in val."""
    root = tmp_path_factory.mktemp("voc")
    make_synthetic_voc(root, n_train=12, n_val=4, seed=0, min_size=48, max_size=80)
    return root


@pytest.fixture(scope="session")
def folder_root(tmp_path_factory) -> Path:
    """A tiny synthetic image folder (images/, masks/, classes.json, splits.json): 12 train, 4 test."""
    root = tmp_path_factory.mktemp("folder") / "mine"
    make_synthetic_folder(root, n_train=12, n_test=4, seed=0, min_size=48, max_size=80)
    return root


@pytest.fixture(scope="session")
def torchvision_cache(tmp_path_factory) -> tuple[Path, dict]:
    """A torchvision cache (TORCH_HOME) holding a stand-in for ViT-B/32's ImageNet weights under their
    real file name, and that state dict: torchvision's own loading path runs, offline."""
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    state = vit_b_32().state_dict()
    torch.save(state, home / "hub" / "checkpoints" / "vit_b_32-d86f8d99.pth")
    return home, state


@pytest.fixture(scope="session")
def trained(pet_root, tmp_path_factory) -> dict[str, Path]:
    """One ViT baseline and one VQ run, two epochs each, sharing data and seed."""
    outputs = tmp_path_factory.mktemp("outputs")
    common = [*TINY, "--data_path", pet_root, "--output_dir", outputs, "--epochs", 2, "--seed", 3]
    baseline = train_baseline.main(parse(train_baseline, *common, "--experiment_name", "tiny"))
    vq = squeeze.main(parse(squeeze, *common, "--experiment_name", "tiny_vq", "--num_vectors", 8))
    return {"baseline": baseline, "vq": vq, "outputs": outputs}


@pytest.fixture(scope="session")
def slurm_cluster():
    """The SLURM cluster up on this machine (``.ci/run`` starts a one-node one with
    ``scripts/local_slurm.sh start``); the tests install nothing and write nothing outside their
    temporary folders, so they skip with one line where none answers."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "local_slurm.sh"
    if subprocess.run([script, "status"], capture_output=True).returncode != 0:
        pytest.skip(
            "no SLURM cluster answers here: start one with scripts/local_slurm.sh start (as .ci/run does)"
        )


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium at 1,280 px wide through its WebDriver, as ``.ci/run`` installs them
    (``scripts/local_browser.sh install``); the tests install nothing, so they skip with one line
    where either is missing."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("no Chromium here: install it with scripts/local_browser.sh install (as .ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1280,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as patch:
        # the WebDriver is on this machine; everything else stays unreachable (the pages need nothing)
        patch.setenv("no_proxy", "localhost,127.0.0.1")
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        yield driver
        driver.quit()
