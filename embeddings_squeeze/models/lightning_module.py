"""The VQ model: the baseline with a quantization bottleneck before the head."""

from __future__ import annotations

import logging

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from torchmetrics import MeanMetric
from tqdm import tqdm

from embeddings_squeeze.models.bottleneck import Bottleneck, CodebookUsage, count_codes, usage_statistics
from embeddings_squeeze.models.quantizers import parse_levels
from embeddings_squeeze.models.segmentation_module import STAGES, SegmentationModule

log = logging.getLogger(__name__)
LOW_USAGE = 0.10


class VQSegmentationModule(SegmentationModule):
    """Frozen features -> project to ``bottleneck_dim`` -> quantizer -> project back -> head.

    Loss: cross-entropy + ``vq_loss_weight`` x the quantizer's loss. Codebook usage (perplexity,
    fraction of codes used, dead codes; per level for RVQ) is logged over each whole epoch.

    Args:
        quantizer_type: 'vq', 'rvq', 'fsq' or 'lfq'.
        num_vectors: codebook size K per level (for FSQ it picks the levels unless given).
        bottleneck_dim: dimension of the quantized vectors.
        num_quantizers: residual levels for RVQ.
        fsq_levels: FSQ levels as text, e.g. '8,5,5'; None derives them from ``num_vectors``.
        commitment_weight: commitment loss weight inside VQ/RVQ.
        decay: EMA decay of VQ/RVQ codebooks.
        vq_loss_weight: weight of the quantizer loss in the total loss.
        kmeans_init: k-means initialisation of VQ/RVQ codebooks on the first training batch.
        dead_code_threshold: replace VQ/RVQ codes whose EMA usage falls below this (0: off).
        **segmentation_args: see ``SegmentationModule``.
    """

    kind = "vq"

    def __init__(
        self,
        quantizer_type: str = "vq",
        num_vectors: int = 512,
        bottleneck_dim: int = 64,
        num_quantizers: int = 1,
        fsq_levels: str | None = None,
        commitment_weight: float = 0.25,
        decay: float = 0.99,
        vq_loss_weight: float = 1.0,
        kmeans_init: bool = True,
        dead_code_threshold: float = 2.0,
        **segmentation_args,
    ):
        super().__init__(**segmentation_args)
        self.bottleneck = Bottleneck(
            self.backbone.out_channels,
            bottleneck_dim,
            quantizer_type=quantizer_type,
            codebook_size=num_vectors,
            num_quantizers=num_quantizers,
            fsq_levels=parse_levels(fsq_levels),
            commitment_weight=commitment_weight,
            decay=decay,
            kmeans_init=kmeans_init,
            dead_code_threshold=dead_code_threshold,
        )
        quantizer = self.bottleneck.quantizer
        for stage in STAGES:
            setattr(self, f"{stage}_usage", CodebookUsage(quantizer.levels, quantizer.alphabet_size))
            setattr(self, f"{stage}_vq_loss", MeanMetric())

    def setup(self, stage: str) -> None:
        if self.trainer.world_size > 1:
            self.bottleneck.quantizer.synchronize_across_processes()

    def on_fit_end(self) -> None:
        if self.trainer.world_size > 1:
            self._check_bottleneck_in_sync()

    def _check_bottleneck_in_sync(self) -> None:
        """Every process must end training with the same codebook and projections."""
        for name, tensor in self.bottleneck.state_dict().items():
            gathered = self.all_gather(tensor)  # (world, ...)
            if not all(torch.equal(gathered[0], other) for other in gathered[1:]):
                raise RuntimeError(f"bottleneck tensor {name} differs across processes after training")
        rank_zero_info(f"bottleneck identical on all {self.trainer.world_size} processes")

    def squeeze(self, features: torch.Tensor):
        reconstructed, indices, loss = self.bottleneck(features)
        return reconstructed, self.hparams.vq_loss_weight * loss, indices

    def record_squeeze(self, stage: str, loss: torch.Tensor, indices, batch_size: int) -> None:
        self._metric(stage, "usage").update(indices)
        self._metric(stage, "vq_loss").update(loss.detach(), weight=batch_size)

    def epoch_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        values = super().epoch_metrics(stage)
        values["vq_loss"] = self._metric(stage, "vq_loss").compute()
        self._metric(stage, "vq_loss").reset()
        stats = self._metric(stage, "usage").compute()
        self._metric(stage, "usage").reset()
        for name in ("perplexity", "code_usage", "dead_code_fraction"):
            values[name] = stats[name].float()
        if self.bottleneck.quantizer.levels > 1:
            for level, value in enumerate(stats["perplexity_per_level"]):
                values[f"perplexity_level{level}"] = value.float()
        if stage == "val" and not self.trainer.sanity_checking:
            self._report_usage(stats)
        return values

    @rank_zero_only
    def _report_usage(self, stats: dict) -> None:
        alphabet = self.bottleneck.quantizer.alphabet_size
        usage = float(stats["code_usage"])
        log.info("epoch %d: %.1f%% of %d codes used, perplexity %.1f", self.current_epoch, 100 * usage,
                 alphabet, float(stats["perplexity"]))  # fmt: skip
        if usage < LOW_USAGE:
            log.warning(
                "warning: only %.1f%% of the %d codes are in use; try a smaller --num_vectors, "
                "a lower --decay or --dead_code_threshold above 0",
                100 * usage,
                alphabet,
            )

    @torch.no_grad()
    def count_codes(self, dataloader) -> dict:
        """Fill ``code_histogram`` with the eval-mode indices of every image in ``dataloader``."""
        self.eval()
        histogram = torch.zeros_like(self.bottleneck.code_histogram)
        for batch in tqdm(dataloader, desc="counting codes on the training split", unit="batch"):
            features = self.features_of(batch[0].to(self.device))
            _, indices, _ = self.bottleneck(features)
            histogram += count_codes(indices, histogram.shape[1])
        self.bottleneck.code_histogram.copy_(histogram)
        return usage_statistics(histogram)
