"""Frozen ViT-B/32 encoder with a trainable 1x1-convolution head on its patch-token grid."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import ViT_B_32_Weights, vit_b_32
from torchvision.models.vision_transformer import interpolate_embeddings

from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.backbones.base import (
    PixelClassifier,
    SegmentationBackbone,
    download_failed,
    load_matching,
    random_model,
    read_state_dict,
)

PATCH_SIZE = 32
HIDDEN_DIM = 768


class ViTSegmentationBackbone(SegmentationBackbone):
    """ViT-B/32 patch tokens as a feature map: 224x224 input gives a 7x7 grid of 768-d tokens.

    Args:
        num_classes: outputs of the segmentation head.
        weights: 'default' (ImageNet-1k, ``ViT_B_32_Weights.IMAGENET1K_V1``), 'none', or a path
            to a state dict of torchvision's ``vit_b_32``.
        image_size: square input side, a multiple of 32; pretrained position embeddings are
            interpolated when it is not 224.
        seed: draws the random encoder for ``weights='none'``.
    """

    name = "vit"
    out_channels = HIDDEN_DIM
    default_weights = ViT_B_32_Weights.IMAGENET1K_V1

    def __init__(self, num_classes: int, weights: str = "default", image_size: int = 224, seed: int = 0):
        if image_size <= 0 or image_size % PATCH_SIZE:
            multiple = max(PATCH_SIZE, round(image_size / PATCH_SIZE) * PATCH_SIZE)
            raise UserError(
                f"ViT-B/32 needs --image_size divisible by {PATCH_SIZE}, got {image_size}; try {multiple}"
            )
        vit, weights_id = _build_vit(weights, image_size, seed)
        _headless(vit)
        head = PixelClassifier(HIDDEN_DIM, num_classes)
        super().__init__(vit, head, weights_id)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        n, _, height, width = images.shape
        tokens = self.encoder._process_input(images)  # (n, 3, H, W) -> (n, h*w, 768)
        class_token = self.encoder.class_token.expand(n, -1, -1)
        tokens = self.encoder.encoder(torch.cat([class_token, tokens], dim=1))
        tokens = tokens[:, 1:]  # drop the class token: (n, 1 + h*w, 768) -> (n, h*w, 768)
        grid_h, grid_w = height // PATCH_SIZE, width // PATCH_SIZE
        return tokens.transpose(1, 2).reshape(n, HIDDEN_DIM, grid_h, grid_w)  # -> (n, 768, h, w)


def _headless(vit: nn.Module) -> nn.Module:
    vit.heads = nn.Identity()  # the ImageNet classifier is never used
    return vit


def _build_vit(weights: str, image_size: int, seed: int = 0) -> tuple[nn.Module, str | None]:
    """The torchvision model and, for named weights, their identity (None: hash it later)."""
    if weights == "default":
        enum = ViTSegmentationBackbone.default_weights
        try:
            pretrained = vit_b_32(weights=enum)
        except OSError as error:  # URLError and socket errors when offline
            raise download_failed(str(enum), error) from None
        identity = f"torchvision:{enum}"
        if image_size == pretrained.image_size:
            return pretrained, identity
        state = interpolate_embeddings(image_size, PATCH_SIZE, pretrained.state_dict())
        with torch.device("meta"):  # every number comes from the pretrained state: skip drawing them
            model = vit_b_32(image_size=image_size)
        model.load_state_dict(state, assign=True)
        return model, identity
    model, weights_id = random_model(
        ("vit_b_32", image_size),
        seed,
        lambda: _headless(vit_b_32(weights=None, image_size=image_size)),
        lambda m: m,
    )
    if weights == "none":
        return model, weights_id
    state = read_state_dict(weights)
    position = state.get("encoder.pos_embedding")
    if position is not None and position.shape[1] != model.encoder.pos_embedding.shape[1]:
        state = interpolate_embeddings(image_size, PATCH_SIZE, state)
    load_matching(model, state, weights, ("conv_proj.", "encoder.", "class_token"))
    return model, None
