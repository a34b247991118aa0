"""Per-channel standardisation of frozen features with statistics of the training split.

The projection after it then sees features of unit scale, so its steps (about the learning rate
per weight, with Adam) mean the same for any backbone: raw random ResNet-50 features made the
latents of the entropy bottleneck blow up in its first steps. Every model sees the features this
way: every quantizer type (``base.Quantizer.latent``) and the baseline's head, so a squeezed model,
its continuous reference and the baseline differ only in what they are meant to differ in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from embeddings_squeeze.models.quantizers.base import FitStart

STANDARDIZE_VECTORS = 4096  # training feature vectors whose statistics standardise the features


class FeatureStandardizer(nn.Module):
    """(B, C, h, w) features -> (features - mean) / std per channel, statistics taken at fit start."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(channels))
        self.register_buffer("feature_std", torch.ones(channels))
        self.register_buffer("standardized", torch.tensor(False))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        mean, std = self.feature_mean.view(1, -1, 1, 1), self.feature_std.view(1, -1, 1, 1)
        return (features.float() - mean) / std

    @torch.no_grad()
    def standardize_from(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the (C,) per-channel statistics of the training features.

        A channel (nearly) constant in training, such as a ReLU channel that never fired, is scaled
        no more than a tenth of the median channel's scale: dividing by its tiny spread blew up the
        latents of validation images where it does fire (DeepLab's head then predicted one class).
        """
        self.feature_mean.copy_(mean)
        floor = max(0.1 * float(std.median()), 1e-6)
        self.feature_std.copy_(std.clamp(min=floor))
        self.standardized.fill_(True)

    def start(self, context: FitStart) -> None:
        """Statistics of the training features of every process, so all start alike; resumed runs
        bring theirs."""
        if self.standardized:
            return
        features = context.training_vectors(STANDARDIZE_VECTORS).double()
        count = context.reduce_sum(features.new_tensor(float(len(features))))
        mean = context.reduce_sum(features.sum(dim=0)) / count
        squares = context.reduce_sum((features**2).sum(dim=0))
        std = (squares / count - mean**2).clamp(min=0).sqrt()
        self.standardize_from(mean.float(), std.float())
