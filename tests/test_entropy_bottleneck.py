"""The learned entropy-coding baseline (--quantizer_type eb): training, rate, payloads, commands."""

import json
import math

import numpy as np
import pytest
import torch
from helpers import (
    TINY,
    encode_and_decode_files,
    forward_mask,
    parse,
    tiny_datamodule,
    tiny_model,
    visualize_summary,
)
from PIL import Image
from torchmetrics.classification import MulticlassJaccardIndex

from embeddings_squeeze import decode, encode, squeeze
from embeddings_squeeze.config import OptimizerConfig, QuantizerConfig
from embeddings_squeeze.data.labels import IGNORE_INDEX
from embeddings_squeeze.engine.checkpoint import load_module
from embeddings_squeeze.engine.rate import payload_coder
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models import SqueezedSegmentationModule
from embeddings_squeeze.models.quantizers.eb import EntropyBottleneckQuantizer, EntropySettings
from embeddings_squeeze.utils.payload import HEADER


def eb_module(backbone=None, rate_lambda=1.0, optimizer=OptimizerConfig()) -> SqueezedSegmentationModule:
    """A squeezed module with a 4-channel entropy bottleneck on the tests' backbone (or ``backbone``)."""
    model = tiny_model(backbone=backbone) if backbone else tiny_model()
    config = QuantizerConfig("eb", bottleneck_dim=4, settings=EntropySettings(rate_lambda=rate_lambda))
    return SqueezedSegmentationModule(model, config, optimizer)


