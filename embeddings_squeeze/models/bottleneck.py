"""The quantization bottleneck between frozen features and the trainable head."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import Metric

from embeddings_squeeze.config import QuantizerConfig
from embeddings_squeeze.models.quantizers import Quantizer


class Bottleneck(nn.Module):
    """Project features down, quantize them, project back up.

    Only the indices cross the wire: (B, h, w, L) integers, each below ``alphabet_size``. The
    receiver holds the quantizer's codebook, ``project_out`` and the head. ``code_histogram``
    (L, alphabet_size) counts the indices over the training split after training; it is the
    probability model of the entropy coder and of the entropy rate.

    Args:
        in_channels: channels of the backbone feature map.
        config: the quantizer settings; ``bottleneck_dim`` is the size of the quantized vectors.
    """

    def __init__(self, in_channels: int, config: QuantizerConfig):
        super().__init__()
        self.project_in = nn.Conv2d(in_channels, config.bottleneck_dim, kernel_size=1)
        self.quantizer = Quantizer(config, dim=config.bottleneck_dim)
        self.project_out = nn.Conv2d(config.bottleneck_dim, in_channels, kernel_size=1)
        shape = (self.quantizer.levels, self.quantizer.alphabet_size)
        self.register_buffer("code_histogram", torch.zeros(shape, dtype=torch.long))

    def latent(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) features -> the (B, D, h, w) vectors the quantizer sees, in float32."""
        # codebook distances and EMA updates are unstable in half precision: keep them float32
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.project_in(features.float())

    def encode(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, h, w) features -> quantized latent (B, D, h, w), indices (B, h, w, L), loss."""
        latent = self.latent(features)
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.quantizer(latent)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, h, w, L) -> reconstructed features (B, C, h, w), as the receiver computes them."""
        with torch.autocast(device_type=indices.device.type, enabled=False):
            return self.project_out(self.quantizer.decode(indices))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, h, w) -> (reconstructed (B, C, h, w), indices (B, h, w, L), loss)."""
        quantized, indices, loss = self.encode(features)
        if not self.training:
            # evaluate exactly what a receiver computes from the indices, so decoded payloads
            # reproduce these predictions bit for bit
            return self.decode(indices), indices, loss
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.project_out(quantized), indices, loss


class CodebookUsage(Metric):
    """Code counts over a whole epoch, per index level; summed across processes under DDP."""

    full_state_update = False

    def __init__(self, levels: int, alphabet_size: int, **kwargs):
        super().__init__(**kwargs)
        self.add_state(
            "counts", default=torch.zeros(levels, alphabet_size, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, indices: torch.Tensor) -> None:
        self.counts += count_codes(indices, self.counts.shape[1])

    def compute(self) -> dict[str, torch.Tensor]:
        return usage_statistics(self.counts)


def count_codes(indices: torch.Tensor, alphabet_size: int) -> torch.Tensor:
    """(..., L) indices -> (L, alphabet_size) counts per index level."""
    flat = indices.reshape(-1, indices.shape[-1])
    return torch.stack([torch.bincount(column, minlength=alphabet_size) for column in flat.unbind(dim=1)])


def level_entropy_bits(counts: torch.Tensor) -> torch.Tensor:
    """(L, A) code counts -> (L,) Shannon entropy in bits of each level's empirical distribution."""
    probabilities = counts.double() / counts.sum(dim=-1, keepdim=True).clamp(min=1)
    return -(probabilities * probabilities.clamp(min=1e-300).log2()).sum(dim=-1)


def usage_statistics(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """(L, A) counts -> perplexity, fraction of codes used and dead-code fraction, averaged over levels.

    A dead code is one never chosen in the counted period.
    """
    entropy = level_entropy_bits(counts)
    used = (counts > 0).double().mean(dim=-1)
    return {
        "perplexity": (2**entropy).mean(),
        "code_usage": used.mean(),
        "dead_code_fraction": 1 - used.mean(),
        "perplexity_per_level": 2**entropy,
        "code_usage_per_level": used,
    }
