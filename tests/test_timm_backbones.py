"""timm backbones: feature maps against timm's own computations, config-driven normalisation, weights."""

import huggingface_hub.constants
import pytest
import timm
import torch
from timm.data import resolve_data_config

from embeddings_squeeze.config import DataConfig, ModelConfig
from embeddings_squeeze.engine.setup import datamodule_for
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.backbones import backbone_normalization, build_backbone
from embeddings_squeeze.models.backbones.base import frozen_fingerprint


def test_cnn_gives_its_last_stage_by_default_and_the_chosen_one_on_request():
    backbone = build_backbone("timm:resnet18", num_classes=4, weights="none", image_size=64)
    plain = timm.create_model("resnet18", num_classes=0).eval()
    plain.load_state_dict(backbone.encoder.state_dict())  # features_only keeps the module names
    images = torch.randn(2, 3, 64, 64)
    assert backbone.out_channels == 512
    with torch.no_grad():
        assert torch.allclose(backbone.encode(images), plain.forward_features(images), atol=1e-5)
    assert backbone(images)["out"].shape == (2, 4, 64, 64)
    stage = build_backbone("timm:resnet18", num_classes=4, weights="none", image_size=64, feature_layer=2)
    assert stage.out_channels == 128 and stage.features(images).shape == (2, 128, 8, 8)


def test_transformer_tokens_laid_out_on_the_patch_grid_without_the_class_token():
    backbone = build_backbone("timm:vit_tiny_patch16_224", num_classes=3, weights="none", image_size=64)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = backbone.encode(images)
        # timm's own reshaping of the same tokens (prefix tokens dropped, final norm applied)
        theirs = backbone.encoder.forward_intermediates(
            images, indices=1, norm=True, output_fmt="NCHW", intermediates_only=True
        )[0]
    assert ours.shape == (2, 192, 4, 4) and backbone.out_channels == 192
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_register_tokens_are_dropped_too():
    backbone = build_backbone(
        "timm:vit_small_patch14_reg4_dinov2", num_classes=3, weights="none", image_size=56
    )
    assert backbone.encoder.num_prefix_tokens == 5  # class token and four registers
    assert backbone.features(torch.randn(1, 3, 56, 56)).shape == (1, 384, 4, 4)


def test_normalisation_comes_from_the_models_config(tmp_path):
    for name in ("vit_tiny_patch16_224", "resnet18"):
        expected = resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(name).to_dict())
        assert backbone_normalization(f"timm:{name}") == (tuple(expected["mean"]), tuple(expected["std"]))
    assert backbone_normalization("timm:vit_tiny_patch16_224")[0] == (0.5, 0.5, 0.5)
    model = ModelConfig(backbone="timm:vit_tiny_patch16_224", weights="none", image_size=64)
    datamodule = datamodule_for(DataConfig(data_path=str(tmp_path)), model, seed=0)
    assert datamodule.image_transform.mean == [0.5, 0.5, 0.5]


def test_random_timm_backbone_is_a_function_of_its_seed():
    first = build_backbone("timm:resnet18", num_classes=3, weights="none", image_size=64, seed=5)
    again = build_backbone("timm:resnet18", num_classes=3, weights="none", image_size=64, seed=5)
    other = build_backbone("timm:resnet18", num_classes=3, weights="none", image_size=64, seed=6)
    assert first.weights_id == again.weights_id == f"sha256:{frozen_fingerprint(again.encoder)}"
    assert other.weights_id != first.weights_id
    assert first.provenance == {"timm_model": "resnet18", "timm_version": timm.__version__}


def test_weights_file_is_loaded_through_timms_own_path(tmp_path):
    reference = timm.create_model("resnet18")  # with its ImageNet classifier, as files usually are
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    backbone = build_backbone("timm:resnet18", num_classes=3, weights=str(path), image_size=64)
    assert torch.equal(backbone.encoder.conv1.weight, reference.conv1.weight)
    assert backbone.weights_id == f"sha256:{frozen_fingerprint(backbone.encoder)}"
    wrong = tmp_path / "vit.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224").state_dict(), wrong)
    tensors = len(timm.create_model("resnet18", num_classes=0).state_dict())  # none of them in the file
    with pytest.raises(UserError, match=f"lacks {tensors} of the {tensors} tensors of timm model resnet18"):
        build_backbone("timm:resnet18", num_classes=3, weights=str(wrong), image_size=64)


def test_pretrained_weights_offline_say_what_to_do(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail now, not after retries
    monkeypatch.setenv("HF_HOME", "/nonexistent")
    with pytest.raises(UserError, match="could not download timm's pretrained weights.*--weights none"):
        build_backbone("timm:resnet18", num_classes=3, weights="default", image_size=64)


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("timm:resnet_18", {}, "unknown timm model 'resnet_18'.*did you mean timm:resnet18"),
        (
            "timm:resnet18",
            {"feature_layer": 9},
            "--feature_layer 9 is not a stage.*4: 512 channels, stride 32",
        ),
        ("timm:vit_tiny_patch16_224", {"feature_layer": 1}, "is a transformer"),
        ("timm:vit_tiny_patch16_224", {"image_size": 60}, "multiple of 16, got 60; try 64"),
        ("vit", {"feature_layer": 1}, "applies to timm CNNs"),
    ],
)
def test_bad_requests_end_in_one_clear_message(name, options, message):
    with pytest.raises(UserError, match=message):
        build_backbone(name, num_classes=3, weights="none", **{"image_size": 64, **options})
