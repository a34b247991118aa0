"""The contract every bottleneck type follows, and the path features take through it.

A quantizer sits between the frozen backbone's (B, C, h, w) features and the head:

    features -> ``latent``: standardised with training statistics (as the baseline's head sees
                them), 1x1 projection to ``bottleneck_dim`` channels, float32
             -> ``quantize``: what is sent, (B, h, w, L) integers per image
             -> ``dequantize`` -> 1x1 projection back to C channels -> the head

Each type is one class in one file of this folder, found by its ``name`` in ``QUANTIZERS``
(``models/quantizers/__init__.py``). Besides how it quantizes, the class says:

- ``Settings``: a dataclass of its own flags (``config.setting`` fields), stored in checkpoints;
- ``sweep_axis`` and ``label``: which setting a sweep varies for it, and how a run names its point;
- ``statistics``: what an epoch of training or validation logs about it (a torchmetrics Metric);
- ``start``: its data-dependent start when fitting begins (k-means), after the features'
  standardisation;
- ``code_modules``: the modules around its quantization that act on values (e.g. FSQ's projection to
  its code channels and back): its continuous reference (``continuous.py``) keeps exactly these with
  the quantization replaced by the identity; the default, none, makes that reference the projections;
- ``prepare_coder``: the entropy coder's model, built once training has finished;
- ``payload_coder``: how one image's integers become bytes and back (``utils/payload.py`` frames them);
- ``split_rate``: the rate columns it reports for a split;
- ``decoder_bytes``: what the receiver holds once for it, besides the head: the weights applied to
  what it decodes and the coder's model (histogram, coding tables), the same items for every type.

In eval mode ``forward`` gives the head exactly ``decode(encode(features))``: what a receiver
computes from a payload, so decoded payloads reproduce the scored predictions bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NamedTuple, Protocol

import torch
from torch import nn

from embeddings_squeeze.config import QuantizerConfig
from embeddings_squeeze.models.quantizers.standardize import FeatureStandardizer
from embeddings_squeeze.utils.rate import float32_bytes

if TYPE_CHECKING:
    from torchmetrics import Metric


@dataclass(frozen=True)
class NoSettings:
    """A type without settings of its own."""


class Squeezed(NamedTuple):
    """What one forward pass through a quantizer gives the model."""

    features: torch.Tensor  # (B, C, h, w): what the head sees
    loss: torch.Tensor  # scalar: the type's own loss, weighted by --vq_loss_weight in the objective
    record: dict  # keyword arguments of ``statistics().update``
    auxiliary_loss: torch.Tensor | float = 0.0  # added unweighted: trains parameters only it reaches


@dataclass(frozen=True)
class FitStart:
    """What a quantizer may look at when fitting begins."""

    # (wanted, of=identity) -> at least ``wanted`` (N, D) vectors of(features) from training batches only
    training_vectors: Callable[..., torch.Tensor]
    vectors_per_step: int  # vectors one training step shows the quantizer, all processes together
    world_size: int
    reduce_sum: Callable[[torch.Tensor], torch.Tensor]  # a tensor summed over every process


class PayloadCoder(Protocol):
    """One image's sent integers and its (height, width) <-> the bytes of its payload."""

    def encode(self, sent: torch.Tensor, size: tuple[int, int]) -> bytes: ...

    def decode(self, payload: bytes, name: str = "payload") -> tuple[torch.Tensor, tuple[int, int]]: ...


class SplitRate(Protocol):
    """A split's rate statistics, accumulated one batch of sent integers at a time."""

    def update(self, sent: torch.Tensor) -> None: ...

    def fields(self, positions: int) -> dict:
        """The type's rate columns: always ``coding`` (a phrase saying what is sent, e.g. "512 codes
        per level") and ``coded_bits_per_image``; ``fixed_bits_per_image`` when a fixed-length
        code exists, ``entropy_bits_per_image`` for the split's own empirical entropy."""


