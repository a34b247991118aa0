"""none: the continuous reference, the same modules as a quantizer with its quantization replaced by
the identity.

Plain (``--reference_for`` unset): the features, standardised with training statistics as every
model sees them -> 1x1 projection to ``bottleneck_dim`` -> 1x1 projection back -> the head. That is
exactly VQ, RVQ and eb without their quantization. For a type that quantizes a code of its own
(FSQ: a few normalised channels; LFQ: log2 K channels after a LayerNorm), ``--reference_for`` and
``--code_channels`` add that type's ``code_modules``: its projection to the code and back, so the
difference between the two is the quantization alone. Sent: the (h, w, channels) code as float16.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from embeddings_squeeze.config import QuantizerConfig, positive_int, setting
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.quantizers.base import Quantizer
from embeddings_squeeze.utils.payload import frame, unframe, verify
from embeddings_squeeze.utils.rate import float32_bytes

SENT_BITS = 16  # each code value travels as a float16


@dataclass(frozen=True)
class ContinuousSettings:
    reference_for: str | None = setting(
        None,
        "keep the modules this quantizer type has around its quantization (fsq, lfq): its continuous "
        "reference; unset: the projections alone",
        show_default=False,
    )
    code_channels: int | None = setting(
        None, "with --reference_for: the channels of that type's code", type=positive_int, show_default=False
    )


class ContinuousBottleneck(Quantizer):
    """Standardise, project (to a type's code and back, given ``reference_for``), project back.
    Sent: the (h, w, channels) code as float16, carried as the integers of its bit patterns."""

    name = "none"
    title = "continuous (no quantization)"
    summary = "no quantization: a quantizer's modules with the identity for its quantization (the reference)"
    Settings = ContinuousSettings

    def __init__(self, in_channels: int, config: QuantizerConfig, input_pixels: int):
        super().__init__(in_channels, config, input_pixels)
        settings = config.settings
        if (settings.reference_for is None) != (settings.code_channels is None):
            raise UserError("--reference_for and --code_channels go together: give both or neither")
        self.channels = settings.code_channels or config.bottleneck_dim
        self.to_code, self.from_code = nn.Identity(), nn.Identity()
        if settings.reference_for is not None:
            from embeddings_squeeze.models.quantizers import QUANTIZERS  # the registry imports this file

            own = Quantizer.code_modules.__func__  # classmethods: compare what they run
            coded = [name for name in QUANTIZERS if QUANTIZERS.find(name).code_modules.__func__ is not own]
            if settings.reference_for not in coded:
                types = ", ".join(coded)
                raise UserError(
                    f"--reference_for takes a type with modules around its quantization ({types}), not "
                    f"{settings.reference_for!r}; leave it unset for the projections alone"
                )
            modules = QUANTIZERS.find(settings.reference_for).code_modules
            self.to_code, self.from_code = modules(config.bottleneck_dim, self.channels)

    @classmethod
    def label(cls, config: QuantizerConfig) -> str:
        settings, own = config.settings, super().label(config)
        return (
            own
            if settings.reference_for is None
            else f"{settings.reference_for}{settings.code_channels}_{own}"
        )

    def quantize(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        code = self.to_code(latent)
        sent = code.permute(0, 2, 3, 1).to(torch.float16).view(torch.int16).long()  # (B, h, w, channels)
        return self.from_code(code), sent, latent.new_zeros(())

    def dequantize(self, sent: torch.Tensor) -> torch.Tensor:
        return self.from_code(sent.to(torch.int16).view(torch.float16).float().permute(0, 3, 1, 2))

    def prepare_coder(self, sent_batches: Iterable[torch.Tensor]) -> None:
        """Nothing to build: float16 values are sent as they are."""

    def payload_coder(self, key: bytes, grid: tuple[int, int]) -> RawCoder:
        return RawCoder(key, grid, self.channels)

    def split_rate(self) -> RawRate:
        return RawRate(self.channels)

    def decoder_bytes(self) -> int:
        return super().decoder_bytes() + float32_bytes(self.from_code.parameters())


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
