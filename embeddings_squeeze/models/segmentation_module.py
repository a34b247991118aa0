"""The LightningModule shared by the baseline and the squeezed model: steps, loss, metrics, checkpoints."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import MulticlassJaccardIndex

from embeddings_squeeze import __version__
from embeddings_squeeze.config import ModelConfig, OptimizerConfig, from_values
from embeddings_squeeze.data.labels import IGNORE_INDEX, ClassSet
from embeddings_squeeze.data.registry import dataset_class
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.backbones import build_backbone
from embeddings_squeeze.models.quantizers.base import FitStart

CHECKPOINT_KEY = "embeddings_squeeze"
# 2: float16-rounded features, split_seed, FSQ code norm, cross-entropy as loss, replacement history,
#    frozen weights described (seed, file, name) rather than stored
# 3: one squeezed kind with the quantizer as a registered class; per-type settings only
# 4: every model standardises the frozen features (the baseline too); FSQ's and LFQ's code modules as
#    1x1 convolutions; continuous references with a type's code modules
CHECKPOINT_FORMAT = 4
FROZEN_PREFIX = "backbone.encoder."
STAGES = ("train", "val", "test")


class SegmentationModule(pl.LightningModule):
    """Frozen backbone features -> ``squeeze`` (identity here) -> trainable head -> logits.

    Args:
        model: backbone, frozen weights, input size and classes (see ``ModelConfig``); a weights
            path is stored absolute, so a checkpoint finds its file from any working directory.
        optimizer: Adam settings of the trainable parameters.
        weights_id: identity of the frozen weights; computed when None.
        classes: the dataset's classes (its data module's ``classes``); datasets that fix their
            classes (pet, voc) supply them when None.

    ``hparams`` holds every setting as a flat dict of plain values, which is what checkpoints
    store and ``from_hparams`` rebuilds the model from.
    """

    def __init__(
        self,
        model: ModelConfig,
        optimizer: OptimizerConfig = OptimizerConfig(),
        weights_id: str | None = None,
        classes: ClassSet | None = None,
    ):
        super().__init__()
        if model.weights not in ("default", "none"):
            model = replace(model, weights=str(Path(model.weights).resolve()))
        dataset = dataset_class(model.dataset)
        model = replace(model, mask_mode=dataset.resolve_mask_mode(model.mask_mode))
        classes = classes or dataset.fixed_classes(model.mask_mode)
        if classes is None:
            raise UserError(
                f"--dataset {model.dataset} reads its classes from its files: pass its data module's"
            )
        self.model_config = model
        self.classes = classes
        # plain scalars only; the classes travel in the checkpoint's own section (on_save_checkpoint)
        self.save_hyperparameters({**asdict(model), **asdict(optimizer), "weights_id": weights_id})
        self.class_names = classes.names
        self.num_classes = len(classes)
        self.backbone = build_backbone(
            model.backbone, self.num_classes, model.weights, model.image_size, model.backbone_seed,
            model.feature_layer,
        )  # fmt: skip
        self.backbone.feature_precision = model.feature_precision
        if weights_id is None:
            self.hparams.weights_id = self.backbone.weights_id
        # checkpoints describe the frozen weights (a name, a seed or a file, with a fingerprint)
        # instead of carrying them; only 'embeddings-squeeze export' stores them
        self.stores_frozen_weights = False
        self.strict_loading = False
        for stage in STAGES:  # accumulators over an epoch, one set per stage
            setattr(
                self,
                f"{stage}_miou",
                # labels come from our own data; checking every batch's values was 12 % of a cached epoch
                MulticlassJaccardIndex(self.num_classes, ignore_index=IGNORE_INDEX, validate_args=False),
            )
            setattr(self, f"{stage}_loss", MeanMetric())  # cross-entropy, the same on every stage

    def squeeze(self, features: torch.Tensor):
        """Hook for a bottleneck: returns (features, loss added to the objective, a record of the pass)."""
        return features, features.new_zeros(()), None

    def record_squeeze(self, stage: str, loss: torch.Tensor, record, batch_size: int) -> None:
        """Hook to log what ``squeeze`` did during a step."""

    def logits_from_features(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Frozen-backbone features -> (B, C, H, W) logits at the input size ``size``."""
        squeezed, _, _ = self.squeeze(features)
        return self.backbone.classify(squeezed, size)

    def features_of(self, inputs: torch.Tensor, one_by_one: bool = False) -> torch.Tensor:
        """Images (B, 3, H, W) go through the frozen encoder (``one_by_one``: each image on its own, as
        a sender computes them); cached features (B, C, h, w) already did, one by one."""
        if inputs.shape[1] != 3:
            return inputs
        return self.backbone.features_one_by_one(inputs) if one_by_one else self.backbone.features(inputs)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.logits_from_features(self.backbone.features(images), images.shape[-2:])}

    @classmethod
    def configs_from(cls, hparams: dict) -> dict:
        """Constructor arguments from the flat plain values a checkpoint stores (its hyperparameters
        and the class names and colours of its own section)."""
        return {
            # checkpoints from before --feature_precision ran their backbone in float32
            "model": from_values(ModelConfig, {"feature_precision": "float32", **hparams}),
            "optimizer": from_values(OptimizerConfig, hparams),
            "weights_id": hparams["weights_id"],
            # checkpoints from before datasets other than pet take their classes from the mask mode
            "classes": ClassSet.from_values(hparams) if "class_colours" in hparams else None,
        }

    @classmethod
    def from_hparams(cls, hparams: dict) -> SegmentationModule:
        return cls(**cls.configs_from(hparams))

    @torch.no_grad()
    def predict_masks(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, H, W) predicted labels."""
        return predicted_labels(self(images)["out"])

    def _step(self, batch, stage: str) -> torch.Tensor:
        inputs, masks = batch[0], batch[1]
        features, squeeze_loss, record = self.squeeze(self.features_of(inputs))
        logits = self.backbone.classify(features, masks.shape[-2:])
        cross_entropy = F.cross_entropy(logits, masks, ignore_index=IGNORE_INDEX)
        size = len(inputs)
        self._metric(stage, "miou").update(predicted_labels(logits.detach()), masks)
        self._metric(stage, "loss").update(cross_entropy.detach(), weight=size)
        self.record_squeeze(stage, squeeze_loss, record, size)
        if stage == "train":
            self.log("train/loss_step", cross_entropy, prog_bar=True, batch_size=size)
        # what is minimised: the quantizer's loss (logged on its own) joins the cross-entropy
        return cross_entropy + squeeze_loss

    def _metric(self, stage: str, name: str) -> Metric:
        return getattr(self, f"{stage}_{name}")

    def epoch_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        """This epoch's values over every image of every process; resets the accumulators."""
        values = {}
        for name in ("miou", "loss"):
            values[name] = self._metric(stage, name).compute()
            self._metric(stage, name).reset()
        return values

    def _log_epoch(self, stage: str) -> None:
        # Metrics are computed (and, under DDP, synced) here, in the same order on every process,
        # and logged as plain values: syncs inside Lightning's logging would run on rank 0 alone
        # when its progress bar reads them, out of step with the other processes.
        values = self.epoch_metrics(stage)
        miou = values.pop("miou")
        self.log(f"{stage}/miou", miou, prog_bar=True)
        self.log_dict({f"{stage}/{name}": value for name, value in values.items()})

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def fit_start(self) -> FitStart:
        """What a data-dependent start may look at when fitting begins (training data only)."""
        strategy = self.trainer.strategy
        return FitStart(
            training_vectors=self.training_vectors,
            vectors_per_step=self.vectors_per_step(),
            world_size=self.trainer.world_size,
            reduce_sum=lambda tensor: strategy.reduce(tensor, reduce_op="sum"),
        )

    def vectors_per_step(self) -> int:
        """Feature vectors one training step shows the model (all processes together)."""
        grid_h, grid_w = self.backbone.grid_size(self.hparams.image_size)
        batch_size = self.trainer.datamodule.hparams.batch_size
        return batch_size * grid_h * grid_w * self.trainer.world_size

    @torch.no_grad()
    def training_vectors(self, wanted: int, of=lambda features: features) -> torch.Tensor:
        """At least ``wanted`` (N, D) vectors ``of(features)`` from training batches, or the whole
        split: what a data-dependent start may look at (never validation data)."""
        if self.trainer.datamodule is None:
            raise RuntimeError(f"fit {type(self).__name__} with a datamodule: it starts from its data")
        pooled, count = [], 0
        for batch in self.trainer.datamodule.train_dataloader():
            latent = of(self.features_of(batch[0].to(self.device)))
            pooled.append(latent.permute(0, 2, 3, 1).reshape(-1, latent.shape[1]))
            count += len(pooled[-1])
            if count >= wanted:
                break
        return torch.cat(pooled)

    def special_param_groups(self) -> list[dict]:
        """Optimizer groups for parameters that need settings of their own; the rest share Adam's."""
        return []

    def configure_optimizers(self):
        special = self.special_param_groups()
        claimed = {id(p) for group in special for p in group["params"]}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in claimed]
        return torch.optim.Adam(
            [{"params": rest}, *special], lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "format_version": CHECKPOINT_FORMAT,
            "package_version": __version__,
            "kind": self.kind,
            "backbone": self.hparams.backbone,
            **self.backbone.provenance,
            "weights_id": self.hparams.weights_id,
            "dataset": self.hparams.dataset,
            "num_classes": self.num_classes,
            **self.classes.as_values(),
            "frozen_weights_stored": self.stores_frozen_weights,
        }
        if not self.stores_frozen_weights:
            state = checkpoint["state_dict"]
            for key in [k for k in state if k.startswith(FROZEN_PREFIX)]:
                del state[key]


def predicted_labels(logits: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) logits -> (B, H, W) labels, the first of equal maxima (as ``argmax``, whose
    values these are): ``max``'s indices, which on channels-first logits run about 40x faster."""
    return logits.max(dim=1).indices
