"""The learned entropy-coding baseline: a factorized-prior entropy bottleneck instead of a codebook.

The field's standard reference for feature compression (as in the SC2 benchmark and Entropic
Student): frozen features -> 1x1 projection to ``bottleneck_dim`` channels -> CompressAI's
``EntropyBottleneck`` (a learned density per channel; uniform noise while training, rounding around
its medians after) -> 1x1 projection back -> the head. It is trained with cross-entropy +
``rate_lambda`` x bits per input pixel under its own density, plus CompressAI's auxiliary loss that
places the quantiles its coding tables cover. What is sent per image is the rounded latent, coded
with CompressAI's rANS coder under that density (``utils/payload.py``, ``EntropyCoder``).
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanMetric

from embeddings_squeeze.config import ModelConfig, OptimizerConfig, QuantizerConfig
from embeddings_squeeze.data.labels import ClassSet
from embeddings_squeeze.models.segmentation_module import STAGES, SqueezedModule

CODING_TABLES = ("_offset", "_quantized_cdf", "_cdf_length")  # their shapes depend on the training
# the density's starting width: on standardised features a default-initialised projection gives
# latents spread over about +-1 per channel; CompressAI's default (10, sized for image latents) leaves the
# density far too wide for the few hundred steps a head trains, at ~4.5 bits per symbol whatever
# the rate weight
INIT_SCALE = 1.0
STANDARDIZE_VECTORS = 4096  # training feature vectors whose statistics standardise the features
# the density's parameters see only the rate term, and Adam moves them by about the learning rate
# per step whatever its weight: at 1x --lr, lambdas from 0.1 to 1000 gave the same bytes
DENSITY_LR_FACTOR = 10.0


def _resize_coding_tables(module, state_dict, prefix, *args) -> None:
    """Let a checkpoint's coding tables replace the empty ones a fresh model starts with."""
    for name in CODING_TABLES:
        if prefix + name in state_dict:
            current = getattr(module, name)  # keep the module's device
            setattr(module, name, torch.empty_like(state_dict[prefix + name], device=current.device))


