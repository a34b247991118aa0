"""The vector-quantization bottleneck between frozen features and the trainable head."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import Metric
from vector_quantize_pytorch import VectorQuantize


class VQBottleneck(nn.Module):
    """Project features down, quantize them with an EMA codebook, project back up.

    Only the codebook indices need to cross the wire: ``(B, h, w)`` integers in
    ``[0, codebook_size)``; the receiver holds the codebook and ``project_out``.

    Args:
        in_channels: channels of the backbone feature map.
        bottleneck_dim: dimension of each codebook vector.
        codebook_size: number of codebook vectors (``--num_vectors``).
        commitment_weight: weight of the commitment loss inside VectorQuantize.
        decay: EMA decay of the codebook updates.
    """

    def __init__(
        self,
        in_channels: int,
        bottleneck_dim: int = 64,
        codebook_size: int = 512,
        commitment_weight: float = 0.25,
        decay: float = 0.99,
    ):
        super().__init__()
        self.codebook_size = codebook_size
        self.project_in = nn.Conv2d(in_channels, bottleneck_dim, kernel_size=1)
        self.quantizer = VectorQuantize(
            dim=bottleneck_dim,
            codebook_size=codebook_size,
            decay=decay,
            commitment_weight=commitment_weight,
            accept_image_fmap=True,  # takes and returns (B, D, h, w) maps
        )
        self.project_out = nn.Conv2d(bottleneck_dim, in_channels, kernel_size=1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, h, w) features -> (reconstructed (B, C, h, w), indices (B, h, w), loss)."""
        # codebook distances and EMA updates are unstable in half precision: keep them float32
        with torch.autocast(device_type=features.device.type, enabled=False):
            latent = self.project_in(features.float())
            quantized, indices, loss = self.quantizer(latent)
            return self.project_out(quantized), indices, loss


class CodebookUsage(Metric):
    """How evenly codes are used over a whole epoch: perplexity and fraction of codes used.

    Counts are summed across processes, so DDP runs report usage over all their images.
    """

    full_state_update = False

    def __init__(self, codebook_size: int, **kwargs):
        super().__init__(**kwargs)
        self.codebook_size = codebook_size
        self.add_state("counts", default=torch.zeros(codebook_size, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, indices: torch.Tensor) -> None:
        self.counts += torch.bincount(indices.flatten(), minlength=self.codebook_size)

    def compute(self) -> dict[str, torch.Tensor]:
        total = self.counts.sum().clamp(min=1)
        probabilities = self.counts.float() / total
        entropy = -(probabilities * probabilities.clamp(min=1e-12).log()).sum()
        return {
            "perplexity": entropy.exp(),
            "code_usage": (self.counts > 0).float().mean(),
        }