class Quantizer(nn.Module):
    """Project, quantize, project back; subclasses give ``quantize``, ``dequantize`` and the rest of
    the contract in the module docstring.

    Args:
        in_channels: channels of the backbone feature map.
        config: the shared settings (``bottleneck_dim``, ...) and ``config.settings``, an instance
            of the class's ``Settings``.
        input_pixels: pixels of one model input (H x W), for rates per pixel.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line for --quantizer_type's help
    title: ClassVar[str] = ""  # how plots name it (default: the name, upper case)
    Settings: ClassVar[type] = NoSettings
    sweep_axis: ClassVar[str | None] = None  # the setting a sweep varies, one model per value (None: one)
    larger_is_finer: ClassVar[bool] = True  # whether larger values of that setting spend more bits

    def __init__(self, in_channels: int, config: QuantizerConfig, input_pixels: int):
        super().__init__()
        self.config = config
        self.input_pixels = input_pixels
        self.settings = config.settings
        self.standardizer = FeatureStandardizer(in_channels)
        self.project_in = nn.Conv2d(in_channels, config.bottleneck_dim, kernel_size=1)
        self.project_out = nn.Conv2d(config.bottleneck_dim, in_channels, kernel_size=1)

    @classmethod
    def label(cls, config: QuantizerConfig) -> str:
        """The point of ``config`` on this type's sweep axis, as run names show it."""
        return f"D{config.bottleneck_dim}"

    @classmethod
    def code_channels(cls, config: QuantizerConfig) -> int | None:
        """Channels of the code the type quantizes, when ``code_modules`` gives one (None: the latent)."""
        return None

    @classmethod
    def code_modules(cls, bottleneck_dim: int, channels: int) -> tuple[nn.Module, nn.Module]:
        """(to the code, back to the latent): modules between the (B, D, h, w) latent and a
        (B, ``channels``, h, w) code; built the same way for the type and its continuous reference."""
        raise NotImplementedError(f"{cls.name} quantizes the latent itself")

    def latent(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) features -> the (B, D, h, w) vectors the quantizer sees, in float32."""
        # codebook distances, EMA updates and densities are unstable in half precision
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.project_in(self.standardizer(features))

    def quantize(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, D, h, w) latent -> (quantized latent, sent (B, h, w, L) integers, scalar loss)."""
        raise NotImplementedError

    def dequantize(self, sent: torch.Tensor) -> torch.Tensor:
        """Sent (B, h, w, L) integers -> the quantized (B, D, h, w) latent the receiver rebuilds."""
        raise NotImplementedError

    def record(self, sent: torch.Tensor, loss: torch.Tensor) -> dict:
        """What ``statistics().update`` takes after a forward pass."""
        return {"sent": sent}

    @torch.no_grad()
    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) features -> (B, h, w, L) integers sent, as in eval mode."""
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.quantize(self.latent(features))[1]

    def decode(self, sent: torch.Tensor) -> torch.Tensor:
        """Sent integers -> reconstructed (B, C, h, w) features, as the receiver computes them."""
        with torch.autocast(device_type=sent.device.type, enabled=False):
            return self.project_out(self.dequantize(sent))

    def forward(self, features: torch.Tensor) -> Squeezed:
        latent = self.latent(features)
        with torch.autocast(device_type=features.device.type, enabled=False):
            quantized, sent, loss = self.quantize(latent)
            # eval: exactly what a receiver computes from the sent integers
            reconstructed = self.project_out(quantized) if self.training else self.decode(sent)
        return Squeezed(reconstructed, loss, self.record(sent, loss))

    def step_logs(self, record: dict) -> dict[str, float]:
        """Values logged at every training step, from a forward pass's ``record``."""
        return {}

    def statistics(self) -> Metric:
        """A fresh accumulator of what one epoch logs (a torchmetrics Metric, synced across processes);
        ``compute`` gives named scalars."""
        from embeddings_squeeze.models.quantizers.statistics import NoStatistics  # see statistics.py

        return NoStatistics()

    def end_epoch(self, stage: str, values: dict[str, torch.Tensor], epoch: int) -> None:
        """Hook after an epoch's statistics are computed (not during Lightning's sanity check)."""

    def check_training_data(self, images: int, positions: int) -> None:
        """Refuse, before any run folder is made, a training split too small for this quantizer
        (``images`` of ``positions`` grid positions each)."""

    def start(self, context: FitStart) -> None:
        """When fitting begins, fresh or resumed: the features' standardisation, then the type's
        data-dependent start (training data only; an override calls this first)."""
        self.standardizer.start(context)

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer groups for parameters that need their own settings; the rest share the default."""
        return []

    def prepare_coder(self, sent_batches: Iterable[torch.Tensor]) -> None:
        """After training: build the entropy coder's model; ``sent_batches`` yields the training
        split's sent integers in eval mode, computed only when iterated."""
        raise NotImplementedError

    def payload_coder(self, key: bytes, grid: tuple[int, int]) -> PayloadCoder:
        """The coder of one image's payload; ``key`` is the checkpoint's fingerprint."""
        raise NotImplementedError

    def split_rate(self) -> SplitRate:
        raise NotImplementedError

    def decoder_bytes(self) -> int:
        """Bytes the receiver holds for this bottleneck once: the float32 weights applied to decoded
        values (here the projection back) and the coder's model (added by the types that have one)."""
        return float32_bytes(self.project_out.parameters())

    def training_record(self) -> dict:
        """Plain values about the training run a checkpoint carries beside the weights."""
        return {}

    def restore_training_record(self, record: dict) -> None:
        """Take back what ``training_record`` gave."""