class EntropyBottleneckLayer(nn.Module):
    """Project features down, code them under a learned factorized density, project back up.

    Symbols (B, h, w, D) are the rounded latent minus the per-channel medians: integers that the
    receiver turns back into the latent by adding the medians.
    """

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        # imported here: CompressAI pulls in its dataset stack, which only this model needs
        from compressai.entropy_models import EntropyBottleneck

        self.project_in = nn.Conv2d(in_channels, dim, kernel_size=1)
        self.entropy_bottleneck = EntropyBottleneck(dim, init_scale=INIT_SCALE)
        self.entropy_bottleneck._register_load_state_dict_pre_hook(_resize_coding_tables, with_module=True)
        self.project_out = nn.Conv2d(dim, in_channels, kernel_size=1)
        # per-channel statistics of the training features: the projection sees standardised
        # features, so its steps (about the learning rate per weight, with Adam) mean the same for
        # any backbone; raw random ResNet-50 features made the latents blow up in the first steps
        self.register_buffer("feature_mean", torch.zeros(in_channels))
        self.register_buffer("feature_std", torch.ones(in_channels))
        self.register_buffer("standardized", torch.tensor(False))

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

    def latent(self, features: torch.Tensor) -> torch.Tensor:
        mean, std = self.feature_mean.view(1, -1, 1, 1), self.feature_std.view(1, -1, 1, 1)
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.project_in((features.float() - mean) / std)

    def medians(self) -> torch.Tensor:
        """(D,) the offsets symbols are rounded around."""
        return self.entropy_bottleneck._get_medians().detach().reshape(-1)

    def symbols(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) features -> (B, h, w, D) integer symbols, as sent."""
        latent = self.latent(features).permute(0, 2, 3, 1)
        return torch.round(latent - self.medians()).long()

    def decode(self, symbols: torch.Tensor) -> torch.Tensor:
        """(B, h, w, D) symbols -> reconstructed features (B, C, h, w), as the receiver computes them."""
        latent = (symbols.float() + self.medians()).permute(0, 3, 1, 2)
        with torch.autocast(device_type=symbols.device.type, enabled=False):
            return self.project_out(latent)

    def bits(self, symbols: torch.Tensor) -> torch.Tensor:
        """(B,) bits each image's symbols cost under the learned density (before table rounding)."""
        latent = (symbols.float() + self.medians()).permute(0, 3, 1, 2)
        _, likelihoods = self.entropy_bottleneck(latent, training=False)
        return -torch.log2(likelihoods).sum(dim=(1, 2, 3))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(B, C, h, w) -> (reconstructed (B, C, h, w), symbols (B, h, w, D) or None in training,
        bits per image (B,))."""
        if not self.training:
            symbols = self.symbols(features)
            return self.decode(symbols), symbols, self.bits(symbols)
        latent = self.latent(features)
        with torch.autocast(device_type=features.device.type, enabled=False):
            noisy, likelihoods = self.entropy_bottleneck(latent, training=True)
            return self.project_out(noisy), None, -torch.log2(likelihoods).sum(dim=(1, 2, 3))


class EntropyBottleneckModule(SqueezedModule):
    """Frozen features -> ``EntropyBottleneckLayer`` -> head, trained for cross-entropy + lambda x rate.

    Args:
        model, optimizer, weights_id: see ``SegmentationModule``.
        quantizer: ``bottleneck_dim`` channels are coded; ``rate_lambda`` weighs bits per pixel
            against the cross-entropy (larger: fewer bytes, lower mIoU).
    """

    kind = "eb"

    def __init__(
        self,
        model: ModelConfig,
        quantizer: QuantizerConfig = QuantizerConfig(quantizer_type="eb"),
        optimizer: OptimizerConfig = OptimizerConfig(),
        weights_id: str | None = None,
        classes: ClassSet | None = None,
    ):
        super().__init__(model, quantizer, optimizer, weights_id, classes)
        self.bottleneck = EntropyBottleneckLayer(self.backbone.out_channels, quantizer.bottleneck_dim)
        for stage in STAGES:
            setattr(self, f"{stage}_bits", MeanMetric())

    def on_fit_start(self) -> None:
        if self.bottleneck.standardized:  # resumed runs bring their statistics
            return
        features = self.training_vectors(STANDARDIZE_VECTORS).double()
        # statistics of every process's batches, so all processes start from the same projection
        count = self.trainer.strategy.reduce(features.new_tensor(float(len(features))), reduce_op="sum")
        total = self.trainer.strategy.reduce(features.sum(dim=0), reduce_op="sum")
        squares = self.trainer.strategy.reduce((features**2).sum(dim=0), reduce_op="sum")
        mean = total / count
        std = (squares / count - mean**2).clamp(min=0).sqrt()
        self.bottleneck.standardize_from(mean.float(), std.float())

    def configure_optimizers(self):
        density = list(self.bottleneck.entropy_bottleneck.parameters())
        known = {id(p) for p in density}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in known]
        lr, decay = self.hparams.lr, self.hparams.weight_decay
        return torch.optim.Adam(
            [{"params": rest}, {"params": density, "lr": DENSITY_LR_FACTOR * lr, "weight_decay": 0.0}],
            lr=lr,
            weight_decay=decay,
        )

    def squeeze(self, features: torch.Tensor):
        reconstructed, symbols, bits = self.bottleneck(features)
        loss = self.hparams.rate_lambda * bits.mean() / self.hparams.image_size**2
        if self.training:  # the quantiles the coding tables will cover learn from their own loss
            loss = loss + self.bottleneck.entropy_bottleneck.loss()
        return reconstructed, loss, bits

    def record_squeeze(self, stage: str, loss: torch.Tensor, bits, batch_size: int) -> None:
        self._metric(stage, "bits").update(bits.detach())

    def epoch_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        values = super().epoch_metrics(stage)
        values["bits_per_image"] = self._metric(stage, "bits").compute()
        self._metric(stage, "bits").reset()
        return values

    @torch.no_grad()
    def indices_of(self, features: torch.Tensor) -> torch.Tensor:
        return self.bottleneck.symbols(features)
