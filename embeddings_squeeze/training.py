"""The training run shared by train_baseline.py and squeeze.py."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from embeddings_squeeze.data.oxford_pet import OxfordPetDataModule
from embeddings_squeeze.models import SegmentationModule, VQSegmentationModule
from embeddings_squeeze.models.backbones import BACKBONES
from embeddings_squeeze.utils.rate import evaluate_rate
from embeddings_squeeze.utils.run_info import package_versions, write_json

log = logging.getLogger(__name__)
# config.json and split.json are written into the fresh run directory before Lightning's first checkpoint
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def build_datamodule(args: argparse.Namespace, model: str, **overrides) -> OxfordPetDataModule:
    """The DataModule for ``args``, normalised as ``model``'s weights expect."""
    mean, std = BACKBONES[model].normalization()
    settings = dict(
        data_path=args.data_path,
        image_size=getattr(args, "image_size", 224),
        mask_mode=getattr(args, "mask_mode", "trimap"),
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        subset_size=args.subset_size,
        val_fraction=getattr(args, "val_fraction", 0.1),
        seed=args.seed,
        mean=mean,
        std=std,
    )
    settings.update(overrides)
    return OxfordPetDataModule(**settings)


def train(
    args: argparse.Namespace, module_cls: type[SegmentationModule], run_name: str, **module_args
) -> Path:
    """Fit ``module_cls`` on Oxford-IIIT Pet; returns the path of the run's ``last.ckpt``."""
    pl.seed_everything(args.seed, workers=True)
    datamodule = build_datamodule(args, args.model)
    datamodule.prepare_data()
    datamodule.setup()  # a missing or broken dataset fails here, before any weights are fetched
    module = module_cls(
        backbone=args.model,
        weights=args.weights,
        mask_mode=args.mask_mode,
        image_size=args.image_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        **module_args,
    )
    logger = TensorBoardLogger(args.output_dir, name=run_name, default_hp_metric=False)
    run_dir = Path(logger.log_dir)
    checkpoints = ModelCheckpoint(
        dirpath=run_dir,
        filename="best-epoch{epoch:02d}",
        monitor="val/miou",
        mode="max",
        save_last=True,
        auto_insert_metric_name=False,
    )
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator=args.accelerator,
        devices=args.devices,
        strategy=args.strategy,
        num_nodes=args.num_nodes,
        precision=args.precision,
        logger=logger,
        callbacks=[checkpoints],
        log_every_n_steps=min(10, len(datamodule.train_dataloader())),
    )
    if trainer.is_global_zero:
        config = {
            "command": sys.argv,
            "run_dir": str(run_dir),
            "args": vars(args),
            "model": dict(module.hparams),
            "data": dict(datamodule.hparams),
            "versions": package_versions(),
        }
        write_json(run_dir / "config.json", config)
        write_json(run_dir / "split.json", datamodule.split_record())
    trainer.fit(module, datamodule=datamodule)
    last = run_dir / "last.ckpt"
    if isinstance(module, VQSegmentationModule):
        # the entropy coder's model: code counts over the training split, saved with the weights
        module.count_codes(datamodule.dataloader("train"))
        trainer.save_checkpoint(last)
        if trainer.is_global_zero:
            rate = evaluate_rate(module, datamodule.dataloader("val"))
            write_json(run_dir / "rate.json", {"split": "val", **rate})
            fixed, payload = rate["fixed_bits_per_image"], rate["payload_bytes_mean"]
            log.info("rate on val: %s bits/image fixed-length, %s bytes/image as payload", fixed, payload)
    log.info("saved %s (best: %s)", last, checkpoints.best_model_path)
    return last
