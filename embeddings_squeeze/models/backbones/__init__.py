"""Frozen feature extractors with trainable heads, looked up by their ``--model`` name."""

from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.backbones.base import SegmentationBackbone
from embeddings_squeeze.models.backbones.deeplab import DeepLabV3SegmentationBackbone
from embeddings_squeeze.models.backbones.vit import ViTSegmentationBackbone

BACKBONES = {cls.name: cls for cls in (ViTSegmentationBackbone, DeepLabV3SegmentationBackbone)}

__all__ = [
    "BACKBONES",
    "DeepLabV3SegmentationBackbone",
    "SegmentationBackbone",
    "ViTSegmentationBackbone",
    "build_backbone",
]


def build_backbone(
    name: str, num_classes: int, weights: str = "default", image_size: int = 224, seed: int = 0
):
    """Build the backbone called ``name`` ('vit' or 'deeplab'); ``seed`` draws a random encoder."""
    if name not in BACKBONES:
        raise UserError(f"unknown --model {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name](num_classes=num_classes, weights=weights, image_size=image_size, seed=seed)
