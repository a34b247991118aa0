"""The commands on a CUDA device, on tiny data; skipped where there is none.

python -m pytest -m gpu          (benchmarks/gpu_check.sh runs this)
"""

import pytest
import torch
from helpers import parse, visualize_summary

from embeddings_squeeze import decode, encode, squeeze, sweep, train_baseline
from embeddings_squeeze.engine.checkpoint import load_module

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
ON_GPU = ["--weights", "none", "--image_size", 64, "--batch_size", 4, "--accelerator", "gpu"]


def encode_and_decode_on_gpu(checkpoint, pet_root, folder):
    images = sorted((pet_root / "oxford-iiit-pet" / "images").glob("*.jpg"))[:3]
    payloads = encode.main(
        parse(encode, "--checkpoint", checkpoint, *images, "-o", folder / "esq", "--accelerator", "gpu")
    )
    masks = decode.main(
        parse(decode, "--checkpoint", checkpoint, *payloads, "-o", folder / "png", "--accelerator", "gpu")
    )
    assert [path.stem for path in masks] == [path.stem for path in images]


def test_every_command_runs_on_cuda(pet_root, tmp_path):
    common = [*ON_GPU, "--data_path", pet_root, "--output_dir", tmp_path / "runs", "--epochs", 2]
    baseline = train_baseline.main(parse(train_baseline, *common, "--experiment_name", "gpu"))
    vq = squeeze.main(parse(squeeze, *common, "--experiment_name", "gpu_vq", "--num_vectors", 8))
    assert load_module(vq, "squeezed").bottleneck.code_histogram.sum() > 0
    summary = visualize_summary(baseline, vq, pet_root, tmp_path / "vis", "--accelerator", "gpu")
    assert summary["rate"]["images"] == 6 and (tmp_path / "vis" / "best_results_test.png").is_file()

    encode_and_decode_on_gpu(vq, pet_root, tmp_path)

    rows = sweep.main(
        parse(
            sweep,
            *ON_GPU,
            "--data_path",
            pet_root,
            "--output_dir",
            tmp_path / "sweep",
            "--epochs",
            1,
            "--num_vectors",
            8,
            "--jpeg_qualities",
            50,
        )  # fmt: skip
    )
    assert [row["kind"] for row in rows][:2] == ["baseline", "squeezed"]


def test_entropy_bottleneck_on_cuda(pet_root, tmp_path):
    """Train, code and decode the learned entropy bottleneck on the GPU; its payloads decode to the
    masks it scores, and the coding tables live beside the module."""
    common = [*ON_GPU, "--data_path", pet_root, "--output_dir", tmp_path / "runs", "--epochs", 2]
    eb = squeeze.main(parse(squeeze, *common, "--experiment_name", "gpu_eb", "--quantizer_type", "eb"))
    encode_and_decode_on_gpu(eb, pet_root, tmp_path)
