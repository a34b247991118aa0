"""Frozen feature extractors with trainable heads, looked up by their ``--model`` name.

Names: the built-in ``vit`` and ``deeplab``, ``timm:<name>`` for any timm model, and backbones
added from outside the package, either with ``register_backbone`` (code that calls the engine's
functions) or through the ``embeddings_squeeze.backbones`` entry-point group (the command line).
"""

from __future__ import annotations

from importlib.metadata import entry_points

from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.backbones import timm_backbone
from embeddings_squeeze.models.backbones.base import SegmentationBackbone
from embeddings_squeeze.models.backbones.deeplab import DeepLabV3SegmentationBackbone
from embeddings_squeeze.models.backbones.timm_backbone import TimmSegmentationBackbone
from embeddings_squeeze.models.backbones.vit import ViTSegmentationBackbone

ENTRY_POINTS = "embeddings_squeeze.backbones"
BACKBONES: dict[str, type[SegmentationBackbone]] = {
    cls.name: cls for cls in (ViTSegmentationBackbone, DeepLabV3SegmentationBackbone)
}

__all__ = [
    "BACKBONES",
    "DeepLabV3SegmentationBackbone",
    "SegmentationBackbone",
    "TimmSegmentationBackbone",
    "ViTSegmentationBackbone",
    "backbone_normalization",
    "build_backbone",
    "register_backbone",
]


def register_backbone(cls: type[SegmentationBackbone]) -> type[SegmentationBackbone]:
    """Make ``cls`` available as ``--model <cls.name>``; usable as a class decorator."""
    if not cls.name or cls.name.startswith(timm_backbone.PREFIX):
        raise ValueError(f"{cls.__name__}.name must be set and must not start with {timm_backbone.PREFIX!r}")
    BACKBONES[cls.name] = cls
    return cls


def _backbone_class(name: str) -> type[SegmentationBackbone]:
    if name not in BACKBONES:
        for entry in entry_points(group=ENTRY_POINTS, name=name):
            register_backbone(entry.load())
    if name not in BACKBONES:
        raise UserError(
            f"unknown --model {name!r}; choose {', '.join(BACKBONES)}, {timm_backbone.PREFIX}<name> for any "
            "timm model (e.g. timm:resnet18), or a backbone registered as the README's 'Extending' shows"
        )
    return BACKBONES[name]


def backbone_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the images for backbone ``name`` are normalised with, without building it."""
    if name.startswith(timm_backbone.PREFIX):
        return timm_backbone.normalization(name.removeprefix(timm_backbone.PREFIX))
    return _backbone_class(name).normalization()


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
    cls = _backbone_class(name)
    if feature_layer is not None:
        raise UserError(f"--feature_layer applies to timm CNNs (--model timm:<name>), not to --model {name}")
    return cls(num_classes=num_classes, weights=weights, image_size=image_size, seed=seed)
