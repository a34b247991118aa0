import pytest
import torch
from torchvision.models import vit_b_32

from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.backbones import BACKBONES, build_backbone
from embeddings_squeeze.models.backbones.base import PixelClassifier, SegmentationBackbone, frozen_fingerprint

# (model, input side, expected feature grid, channels)
CASES = [("vit", 64, (2, 2), 768), ("deeplab", 64, (8, 8), 2048)]


@pytest.mark.parametrize("name,size,grid,channels", CASES)
def test_output_contract(name, size, grid, channels):
    backbone = build_backbone(name, num_classes=5, weights="none", image_size=size)  # non-default classes
    images = torch.randn(2, 3, size, size)
    assert backbone.features(images).shape == (2, channels, *grid)
    assert backbone.out_channels == channels
    out = backbone(images)
    assert set(out) == {"out"} and out["out"].shape == (2, 5, size, size)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_encoder_frozen_and_stays_in_eval(name):
    backbone = build_backbone(name, num_classes=3, weights="none", image_size=64)
    assert not any(p.requires_grad for p in backbone.encoder.parameters())
    assert all(p.requires_grad for p in backbone.head.parameters())
    backbone.train()
    assert not any(m.training for m in backbone.encoder.modules())
    assert backbone.head.training
    assert not backbone.features(torch.randn(1, 3, 64, 64)).requires_grad


def test_vit_feature_grid_at_224():
    backbone = build_backbone("vit", num_classes=3, weights="none", image_size=224)
    assert backbone.grid_size(224) == (7, 7)


def test_vit_rejects_sizes_the_patch_does_not_divide():
    with pytest.raises(UserError, match="divisible by 32, got 100; try 96"):
        build_backbone("vit", num_classes=3, weights="none", image_size=100)


def test_unknown_model():
    with pytest.raises(UserError, match="unknown --model"):
        build_backbone("resnet", num_classes=3)


def test_weights_from_a_local_file(tmp_path):
    reference = vit_b_32()
    path = tmp_path / "vit.pth"
    torch.save(reference.state_dict(), path)
    backbone = build_backbone("vit", num_classes=3, weights=str(path), image_size=224)
    assert torch.equal(backbone.encoder.conv_proj.weight, reference.conv_proj.weight)
    assert backbone.weights_id == f"sha256:{frozen_fingerprint(backbone.encoder)}"


def test_weights_file_at_another_resolution_is_interpolated(tmp_path):
    path = tmp_path / "vit.pth"
    torch.save(vit_b_32().state_dict(), path)
    backbone = build_backbone("vit", num_classes=3, weights=str(path), image_size=64)
    assert backbone.encoder.encoder.pos_embedding.shape == (1, 5, 768)


@pytest.mark.parametrize(
    "content,message",
    [(None, "not found"), (b"not a tensor file", "cannot load"), ({"x": 1}, "state dict of tensors")],
)
def test_bad_weights_files(tmp_path, content, message):
    path = tmp_path / "weights.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(UserError, match=message):
        build_backbone("vit", num_classes=3, weights=str(path), image_size=64)


def test_weights_file_of_another_model(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(UserError, match="lacks"):
        build_backbone("deeplab", num_classes=3, weights=str(path))


@pytest.mark.parametrize("name", list(BACKBONES))
def test_default_weights_offline_says_what_to_do(name, tmp_path, monkeypatch, unreachable_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache forces a real download attempt
    with pytest.raises(UserError, match="--weights none"):
        build_backbone(name, num_classes=3, weights="default", image_size=224)


def test_default_weights_load_from_torchvision_cache(torchvision_cache, monkeypatch):
    home, reference = torchvision_cache
    monkeypatch.setenv("TORCH_HOME", str(home))
    backbone = build_backbone("vit", num_classes=3, weights="default", image_size=224)
    assert backbone.weights_id == "torchvision:ViT_B_32_Weights.IMAGENET1K_V1"
    assert torch.equal(backbone.encoder.class_token, reference["class_token"])
    resized = build_backbone("vit", num_classes=3, weights="default", image_size=96)
    assert resized.features(torch.randn(1, 3, 96, 96)).shape == (1, 768, 3, 3)


def test_random_backbone_is_a_function_of_its_seed():
    torch.manual_seed(123)
    first = build_backbone("vit", 3, weights="none", image_size=64, seed=5)
    torch.manual_seed(999)
    again = build_backbone("vit", 3, weights="none", image_size=64, seed=5)
    # the frozen encoder comes from its seed alone; the global random state plays no part
    assert first.weights_id == again.weights_id
    assert torch.equal(first.encoder.conv_proj.weight, again.encoder.conv_proj.weight)


class BatchStatistics(SegmentationBackbone):
    """An encoder whose output depends on the rest of its batch, as BatchNorm in training mode does."""

    name, out_channels = "batch_statistics", 4

    def __init__(self):
        super().__init__(torch.nn.Conv2d(3, 4, 8, stride=8), PixelClassifier(4, 2), "none", ((0.5,) * 3,) * 2)

    def encode(self, images):
        encoded = self.encoder(images)
        return encoded - encoded.mean(dim=0, keepdim=True)


@pytest.mark.parametrize(
    "backbone", [lambda: build_backbone("vit", 3, weights="none", image_size=64), BatchStatistics]
)
def test_features_one_by_one_are_each_image_alone_batched_or_not(backbone):
    backbone = backbone()
    for images in torch.rand(3, 4, 3, 64, 64):  # the first batch of a shape is checked both ways
        alone = torch.cat([backbone.features(image[None]) for image in images])
        assert torch.equal(backbone.features_one_by_one(images), alone)
    # ViT's batch gives the same numbers as its images alone on this machine's CPU kernels (so later
    # batches run as one, faster); a batch-dependent encoder never runs batched
    agree = list(backbone._batches_agree.values())
    assert agree == [torch.equal(backbone.features(images), alone)]
