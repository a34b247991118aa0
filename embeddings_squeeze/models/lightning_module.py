"""The VQ model: the baseline with a quantization bottleneck (any registered type) before the head."""

from __future__ import annotations

import logging

import torch
from torchmetrics import MeanMetric

from embeddings_squeeze.config import ModelConfig, OptimizerConfig, QuantizerConfig
from embeddings_squeeze.data.labels import ClassSet
from embeddings_squeeze.models import SQUEEZED
from embeddings_squeeze.models.quantizers import build_quantizer, quantizer_config, quantizer_values
from embeddings_squeeze.models.segmentation_module import (
    CHECKPOINT_KEY,
    STAGES,
    SegmentationModule,
    predicted_labels,
)

log = logging.getLogger(__name__)


class SqueezedSegmentationModule(SegmentationModule):
    """Frozen features -> ``bottleneck`` (a quantizer of the ``models/quantizers/`` registry) -> head.

    Loss: cross-entropy + ``vq_loss_weight`` x the quantizer's own loss (+ an auxiliary loss that
    trains only the quantizer's own parameters, e.g. eb's quantiles). What the quantizer reports
    about an epoch (codebook usage, bits, ...) is logged under ``<stage>/``, its weighted loss as
    ``<stage>/bottleneck_loss`` and its auxiliary loss as ``train/auxiliary_loss``, per step.

    The sender's and the receiver's halves (``encode_image``, ``decode_mask``) work one image at a
    time, because batched matrix products can round differently from single-image ones and a
    payload always carries one image.

    Args:
        model, optimizer, weights_id, classes: see ``SegmentationModule``.
        quantizer: the bottleneck's type and settings (see ``QuantizerConfig``).
    """

    kind = SQUEEZED

    def __init__(
        self,
        model: ModelConfig,
        quantizer: QuantizerConfig = QuantizerConfig(),
        optimizer: OptimizerConfig = OptimizerConfig(),
        weights_id: str | None = None,
        classes: ClassSet | None = None,
    ):
        super().__init__(model, optimizer, weights_id, classes)
        self.hparams.update(quantizer_values(quantizer))
        self.bottleneck = build_quantizer(self.backbone.out_channels, quantizer, model.image_size**2)
        for stage in STAGES:
            setattr(self, f"{stage}_statistics", self.bottleneck.statistics())
            setattr(self, f"{stage}_bottleneck_loss", MeanMetric())

    @classmethod
    def configs_from(cls, hparams: dict) -> dict:
        return {**super().configs_from(hparams), "quantizer": quantizer_config(hparams)}

    def on_fit_start(self) -> None:
        self.bottleneck.start(self.fit_start())

    def on_train_end(self) -> None:
        # before the end of fit, where rank 0 alone reloads the best checkpoint to build its coder model
        if self.trainer.world_size > 1:
            self._check_bottleneck_in_sync()

    def _check_bottleneck_in_sync(self) -> None:
        """Every process must end training with the same bottleneck."""
        for name, tensor in self.bottleneck.state_dict().items():
            gathered = self.all_gather(tensor)  # (world, ...)
            if not all(torch.equal(gathered[0], other) for other in gathered[1:]):
                raise RuntimeError(f"bottleneck tensor {name} differs across processes after training")
        if self.trainer.is_global_zero:
            log.info("bottleneck identical on all %d processes", self.trainer.world_size)

    def special_param_groups(self) -> list[dict]:
        return self.bottleneck.param_groups(self.hparams.lr)

    def squeeze(self, features: torch.Tensor):
        out = self.bottleneck(features)
        return out.features, self.hparams.vq_loss_weight * out.loss + out.auxiliary_loss, out

    def record_squeeze(self, stage: str, loss: torch.Tensor, out, batch_size: int) -> None:
        self._metric(stage, "statistics").update(**out.record)
        weighted = self.hparams.vq_loss_weight * out.loss.detach()
        self._metric(stage, "bottleneck_loss").update(weighted, weight=batch_size)
        if stage == "train":
            logs = {**self.bottleneck.step_logs(out.record)}
            if torch.is_tensor(out.auxiliary_loss):  # a loss that trains only the quantizer's own parameters
                logs["auxiliary_loss"] = float(out.auxiliary_loss.detach())
            for name, value in logs.items():
                self.log(f"train/{name}", value, on_step=True, on_epoch=False, batch_size=batch_size)

    def epoch_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        values = super().epoch_metrics(stage)
        values["bottleneck_loss"] = self._metric(stage, "bottleneck_loss").compute()
        values.update(self._metric(stage, "statistics").compute())
        for name in ("bottleneck_loss", "statistics"):
            self._metric(stage, name).reset()
        if not self.trainer.sanity_checking:
            self.bottleneck.end_epoch(stage, values, self.current_epoch)
        return values

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[CHECKPOINT_KEY]["training_record"] = self.bottleneck.training_record()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.bottleneck.restore_training_record(checkpoint[CHECKPOINT_KEY]["training_record"])

    @torch.no_grad()
    def indices_of(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) features -> (B, h, w, L) integers sent for them, as in eval mode."""
        return self.bottleneck.encode(features)

    @torch.no_grad()
    def encode_image(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One (3, S, S) image -> its (1, C, h, w) features and the (h, w, L) integers sent for it."""
        features = self.backbone.features_one_by_one(image.unsqueeze(0).to(self.device))
        return features, self.indices_of(features)[0]

    @torch.no_grad()
    def decode_mask(self, indices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """One image's (h, w, L) integers -> its labels at ``size`` (height, width), the image's own:
        exactly what the receiver computes."""
        features = self.bottleneck.decode(indices.unsqueeze(0).to(self.device))
        return predicted_labels(self.backbone.classify(features, size))[0]
