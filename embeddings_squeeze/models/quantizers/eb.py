"""eb: the learned entropy-coding baseline, a factorized-prior entropy bottleneck instead of a codebook.

The field's standard reference for feature compression (as in the SC2 benchmark and Entropic
Student): frozen features, standardised -> 1x1 projection to ``bottleneck_dim`` channels ->
CompressAI's ``EntropyBottleneck`` (a learned density per channel; uniform noise while training,
rounding around its medians after) -> 1x1 projection back -> the head. It trains for cross-entropy
+ ``rate_lambda`` x bits per input pixel under its own density, plus CompressAI's auxiliary loss
that places the quantiles its coding tables cover. Sent per image: the rounded latent, coded with
CompressAI's rANS coder under that density.

CompressAI internals used here (checked by ``tests/test_library_internals.py``): the coding-table
buffers a checkpoint resizes (``CODING_TABLES``) and the medians kept in ``quantiles``.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from embeddings_squeeze.config import QuantizerConfig, setting
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.quantizers.base import Quantizer, Squeezed
from embeddings_squeeze.utils.payload import frame, raw_symbols, read_raw_symbols, unframe, verify
from embeddings_squeeze.utils.rate import float32_bytes

if TYPE_CHECKING:
    from torchmetrics import Metric

CODING_TABLES = ("_offset", "_quantized_cdf", "_cdf_length")  # their shapes depend on the training
# the density's starting width: on standardised features a default-initialised projection gives
# latents spread over about +-1 per channel; CompressAI's default (10, sized for image latents) leaves the
# density far too wide for the few hundred steps a head trains, at ~4.5 bits per symbol whatever
# the rate weight
INIT_SCALE = 1.0
# the density's parameters see only the rate term, and Adam moves them by about the learning rate
# per step whatever its weight: at 1x --lr, lambdas from 0.1 to 1000 gave the same bytes
DENSITY_LR_FACTOR = 10.0


@dataclass(frozen=True)
class EntropySettings:
    rate_lambda: float = setting(
        1.0,
        "weight of the rate (bits per input pixel) against the cross-entropy; larger: fewer bytes",
        type=float,
        sweep={"flag": "--lambdas", "default": (1.0, 10.0, 100.0), "help": "rate weights, one model each"},
    )


def _resize_coding_tables(module, state_dict, prefix, *args) -> None:
    """Let a checkpoint's coding tables replace the ones the module holds, whatever their sizes
    (CompressAI's ``update_registered_buffers``, as its own models load)."""
    from compressai.models.utils import update_registered_buffers

    if all(prefix + name in state_dict for name in CODING_TABLES):
        update_registered_buffers(module, prefix.rstrip("."), CODING_TABLES, state_dict, policy="resize")


class EntropyBottleneckQuantizer(Quantizer):
    """Standardise, project, code under a learned factorized density, project back.

    Sent symbols (B, h, w, D) are the rounded latent minus the per-channel medians: integers that
    the receiver turns back into the latent by adding the medians.
    """

    name = "eb"
    title = "entropy bottleneck"
    summary = "learned entropy bottleneck (CompressAI), the entropy-coding baseline"
    Settings = EntropySettings
    sweep_axis = "rate_lambda"
    larger_is_finer = False

    def __init__(self, in_channels: int, config: QuantizerConfig, input_pixels: int):
        super().__init__(in_channels, config, input_pixels)
        # imported here: CompressAI pulls in its dataset stack, which only this type needs
        from compressai.entropy_models import EntropyBottleneck

        self.entropy_bottleneck = EntropyBottleneck(config.bottleneck_dim, init_scale=INIT_SCALE)
        self.entropy_bottleneck.register_load_state_dict_pre_hook(_resize_coding_tables)

    @classmethod
    def label(cls, config: QuantizerConfig) -> str:
        return f"lambda{config.settings.rate_lambda:g}"

    def medians(self) -> torch.Tensor:
        """(D,) the offsets symbols are rounded around."""
        return self.entropy_bottleneck.quantiles[:, 0, 1].detach()

    def symbols(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) latent -> (B, h, w, D) integers sent: rounded around the medians."""
        return torch.round(latent.permute(0, 2, 3, 1) - self.medians()).long()

    def quantize(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        symbols = self.symbols(latent)
        return self.dequantize(symbols), symbols, self.rate_loss(self.bits(symbols))

    @torch.no_grad()
    def encode(self, features: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.symbols(self.latent(features))

    def dequantize(self, sent: torch.Tensor) -> torch.Tensor:
        return (sent.float() + self.medians()).permute(0, 3, 1, 2)

    def bits(self, symbols: torch.Tensor) -> torch.Tensor:
        """(B,) bits each image's (B, h, w, D) symbols cost under the learned density (before table
        rounding)."""
        _, likelihoods = self.entropy_bottleneck(self.dequantize(symbols), training=False)
        return -torch.log2(likelihoods).sum(dim=(1, 2, 3))

    def rate_loss(self, bits: torch.Tensor) -> torch.Tensor:
        """``rate_lambda`` x mean bits per input pixel."""
        return self.settings.rate_lambda * bits.mean() / self.input_pixels

    def forward(self, features: torch.Tensor) -> Squeezed:
        latent = self.latent(features)
        with torch.autocast(device_type=features.device.type, enabled=False):
            if self.training:
                noisy, likelihoods = self.entropy_bottleneck(latent, training=True)
                bits = -torch.log2(likelihoods).sum(dim=(1, 2, 3))
                # the quantiles the coding tables will cover learn from their own loss
                auxiliary = self.entropy_bottleneck.loss()
                return Squeezed(self.project_out(noisy), self.rate_loss(bits), {"bits": bits}, auxiliary)
            symbols = self.symbols(latent)
            bits = self.bits(symbols)
            # eval: exactly what a receiver computes from the symbols
            return Squeezed(self.decode(symbols), self.rate_loss(bits), {"bits": bits})

    def statistics(self) -> Metric:
        from embeddings_squeeze.models.quantizers.statistics import BitsStatistics  # see statistics.py

        return BitsStatistics()

    def param_groups(self, lr: float) -> list[dict]:
        density = list(self.entropy_bottleneck.parameters())
        return [{"params": density, "lr": DENSITY_LR_FACTOR * lr, "weight_decay": 0.0}]

    def prepare_coder(self, sent_batches: Iterable[torch.Tensor]) -> None:
        """Exact quantiles and the coding tables of the learned density; no data needed."""
        self.entropy_bottleneck.update(force=True, update_quantiles=True)

    def payload_coder(self, key: bytes, grid: tuple[int, int]) -> SymbolCoder:
        return SymbolCoder(self, key, grid)

    def split_rate(self) -> SymbolRate:
        return SymbolRate(self)

    def decoder_bytes(self) -> int:
        # the coder's model (its int32 coding tables), the medians the symbols are offset by, and the
        # projection back; the density's own parameters only make the tables, in training
        layer = self.entropy_bottleneck
        tables = sum(getattr(layer, name).numel() for name in CODING_TABLES)
        return super().decoder_bytes() + float32_bytes([self.medians()]) + 4 * tables


class SymbolRate:
    """A split's bits per image under the learned density."""

    def __init__(self, quantizer: EntropyBottleneckQuantizer):
        self.quantizer = quantizer
        self.bits: list[float] = []

    def update(self, sent: torch.Tensor) -> None:
        self.bits += self.quantizer.bits(sent.to(self.quantizer.medians().device)).tolist()

    def fields(self, positions: int) -> dict:
        coded = statistics.fmean(self.bits)
        channels = self.quantizer.config.bottleneck_dim
        return {
            "coding": f"{channels} channels coded under the learned density",
            "channels": channels,
            "coded_bits_per_vector": coded / positions,
            "coded_bits_per_image": coded,
        }


