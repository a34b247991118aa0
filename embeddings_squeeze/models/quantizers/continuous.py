"""none: the continuous bottleneck, the same-capacity reference for every quantizer.

The features go through what the quantizers' features go through, standardised with training
statistics (as ``eb`` does) -> 1x1 projection to ``bottleneck_dim`` -> 1x1 projection back -> the
head, with no quantization: the latent is sent as float16 values. Against the baseline it measures
what the projections alone change (capacity, conditioning); a quantizer against it measures the
quantization alone.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from embeddings_squeeze.config import QuantizerConfig
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.quantizers.base import FitStart, Quantizer
from embeddings_squeeze.models.quantizers.standardize import FeatureStandardizer
from embeddings_squeeze.utils.payload import frame, unframe, verify

SENT_BITS = 16  # each latent value travels as a float16


class ContinuousBottleneck(Quantizer):
    """Standardise, project to ``bottleneck_dim``, project back. Sent: the (h, w, D) latent as float16,
    carried as the integers of its bit patterns."""

    name = "none"
    title = "continuous (no quantization)"
    summary = (
        "no quantization: the projections alone, the latent sent as float16 (the same-capacity reference)"
    )

    def __init__(self, in_channels: int, config: QuantizerConfig, input_pixels: int):
        super().__init__(in_channels, config, input_pixels)
        self.standardizer = FeatureStandardizer(in_channels)

    def start(self, context: FitStart) -> None:
        self.standardizer.start(context)

    def latent(self, features: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.project_in(self.standardizer(features))

    def quantize(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sent = latent.permute(0, 2, 3, 1).to(torch.float16).view(torch.int16).long()  # (B, h, w, D)
        return latent, sent, latent.new_zeros(())

    def dequantize(self, sent: torch.Tensor) -> torch.Tensor:
        return sent.to(torch.int16).view(torch.float16).float().permute(0, 3, 1, 2)

    def prepare_coder(self, sent_batches: Iterable[torch.Tensor]) -> None:
        """Nothing to build: float16 values are sent as they are."""

    def payload_coder(self, key: bytes, grid: tuple[int, int]) -> RawCoder:
        return RawCoder(key, grid, self.config.bottleneck_dim)

    def split_rate(self) -> RawRate:
        return RawRate(self.config.bottleneck_dim)


class RawCoder:
    """One image's (h, w, D) float16 latent as its bytes, behind the payload header."""

    def __init__(self, key: bytes, grid: tuple[int, int], channels: int):
        self.key, self.grid, self.channels = key, tuple(grid), channels

    def encode(self, sent: torch.Tensor, size: tuple[int, int]) -> bytes:
        symbols = sent.cpu().numpy()
        return frame(symbols.astype(">i2").tobytes(), self.key, symbols, size)

    def decode(self, payload: bytes, name: str = "payload") -> tuple[torch.Tensor, tuple[int, int]]:
        framed = unframe(payload, self.key, name)
        shape = (*self.grid, self.channels)
        if len(framed.body) != 2 * np.prod(shape):
            raise UserError(f"{name} is truncated or corrupt; encode the image again")
        symbols = np.frombuffer(framed.body, dtype=">i2").astype(np.int64).reshape(shape)
        verify(framed, self.key, symbols, name)
        return torch.from_numpy(symbols), framed.size


class RawRate:
    """What float16 latents cost: their bits, nothing coded."""

    def __init__(self, channels: int):
        self.channels = channels

    def update(self, sent: torch.Tensor) -> None:
        pass

    def fields(self, positions: int) -> dict:
        bits = SENT_BITS * self.channels * positions
        return {
            "coding": f"{self.channels} float16 values per position, uncoded",
            "channels": self.channels,
            "fixed_bits_per_image": bits,
            "coded_bits_per_image": bits,
        }