@pytest.fixture(scope="module")
def eb_run(pet_root, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("eb")
    args = parse(squeeze, *TINY, "--data_path", pet_root, "--output_dir", output_dir, "--epochs", 2,
                 "--quantizer_type", "eb", "--bottleneck_dim", 8, "--rate_lambda", 0.5)  # fmt: skip
    return squeeze.main(args)


def test_rate_term_is_bits_per_pixel_under_the_density():
    module = eb_module(backbone="vit", rate_lambda=2.0).eval()
    features = torch.randn(2, 768, 2, 2)
    _, loss, record = module.squeeze(features)  # record: the Squeezed pass
    bits = record.record["bits"]
    symbols = module.bottleneck.encode(features)
    latent = (symbols.float() + module.bottleneck.medians()).permute(0, 3, 1, 2)
    _, likelihoods = module.bottleneck.entropy_bottleneck(latent, training=False)
    by_hand = -np.log2(likelihoods.detach().numpy()).sum(axis=(1, 2, 3))
    assert np.allclose(bits.detach().numpy(), by_hand, rtol=1e-5)
    assert loss.item() == pytest.approx(2.0 * by_hand.mean() / 64**2, rel=1e-5)  # eval: no auxiliary loss


def test_trained_checkpoint_codes_payloads_of_its_measured_size(eb_run, pet_root, tmp_path):
    rate = json.loads((eb_run.parent / "rate.json").read_text())
    assert rate["quantizer_type"] == "eb" and rate["channels"] == 8 and rate["images"] > 0
    module = load_module(eb_run, "squeezed")  # a squeezed model answers wherever a VQ checkpoint is asked for
    assert isinstance(module.bottleneck, EntropyBottleneckQuantizer)
    assert module.bottleneck.entropy_bottleneck._quantized_cdf.numel() > 0  # the tables travel with it

    _, files = encode_and_decode_files(eb_run, pet_root, tmp_path)
    coder = payload_coder(module)
    for pixels, payload, labels in files:
        _, symbols = module.encode_image(pixels)
        assert torch.equal(coder.decode(payload)[0], symbols)
        # CompressAI's bitstream costs about what the density says, plus the header
        bits = module.bottleneck.bits(symbols[None]).item()
        assert len(payload) - HEADER.size <= math.ceil(bits / 8) + 16
        assert torch.equal(labels, forward_mask(module, pixels, labels.shape))


def test_damaged_or_foreign_payloads_are_refused(eb_run, trained, pet_root, tmp_path):
    module = load_module(eb_run, "squeezed")
    coder = payload_coder(module)
    _, symbols = module.encode_image(torch.zeros(3, 64, 64))
    payload = coder.encode(symbols, (64, 64))
    body = HEADER.size
    for damaged in (payload[:-1], payload[:body] + bytes([payload[body] ^ 0x40]) + payload[body + 1 :],
                    payload[:body], payload[:7] + bytes([payload[7] ^ 0x01]) + payload[8:]):  # fmt: skip
        with pytest.raises(UserError, match="corrupt|truncated"):
            coder.decode(damaged)
    with pytest.raises(UserError, match="too short"):
        coder.decode(payload[: body - 1])
    with pytest.raises(UserError, match="another checkpoint"):
        payload_coder(load_module(trained["vq"], "squeezed")).decode(payload)


def test_unlikely_symbols_escape_to_a_raw_body_that_caps_the_payload(eb_run):
    module = load_module(eb_run, "squeezed")
    coder = payload_coder(module)
    grid = module.backbone.grid_size(module.hparams.image_size)
    generator = torch.Generator().manual_seed(0)
    symbols = torch.randint(-300, 300, (*grid, 8), generator=generator)  # far outside the learned density
    payload = coder.encode(symbols, (50, 60))
    values = symbols.numel()
    bits = (int(symbols.max()) - int(symbols.min())).bit_length()  # 10: a span of under 600
    # the header, the smallest value (4 bytes) and the bit width (1), then 10 bits a value
    assert len(payload) == HEADER.size + 5 + math.ceil(values * bits / 8)
    assert payload[0] & 0x80  # flagged as a fixed-length body
    decoded, size = coder.decode(payload)
    assert torch.equal(decoded, symbols) and size == (50, 60)
    with pytest.raises(UserError, match="truncated or corrupt"):
        coder.decode(payload[:-1])


def test_visualize_scores_what_the_receiver_decodes(eb_run, trained, pet_root, tmp_path, capsys):
    summary = visualize_summary(
        trained["baseline"], eb_run, pet_root, tmp_path / "vis", "--n_best", 1, "--n_worst", 1
    )
    assert summary["rate"]["quantizer_type"] == "eb" and summary["rate"]["images"] == 6
    assert "rate per image (eb" in capsys.readouterr().out
    # the receiver's side, through the commands: the test images encoded, their payloads decoded
    data = tiny_datamodule(pet_root)
    data.setup()
    split = data.files["test"]
    payloads = encode.main(parse(encode, "--checkpoint", eb_run, *split.image_paths, "-o", tmp_path / "esq"))
    masks = decode.main(parse(decode, "--checkpoint", eb_run, *payloads, "-o", tmp_path / "png"))
    targets = {
        image_id: split.load(p, split.transform.native_labels) for p, image_id in enumerate(split.image_ids)
    }
    metric = MulticlassJaccardIndex(3, ignore_index=IGNORE_INDEX)
    for path in masks:
        with Image.open(path) as mask:
            metric.update(torch.from_numpy(np.array(mask)).long()[None], targets[path.stem][None])
    assert summary["squeezed_miou"] == pytest.approx(metric.compute().item(), abs=1e-6)
    sizes = [path.stat().st_size for path in payloads]
    assert summary["rate"]["payload_bytes_mean"] == pytest.approx(sum(sizes) / len(sizes))


def test_density_learns_faster_without_weight_decay():
    module = eb_module(optimizer=OptimizerConfig(lr=2e-3, weight_decay=1e-4))
    main, density = module.configure_optimizers().param_groups
    assert {id(p) for p in density["params"]} == {
        id(p) for p in module.bottleneck.entropy_bottleneck.parameters()
    }
    assert density["lr"] == pytest.approx(2e-2) and density["weight_decay"] == 0.0
    assert main["lr"] == 2e-3 and main["weight_decay"] == 1e-4
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    assert {id(p) for p in main["params"]} | {id(p) for p in density["params"]} == trainable


def test_features_are_standardised_with_training_statistics(eb_run, pet_root):
    module = load_module(eb_run, "squeezed")
    datamodule = tiny_datamodule(pet_root)  # the run's split: the default --split_seed
    datamodule.setup()
    features = torch.cat([module.backbone.features(images) for images, *_ in datamodule.dataloader("train")])
    vectors = (
        features.double().permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    )  # the whole split: 56 < 4096
    layer = module.bottleneck.standardizer
    assert bool(layer.standardized)
    assert torch.allclose(layer.feature_mean.double(), vectors.mean(dim=0), atol=1e-3)
    assert torch.allclose(
        layer.feature_std.double(), vectors.std(dim=0, unbiased=False), rtol=1e-3, atol=1e-4
    )


def test_a_channel_constant_in_training_is_not_blown_up():
    layer = eb_module(backbone="vit").bottleneck.standardizer
    std = torch.full((768,), 2.0)
    std[:3] = torch.tensor([0.0, 1e-9, 0.05])  # dead ReLU channels and a quiet one
    layer.standardize_from(torch.zeros(768), std)
    assert layer.feature_std[:3].tolist() == pytest.approx([0.2, 0.2, 0.2])  # a tenth of the median, 2.0
    assert torch.equal(layer.feature_std[3:], std[3:])
