"""Frozen feature extractors with trainable heads, looked up by their ``--model`` name."""

from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.backbones.base import SegmentationBackbone
from embeddings_squeeze.models.backbones.deeplab import DeepLabV3SegmentationBackbone, _build_deeplab
from embeddings_squeeze.models.backbones.vit import ViTSegmentationBackbone, _build_vit

BACKBONES = {cls.name: cls for cls in (ViTSegmentationBackbone, DeepLabV3SegmentationBackbone)}

__all__ = [
    "BACKBONES",
    "DeepLabV3SegmentationBackbone",
    "SegmentationBackbone",
    "ViTSegmentationBackbone",
    "build_backbone",
    "random_weights",
]


def random_weights(name: str, image_size: int = 224) -> dict:
    """A state dict of the randomly initialised torchvision model behind backbone ``name``."""
    if name == "vit":
        return _build_vit("none", image_size)[0].state_dict()
    return _build_deeplab("none")[0].state_dict()


def build_backbone(name: str, num_classes: int, weights: str = "default", image_size: int = 224):
    """Build the backbone called ``name`` ('vit' or 'deeplab')."""
    if name not in BACKBONES:
        raise UserError(f"unknown --model {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name](num_classes=num_classes, weights=weights, image_size=image_size)