class SymbolCoder:
    """Codes one image's (h, w, D) symbols with CompressAI's rANS coder under the checkpoint's
    learned density (its ``compress``/``decompress``; body: CompressAI's bitstream), or, when that
    is longer (values the density finds unlikely, e.g. features out of the training range), as raw
    fixed-length symbols (``utils/payload.raw_symbols``): no payload exceeds that cap."""

    def __init__(self, quantizer: EntropyBottleneckQuantizer, key: bytes, grid: tuple[int, int]):
        self.quantizer = quantizer
        self.key = key
        self.grid = tuple(grid)

    def encode(self, symbols: torch.Tensor, size: tuple[int, int]) -> bytes:
        """(h, w, D) symbols of one image of ``size`` (height, width) -> payload bytes."""
        latent = self.quantizer.dequantize(symbols[None].to(self.quantizer.medians().device))
        body = self.quantizer.entropy_bottleneck.compress(latent)[0]
        raw = raw_symbols(symbols.cpu().numpy())
        if len(raw) < len(body):
            return frame(raw, self.key, symbols.cpu().numpy(), size, fixed=True)
        return frame(body, self.key, symbols.cpu().numpy(), size)

    def decode(self, payload: bytes, name: str = "payload") -> tuple[torch.Tensor, tuple[int, int]]:
        """Payload bytes -> ((h, w, D) symbols, the image's (height, width)); a clear error for
        anything but an intact payload of this checkpoint."""
        framed = unframe(payload, self.key, name)
        channels = self.quantizer.config.bottleneck_dim
        if framed.fixed:
            values = read_raw_symbols(framed.body, self.grid[0] * self.grid[1] * channels, name)
            symbols = torch.from_numpy(values).reshape(*self.grid, channels)
        else:
            symbols = self._range_decode(framed.body, name)
        verify(framed, self.key, symbols.numpy(), name)
        return symbols, framed.size

    def _range_decode(self, body: bytes, name: str) -> torch.Tensor:
        try:
            latent = self.quantizer.entropy_bottleneck.decompress([body], self.grid)
        except (ValueError, RuntimeError):
            raise UserError(
                f"{name} is truncated or corrupt (the rANS decoder failed); encode the image again"
            ) from None
        return torch.round(latent[0].permute(1, 2, 0) - self.quantizer.medians()).long().cpu()
