"""LFQ: lookup-free quantization (Yu et al. 2023; vector-quantize-pytorch's ``LFQ``).

``log2 K`` code channels, each sent as its sign: the code is implicit, and an entropy loss keeps
the codes in use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from embeddings_squeeze.config import QuantizerConfig, setting
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.quantizers.indexed import IndexQuantizer, to_grid
from embeddings_squeeze.utils.rate import float32_bytes


@dataclass(frozen=True)
class LFQSettings:
    # the library's default weight (0.1) outweighs the segmentation loss here and collapses the head
    # onto the majority class; 0.01 keeps it a regulariser
    entropy_loss_weight: float = setting(
        0.01, "weight of the entropy loss (the library's 0.1 collapses the head)", type=float
    )


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, h, w) map."""

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return super().forward(values.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LookupFreeQuantizer(IndexQuantizer):
    """``bottleneck_dim`` -> LayerNorm -> log2(num_vectors) sign bits -> back to ``bottleneck_dim``."""

    name = "lfq"
    summary = "lookup-free quantization, log2(--num_vectors) sign bits"
    Settings = LFQSettings

    def __init__(self, in_channels: int, config: QuantizerConfig, input_pixels: int):
        size = config.num_vectors
        if size < 2 or size & (size - 1):
            raise UserError(f"LFQ needs --num_vectors to be a power of two, got {size}")
        super().__init__(in_channels, config, input_pixels, levels=1, alphabet_size=size)
        self.to_code, self.from_code = self.code_modules(config.bottleneck_dim, self.code_channels(config))
        from vector_quantize_pytorch import (
            LFQ,  # imported when built: it costs ~2 s, which --help need not pay
        )

        self.quantizer = LFQ(codebook_size=size, entropy_loss_weight=config.settings.entropy_loss_weight)

    @classmethod
    def code_channels(cls, config: QuantizerConfig) -> int:
        return max(1, int(math.log2(config.num_vectors)))

    @classmethod
    def code_modules(cls, bottleneck_dim: int, channels: int) -> tuple[nn.Module, nn.Module]:
        """LayerNorm, then ``bottleneck_dim`` -> one channel per bit; and back."""
        # sign quantization collapses on features of one sign (post-ReLU maps): centre them first
        to_code = nn.Sequential(
            ChannelNorm(bottleneck_dim), nn.Conv2d(bottleneck_dim, channels, kernel_size=1)
        )
        return to_code, nn.Conv2d(channels, bottleneck_dim, kernel_size=1)

    def quantize(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        height, width = latent.shape[-2:]
        quantized, indices, loss = self.quantizer(rearrange(self.to_code(latent), "b c h w -> b (h w) c"))
        quantized = self.from_code(rearrange(quantized, "b (h w) c -> b c h w", h=height, w=width))
        return quantized, to_grid(indices, height, width), loss.sum()

    def dequantize(self, sent: torch.Tensor) -> torch.Tensor:
        height, width = sent.shape[1:3]
        codes = self.quantizer.indices_to_codes(rearrange(sent[..., 0], "b h w -> b (h w)"))
        return self.from_code(rearrange(codes, "b (h w) c -> b c h w", h=height, w=width))

    def decoder_bytes(self) -> int:
        return super().decoder_bytes() + float32_bytes(self.from_code.parameters())
