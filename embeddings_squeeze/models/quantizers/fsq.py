"""FSQ: finite scalar quantization (Mentzer et al. 2023; vector-quantize-pytorch's ``FSQ``).

Each of a few code channels is bounded and rounded to one of its levels; the code is implicit, so
the alphabet is the product of the levels and nothing is learned but the projections around it.
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

# level choices recommended by the FSQ paper (Mentzer et al. 2023, table 1) for common sizes
FSQ_LEVELS = {
    2**8: [8, 6, 5],
    2**10: [8, 5, 5, 5],
    2**12: [7, 5, 5, 5, 5],
    2**14: [8, 8, 8, 6, 5],
    2**16: [8, 8, 8, 5, 5, 5],
}
# vector-quantize-pytorch's FSQ refuses a level of 2 unless its symmetry-preserving variant is on
MIN_FSQ_LEVEL = 3


def parse_levels(text: str | None) -> list[int] | None:
    """'8,5,5' -> [8, 5, 5]; None or '' -> None."""
    if not text:
        return None
    try:
        levels = [int(part) for part in str(text).split(",")]
    except ValueError:
        raise UserError(
            f"--fsq_levels must be comma-separated integers such as 8,5,5, got {text!r}"
        ) from None
    if any(level < MIN_FSQ_LEVEL for level in levels):
        raise UserError(
            f"every FSQ level must be at least {MIN_FSQ_LEVEL} (the FSQ implementation rejects a "
            f"level of 2), got {text!r}; try 3 instead of 2"
        )
    return levels


def fsq_levels_for(codebook_size: int) -> list[int]:
    """FSQ levels whose product is close to ``codebook_size`` (exact for the paper's sizes)."""
    if codebook_size in FSQ_LEVELS:
        return FSQ_LEVELS[codebook_size]
    dims = max(1, round(math.log(codebook_size) / math.log(6)))
    level = max(MIN_FSQ_LEVEL, round(codebook_size ** (1 / dims)))
    return [level] * dims


@dataclass(frozen=True)
class FSQSettings:
    fsq_levels: str | None = setting(
        None, "levels such as 8,5,5, each at least 3; unset: chosen from --num_vectors", show_default=False
    )


class CodeNorm(nn.BatchNorm2d):
    """Per-channel standardisation of (B, C, h, w) code inputs, without a learned scale.

    FSQ bounds each channel with tanh; without this, the projection grows during training until
    most inputs saturate the tanh (measured: 70 % to 93 % beyond |z| > 2), their gradients vanish
    and the model predicts background everywhere.
    """

    def __init__(self, channels: int):
        super().__init__(channels, affine=False)


class FiniteScalarQuantizer(IndexQuantizer):
    """``bottleneck_dim`` -> one channel per level, standardised (``CodeNorm``), bounded and rounded
    -> back to ``bottleneck_dim``. ``num_vectors`` only chooses the levels when ``fsq_levels`` is unset."""

    name = "fsq"
    summary = "finite scalar quantization, levels from --fsq_levels or --num_vectors"
    Settings = FSQSettings

    def __init__(self, in_channels: int, config: QuantizerConfig, input_pixels: int):
        levels = self.levels_of(config)
        super().__init__(in_channels, config, input_pixels, levels=1, alphabet_size=math.prod(levels))
        self.fsq_levels = levels
        self.to_code, self.from_code = self.code_modules(config.bottleneck_dim, len(levels))
        from vector_quantize_pytorch import (
            FSQ,  # imported when built: it costs ~2 s, which --help need not pay
        )

        self.quantizer = FSQ(levels=self.fsq_levels)

    @staticmethod
    def levels_of(config: QuantizerConfig) -> list[int]:
        return parse_levels(config.settings.fsq_levels) or fsq_levels_for(config.num_vectors)

    @classmethod
    def code_channels(cls, config: QuantizerConfig) -> int:
        return len(cls.levels_of(config))

    @classmethod
    def code_modules(cls, bottleneck_dim: int, channels: int) -> tuple[nn.Module, nn.Module]:
        """``bottleneck_dim`` -> one channel per level, standardised (``CodeNorm``); and back."""
        to_code = nn.Sequential(nn.Conv2d(bottleneck_dim, channels, kernel_size=1), CodeNorm(channels))
        return to_code, nn.Conv2d(channels, bottleneck_dim, kernel_size=1)

    def quantize(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        height, width = latent.shape[-2:]
        quantized, indices = self.quantizer(rearrange(self.to_code(latent), "b c h w -> b (h w) c"))
        quantized = self.from_code(rearrange(quantized, "b (h w) c -> b c h w", h=height, w=width))
        return quantized, to_grid(indices, height, width), latent.new_zeros(())

    def dequantize(self, sent: torch.Tensor) -> torch.Tensor:
        height, width = sent.shape[1:3]
        codes = self.quantizer.indices_to_codes(rearrange(sent[..., 0], "b h w -> b (h w)"))
        return self.from_code(rearrange(codes, "b (h w) c -> b c h w", h=height, w=width))

    def decoder_bytes(self) -> int:
        return super().decoder_bytes() + float32_bytes(self.from_code.parameters())
