"""The VQ model: the baseline with a vector-quantization bottleneck before the head."""

from __future__ import annotations

import logging

import torch

from embeddings_squeeze.models.bottleneck import CodebookUsage, VQBottleneck
from embeddings_squeeze.models.segmentation_module import STAGES, SegmentationModule

log = logging.getLogger(__name__)


class VQSegmentationModule(SegmentationModule):
    """Frozen features -> project to ``bottleneck_dim`` -> VQ codebook -> project back -> head.

    Loss: cross-entropy + ``vq_loss_weight`` x the quantizer's commitment loss. Codebook usage
    (perplexity, fraction of codes used) is logged over each whole epoch.

    Args:
        num_vectors: codebook size K; each feature-grid position costs log2(K) bits.
        bottleneck_dim: dimension of the codebook vectors.
        commitment_weight: commitment loss weight inside the quantizer.
        decay: EMA decay of the codebook.
        vq_loss_weight: weight of the quantizer loss in the total loss.
        **segmentation_args: see ``SegmentationModule``.
    """

    kind = "vq"

    def __init__(
        self,
        num_vectors: int = 512,
        bottleneck_dim: int = 64,
        commitment_weight: float = 0.25,
        decay: float = 0.99,
        vq_loss_weight: float = 1.0,
        **segmentation_args,
    ):
        super().__init__(**segmentation_args)
        self.bottleneck = VQBottleneck(
            self.backbone.out_channels, bottleneck_dim, num_vectors, commitment_weight, decay
        )
        for stage in STAGES:
            setattr(self, f"{stage}_usage", CodebookUsage(num_vectors))

    def squeeze(self, features: torch.Tensor):
        reconstructed, indices, loss = self.bottleneck(features)
        return reconstructed, self.hparams.vq_loss_weight * loss, indices

    def record_squeeze(self, stage: str, loss: torch.Tensor, indices, batch_size: int) -> None:
        getattr(self, f"{stage}_usage").update(indices)
        self.log(f"{stage}/vq_loss", loss, on_epoch=True, batch_size=batch_size)

    def _log_usage(self, stage: str) -> None:
        stats = getattr(self, f"{stage}_usage").compute()
        getattr(self, f"{stage}_usage").reset()
        self.log_dict({f"{stage}/{name}": value for name, value in stats.items()})
        if stage == "val":
            log.info(
                "epoch %d: %.1f%% of %d codes used, perplexity %.1f",
                self.current_epoch,
                100 * stats["code_usage"],
                self.hparams.num_vectors,
                stats["perplexity"],
            )

    def on_train_epoch_end(self) -> None:
        self._log_usage("train")

    def on_validation_epoch_end(self) -> None:
        self._log_usage("val")

    def on_test_epoch_end(self) -> None:
        self._log_usage("test")
