"""--feature_precision: what auto picks on either kind of CPU, what a run records, and that the frozen
backbone really runs in the precision it names while the rest stays float32."""

import json

import pytest
import torch
from helpers import TINY, baseline_module, parse

from embeddings_squeeze import train_baseline
from embeddings_squeeze.engine.checkpoint import build_module, read_checkpoint
from embeddings_squeeze.models.backbones import precision
from embeddings_squeeze.models.backbones.base import FEATURE_DTYPE

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx512f", "avx512_bf16"}, "bfloat16"),
        ({"amx_tile", "amx_bf16"}, "bfloat16"),
        ({"avx2", "avx512f"}, "float32"),  # bf16 would be emulated there: slower, not faster
        (set(), "float32"),
    ],
)
def test_auto_follows_the_cpu_flags(flags, expected):
    assert precision.resolve("auto", CPU, flags) == expected
    assert precision.resolve("float16", CPU, flags) == "float16"  # a choice is kept as made


def test_the_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512_bf16\nbugs\t\t: spectre_v1\n")
    assert precision.cpu_flags(cpuinfo) == {"fpu", "sse2", "avx512_bf16"}
    assert precision.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), "float32"), ((8, 0), "bfloat16")])
def test_auto_on_cuda_wants_bf16_tensor_cores(capability, expected, monkeypatch):
    # forced either way: a T4 (7.5) only emulates bf16, an A100 (8.0) and later have it in hardware
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert precision.resolve("auto", torch.device("cuda", 0)) == expected


def test_the_backbone_runs_in_its_precision_and_hands_on_float32():
    images = torch.rand(2, 3, 64, 64)
    module = baseline_module(feature_precision="bfloat16").eval()
    encoder = module.backbone
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expected = encoder.encode(images)
        assert torch.equal(encoder.features(images), expected.to(FEATURE_DTYPE).float())
        encoder.feature_precision = "float32"
        single = encoder.encode(images)
        assert single.dtype == torch.float32
        assert torch.equal(encoder.features(images), single.to(FEATURE_DTYPE).float())
        assert not torch.equal(expected.float(), single)  # the two precisions really differ


@pytest.mark.parametrize(("flags", "expected"), [({"amx_bf16"}, "bfloat16"), (set(), "float32")])
def test_a_run_records_what_auto_chose(flags, expected, pet_root, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))  # forced either way
    argv = [*TINY, "--data_path", pet_root, "--output_dir", tmp_path, "--epochs", 1, "--subset_size", 8,
            "--feature_precision", "auto"]  # fmt: skip
    checkpoint = train_baseline.main(parse(train_baseline, *argv))
    stored = read_checkpoint(checkpoint)
    assert stored["hyper_parameters"]["feature_precision"] == expected
    config = json.loads((checkpoint.parent / "config.json").read_text())
    assert config["model"]["feature_precision"] == expected
    assert build_module(stored, checkpoint).backbone.feature_precision == expected


def test_checkpoints_from_before_ran_float32(trained):
    checkpoint = read_checkpoint(trained["baseline"])
    del checkpoint["hyper_parameters"]["feature_precision"]
    assert build_module(checkpoint, trained["baseline"]).backbone.feature_precision == "float32"
