"""Frozen DeepLabV3-ResNet50 backbone with its (trainable) DeepLab classifier head."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights, deeplabv3_resnet50

from embeddings_squeeze.models.backbones.base import (
    SegmentationBackbone,
    download_failed,
    load_matching,
    random_model,
    read_state_dict,
)


class DeepLabV3SegmentationBackbone(SegmentationBackbone):
    """ResNet-50 (output stride 8) features, 2048 channels: 224x224 input gives a 28x28 grid.

    The trainable part is ``model.classifier`` (ASPP and convolutions) with its last layer
    replaced to predict ``num_classes``.

    Args:
        num_classes: outputs of the segmentation head.
        weights: 'default' (``DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1``), 'none', or
            a path to a state dict of torchvision's ``deeplabv3_resnet50``.
        image_size: accepted for a uniform interface; any size works.
        seed: draws the random encoder for ``weights='none'``.
    """

    min_training_batch = 2  # the ASPP head's BatchNorm

    name = "deeplab"
    out_channels = 2048
    default_weights = DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1

    def __init__(self, num_classes: int, weights: str = "default", image_size: int = 224, seed: int = 0):
        model, weights_id = _build_deeplab(weights, seed)
        head = model.classifier
        head[-1] = nn.Conv2d(head[-1].in_channels, num_classes, kernel_size=1)
        super().__init__(model.backbone, head, weights_id)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)["out"]  # (n, 3, H, W) -> (n, 2048, H/8, W/8)


def _build_deeplab(weights: str, seed: int = 0) -> tuple[nn.Module, str | None]:
    """The torchvision model and, for named weights, their identity (None: hash it later)."""
    if weights == "default":
        enum = DeepLabV3SegmentationBackbone.default_weights
        try:
            return deeplabv3_resnet50(weights=enum), f"torchvision:{enum}"
        except OSError as error:  # URLError and socket errors when offline
            raise download_failed(str(enum), error) from None
    model, weights_id = random_model(
        ("deeplabv3_resnet50",),
        seed,
        lambda: deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False),
        lambda m: m.backbone,
    )
    if weights == "none":
        return model, weights_id
    load_matching(model, read_state_dict(weights), weights, ("backbone.",))
    return model, None
