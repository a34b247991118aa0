"""RVQ: residual VQ, L EMA codebooks in turn, each quantizing what the previous ones left
(vector-quantize-pytorch's ``ResidualVQ``); one index per level is sent."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from embeddings_squeeze.config import QuantizerConfig, positive_int, setting
from embeddings_squeeze.models.quantizers.vq import CodebookSettings, VectorQuantizer


@dataclass(frozen=True)
class ResidualSettings(CodebookSettings):
    # one level would be plain VQ
    num_quantizers: int = setting(2, "residual levels, each a codebook of --num_vectors", type=positive_int)


class ResidualQuantizer(VectorQuantizer):
    """``num_quantizers`` codebooks of ``num_vectors`` codes each; k-means starts them level by level."""

    name = "rvq"
    summary = "residual VQ, --num_quantizers codebooks in turn"
    Settings = ResidualSettings

    def __init__(self, in_channels: int, config: QuantizerConfig, input_pixels: int):
        super().__init__(in_channels, config, input_pixels, levels=config.settings.num_quantizers)

    def build(self, config: QuantizerConfig) -> nn.Module:
        from vector_quantize_pytorch import (
            ResidualVQ,  # imported when built: it costs ~2 s, which --help need not pay
        )

        return ResidualVQ(
            dim=config.bottleneck_dim,
            num_quantizers=config.settings.num_quantizers,
            **self.codebook_options(config),
        )

    def layers(self) -> list[nn.Module]:
        return list(self.quantizer.layers)

    def dequantize(self, sent: torch.Tensor) -> torch.Tensor:
        height, width = sent.shape[1:3]
        vectors = self.quantizer.get_output_from_indices(rearrange(sent, "b h w l -> b (h w) l"))
        return rearrange(vectors, "b (h w) d -> b d h w", h=height, w=width)
