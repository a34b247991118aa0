"""Frozen feature extractors with trainable heads, looked up by their ``--model`` name.

Names: the built-in ``vit`` and ``deeplab``, ``timm:<name>`` for any timm model, and backbones
added from outside the package, either with ``register_backbone`` (code that calls the engine's
functions) or through the ``embeddings_squeeze.backbones`` entry-point group (the command line).
"""

from __future__ import annotations

from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.backbones import timm_backbone
from embeddings_squeeze.models.backbones.base import SegmentationBackbone
from embeddings_squeeze.models.backbones.deeplab import DeepLabV3SegmentationBackbone
from embeddings_squeeze.models.backbones.timm_backbone import TimmSegmentationBackbone
from embeddings_squeeze.models.backbones.vit import ViTSegmentationBackbone
from embeddings_squeeze.registry import Registry

BACKBONES = Registry(
    "--model",
    "embeddings_squeeze.backbones",
    (ViTSegmentationBackbone, DeepLabV3SegmentationBackbone),
    f", {timm_backbone.PREFIX}<name> for any timm model (e.g. timm:resnet18)",
)
register_backbone = BACKBONES.register

__all__ = [
    "BACKBONES",
    "DeepLabV3SegmentationBackbone",
    "SegmentationBackbone",
    "TimmSegmentationBackbone",
    "ViTSegmentationBackbone",
    "backbone_class",
    "backbone_normalization",
    "build_backbone",
    "register_backbone",
]


def backbone_class(name: str) -> type[SegmentationBackbone]:
    """The class behind ``--model name`` (timm's one class for every ``timm:<name>``)."""
    return TimmSegmentationBackbone if name.startswith(timm_backbone.PREFIX) else BACKBONES.find(name)


def backbone_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the images for backbone ``name`` are normalised with, without building it."""
    if name.startswith(timm_backbone.PREFIX):
        return timm_backbone.normalization(name.removeprefix(timm_backbone.PREFIX))
    return BACKBONES.find(name).normalization()


def build_backbone(
    name: str,
    num_classes: int,
    weights: str = "default",
    image_size: int = 224,
    seed: int = 0,
    feature_layer: int | None = None,
) -> SegmentationBackbone:
    """Build the backbone called ``name``; ``seed`` draws a random encoder for ``weights='none'``."""
    if name.startswith(timm_backbone.PREFIX):
        model_name = name.removeprefix(timm_backbone.PREFIX)
        return TimmSegmentationBackbone(model_name, num_classes, weights, image_size, seed, feature_layer)
    cls = BACKBONES.find(name)
    if feature_layer is not None:
        raise UserError(f"--feature_layer applies to timm CNNs (--model timm:<name>), not to --model {name}")
    return cls(num_classes=num_classes, weights=weights, image_size=image_size, seed=seed)
