"""The VQ model: the baseline with a quantization bottleneck before the head."""

from __future__ import annotations

import logging

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from torchmetrics import MeanMetric

from embeddings_squeeze.config import ModelConfig, OptimizerConfig, QuantizerConfig
from embeddings_squeeze.data.labels import ClassSet
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.bottleneck import Bottleneck, CodebookUsage
from embeddings_squeeze.models.quantizers import KMEANS_VECTORS_PER_CODE
from embeddings_squeeze.models.segmentation_module import CHECKPOINT_KEY, STAGES, SqueezedModule

log = logging.getLogger(__name__)
LOW_USAGE = 0.10


class VQSegmentationModule(SqueezedModule):
    """Frozen features -> project to ``bottleneck_dim`` -> quantizer -> project back -> head.

    Loss: cross-entropy + ``vq_loss_weight`` x the quantizer's loss. Codebook usage (perplexity,
    fraction of codes used, dead codes; per level for RVQ) is logged over each whole epoch, and the
    codes re-seeded at each training step as ``train/codes_replaced``. VQ/RVQ codebooks start from
    k-means on training vectors only, pooled over as many batches as the codebook needs, before
    Lightning's sanity check can show the library a validation batch.

    Args:
        model: see ``SegmentationModule``.
        quantizer: the bottleneck's settings (see ``QuantizerConfig``); ``vq_loss_weight``
            weighs the quantizer's loss in the objective.
        optimizer, weights_id: see ``SegmentationModule``.
    """

    kind = "vq"

    def __init__(
        self,
        model: ModelConfig,
        quantizer: QuantizerConfig = QuantizerConfig(),
        optimizer: OptimizerConfig = OptimizerConfig(),
        weights_id: str | None = None,
        classes: ClassSet | None = None,
    ):
        super().__init__(model, quantizer, optimizer, weights_id, classes)
        # mean codes re-seeded per training step, one entry per completed epoch
        self.codes_replaced_history: list[float] = []
        self.bottleneck = Bottleneck(self.backbone.out_channels, quantizer)
        quantizer = self.bottleneck.quantizer
        for stage in STAGES:
            setattr(self, f"{stage}_usage", CodebookUsage(quantizer.levels, quantizer.alphabet_size))
            setattr(self, f"{stage}_vq_loss", MeanMetric())
        self.train_codes_replaced = MeanMetric()

    def setup(self, stage: str) -> None:
        quantizer = self.bottleneck.quantizer
        if self.trainer.world_size > 1:
            quantizer.synchronize_across_processes()
        quantizer.configure_dead_codes(self.vectors_per_step())

    def vectors_per_step(self) -> int:
        """Vectors one training step feeds the codebook statistics (all processes together)."""
        grid_h, grid_w = self.backbone.grid_size(self.hparams.image_size)
        batch_size = self.trainer.datamodule.hparams.batch_size
        return batch_size * grid_h * grid_w * self.trainer.world_size

    def on_fit_start(self) -> None:
        quantizer = self.bottleneck.quantizer
        if quantizer.needs_initialization:  # a fresh run; resumed runs bring their codebook
            wanted = KMEANS_VECTORS_PER_CODE * quantizer.alphabet_size
            quantizer.initialize_codebooks(self._training_vectors(wanted), self.vectors_per_step())

    def _training_vectors(self, wanted: int) -> torch.Tensor:
        vectors = self.training_vectors(wanted, self.bottleneck.latent)
        size = self.bottleneck.quantizer.alphabet_size
        if len(torch.unique(vectors, dim=0)) < size:
            raise UserError(
                f"the training split has {len(vectors)} feature vectors, too few distinct ones for a "
                f"codebook of {size}; pass a smaller --num_vectors or use more training images"
            )
        return vectors

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
        if stage == "train":
            replaced = float(self.bottleneck.quantizer.read_codes_replaced())
            self.train_codes_replaced.update(replaced)
            self.log("train/codes_replaced", replaced, on_step=True, on_epoch=False, batch_size=batch_size)

    def epoch_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        values = super().epoch_metrics(stage)
        if stage == "train":
            values["codes_replaced_per_step"] = self.train_codes_replaced.compute()
            self.train_codes_replaced.reset()
            self.codes_replaced_history.append(float(values["codes_replaced_per_step"]))
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

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[CHECKPOINT_KEY]["codes_replaced_per_step"] = list(self.codes_replaced_history)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.codes_replaced_history = list(checkpoint[CHECKPOINT_KEY]["codes_replaced_per_step"])

    @rank_zero_only
    def _report_usage(self, stats: dict) -> None:
        alphabet = self.bottleneck.quantizer.alphabet_size
        usage = float(stats["code_usage"])
        log.info("epoch %d: %.1f%% of %d codes used, perplexity %.1f", self.current_epoch, 100 * usage,
                 alphabet, float(stats["perplexity"]))  # fmt: skip
        if usage < LOW_USAGE:
            log.warning(
                "warning: only %.1f%% of the %d codes are in use; try a smaller --num_vectors "
                "or a lower --decay",
                100 * usage,
                alphabet,
            )

    @torch.no_grad()
    def indices_of(self, features: torch.Tensor) -> torch.Tensor:
        return self.bottleneck.encode(features)[1]
