"""The continuous reference (--quantizer_type none): a quantizer's modules with its quantization replaced
by the identity."""

import pytest
import torch
from helpers import (
    TINY,
    one_line_error,
    parse,
    run_cli,
    tiny_datamodule,
    torchmetrics_miou,
    visualize_summary,
)

from embeddings_squeeze import squeeze
from embeddings_squeeze.engine.checkpoint import load_module
from embeddings_squeeze.engine.rate import payload_coder
from embeddings_squeeze.models.quantizers import build_quantizer, quantizer_config, reference_config
from embeddings_squeeze.utils.payload import HEADER


def test_it_sends_its_latent_as_float16_and_splits_the_loss(trained, pet_root, tmp_path, capsys):
    argv = [*TINY, "--data_path", pet_root, "--output_dir", tmp_path / "runs", "--epochs", 1,
            "--quantizer_type", "none", "--bottleneck_dim", 8]  # fmt: skip
    checkpoint = squeeze.main(parse(squeeze, *argv))
    module = load_module(checkpoint, "squeezed")
    data = tiny_datamodule(pet_root)
    data.setup()
    image = data.files["test"][0][0]
    features, sent = module.encode_image(image)
    # the receiver rebuilds exactly the float16-rounded latent, and the head sees it in eval mode
    latent = module.bottleneck.latent(features)
    assert torch.equal(module.bottleneck.dequantize(sent[None]), latent.half().float())
    coder = payload_coder(module)
    payload = coder.encode(sent, (91, 96))
    assert len(payload) == HEADER.size + 8 * 16 * 2  # 8 channels at 4 x 4 positions, 2 bytes each
    decoded, size = coder.decode(payload)
    assert torch.equal(decoded, sent) and size == (91, 96)

    summary = visualize_summary(trained["baseline"], trained["vq"], pet_root, tmp_path / "vis",
                                "--reference_checkpoint", checkpoint)  # fmt: skip
    assert summary["reference_miou"] == pytest.approx(torchmetrics_miou(module, data), abs=1e-6)
    expected = summary["squeezed_miou"] - summary["reference_miou"]
    assert summary["miou_difference_vs_reference"] == pytest.approx(expected)
    low, high = summary["miou_difference_vs_reference_ci"]
    assert low <= summary["miou_difference_vs_reference"] <= high
    assert "the quantization alone" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["vq", "rvq", "eb", "fsq", "lfq"])
def test_each_type_s_reference_is_its_own_modules_with_the_quantization_replaced_by_the_identity(kind):
    config = quantizer_config({"quantizer_type": kind, "num_vectors": 64, "bottleneck_dim": 8})
    quantizer = build_quantizer(32, config, 64 * 64).eval()
    reference = build_quantizer(32, reference_config(config), 64 * 64).eval()
    # every module the reference has, the quantizer has under the same name and shape: give it the weights
    shared = reference.state_dict()
    assert {key: tuple(v.shape) for key, v in shared.items()} == {
        key: tuple(v.shape) for key, v in quantizer.state_dict().items() if key in shared
    }
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in quantizer.parameters():
            parameter.normal_()
    reference.load_state_dict({key: quantizer.state_dict()[key] for key in shared})
    features = torch.randn(2, 32, 3, 3)
    # the quantizer's own modules, with the identity where it quantizes
    coded = kind in ("fsq", "lfq")
    code = quantizer.to_code(quantizer.latent(features)) if coded else quantizer.latent(features)
    back = quantizer.from_code(code.half().float()) if coded else code.half().float()
    assert torch.allclose(reference(features).features, quantizer.project_out(back), atol=1e-5)
    assert reference.channels == (quantizer.code_channels(config) or 8)  # what it sends, as float16


def test_a_reference_for_a_type_without_code_modules_is_refused_in_one_line(pet_root, tmp_path, capsys):
    argv = ["squeeze", *TINY, "--data_path", pet_root, "--output_dir", tmp_path, "--epochs", 1,
            "--quantizer_type", "none", "--reference_for", "vq", "--code_channels", 4]  # fmt: skip
    assert run_cli(*argv) == 2
    assert "--reference_for takes a type with modules around its quantization (fsq, lfq), not 'vq'" in (
        one_line_error(capsys)
    )
