"""The training run shared by train_baseline.py and squeeze.py."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from embeddings_squeeze.callbacks import AtomicCheckpointIO, FiniteLossGuard, InterruptCheckpoint, RNGState
from embeddings_squeeze.data.oxford_pet import OxfordPetDataModule
from embeddings_squeeze.errors import Interrupted, UserError
from embeddings_squeeze.models import SegmentationModule, VQSegmentationModule
from embeddings_squeeze.models.backbones import BACKBONES
from embeddings_squeeze.utils.checkpoint import expect_kind, instantiate, read_checkpoint
from embeddings_squeeze.utils.rate import evaluate_rate
from embeddings_squeeze.utils.run_info import package_versions, write_json

log = logging.getLogger(__name__)
RUN_VERSION_ENV = "EMBEDDINGS_SQUEEZE_RUN_VERSION"
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


def pick_device(accelerator: str, devices) -> torch.device:
    """The one device for work outside the Trainer (feature caching, evaluation)."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        index = int(str(devices).strip("[]").split(",")[0]) if "," in str(devices) else 0
        return torch.device("cuda", index)
    if accelerator in ("gpu", "cuda"):
        raise UserError(f"--accelerator {accelerator} was asked for but no CUDA device is visible")
    return torch.device("cpu")


def _wants_cache(args: argparse.Namespace) -> bool:
    if args.cache_features != "auto":
        return args.cache_features == "on"
    cache_dir = Path(args.cache_dir or Path(args.output_dir) / ".feature_cache")
    return args.epochs > 1 or cache_dir.is_dir()


def _version_of(run_dir: Path) -> int:
    prefix, _, number = run_dir.name.partition("_")
    if prefix != "version" or not number.isdigit():
        raise UserError(f"--resume needs a checkpoint inside a <run>/version_N/ directory, got {run_dir}")
    return int(number)


def find_resume_checkpoint(args: argparse.Namespace, run_name: str) -> Path | None:
    """The checkpoint ``--resume`` points at: a path, or the newest run's last.ckpt for 'latest'."""
    if args.resume is None:
        return None
    if args.resume != "latest":
        return Path(args.resume)
    candidates = [p for p in (Path(args.output_dir) / run_name).glob("version_*/last.ckpt")]
    if not candidates:
        raise UserError(
            f"--resume found no last.ckpt under {Path(args.output_dir) / run_name}; "
            "check --output_dir and --experiment_name, or pass --resume PATH"
        )
    return max(candidates, key=lambda path: _version_of(path.parent))


def _run_location(
    args: argparse.Namespace, run_name: str, resume: Path | None
) -> tuple[Path, str, int | None]:
    """(save_dir, name, version) for the logger; DDP worker processes reuse rank 0's choice."""
    if resume is not None:
        run_dir = resume.resolve().parent
        return run_dir.parent.parent, run_dir.parent.name, _version_of(run_dir)
    version = os.environ.get(RUN_VERSION_ENV) if os.environ.get("LOCAL_RANK", "0") != "0" else None
    return Path(args.output_dir), run_name, None if version is None else int(version)


def _check_writable(folder: Path, flag: str = "--output_dir") -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise UserError(
            f"cannot write to --output_dir {folder} ({error.strerror}); choose another folder"
        ) from None


def _resumed_parts(
    args: argparse.Namespace, checkpoint: dict, path: Path
) -> tuple[SegmentationModule, OxfordPetDataModule]:
    """Model and data exactly as the checkpoint's run had them; only paths and workers may change."""
    trained_epochs = checkpoint["epoch"] + 1
    if trained_epochs >= args.epochs:
        raise UserError(f"{path} already holds {trained_epochs} epochs; pass --epochs above that to continue")
    data = dict(checkpoint["datamodule_hyper_parameters"])
    datamodule = OxfordPetDataModule(data_path=args.data_path, num_workers=args.num_workers, **data)
    pl.seed_everything(data["seed"], workers=True)
    return instantiate(checkpoint, path), datamodule


def train(
    args: argparse.Namespace,
    module_cls: type[SegmentationModule],
    run_name: str,
    extra_callbacks: list | None = None,
    **module_args,
) -> Path:
    """Fit ``module_cls`` on Oxford-IIIT Pet (or resume a run); returns the run's ``last.ckpt``."""
    resume = find_resume_checkpoint(args, run_name)
    if resume is not None:
        checkpoint = read_checkpoint(resume)
        expect_kind(checkpoint, module_cls.kind, "--resume", resume)
        module, datamodule = _resumed_parts(args, checkpoint, resume)
        datamodule.prepare_data()
        datamodule.setup()
    else:
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
    save_dir, name, version = _run_location(args, run_name, resume)
    _check_writable(save_dir)
    if _wants_cache(args):
        cache_dir = Path(args.cache_dir or Path(args.output_dir) / ".feature_cache")
        _check_writable(cache_dir, "--cache_dir")
        datamodule.use_feature_cache(module.backbone, cache_dir, pick_device(args.accelerator, args.devices))
    logger = TensorBoardLogger(save_dir, name=name, version=version, default_hp_metric=False)
    run_dir = Path(logger.log_dir)
    interrupt = InterruptCheckpoint(run_dir)
    best = ModelCheckpoint(
        dirpath=run_dir,
        filename="best-epoch{epoch:02d}",
        monitor="val/miou",
        mode="max",
        auto_insert_metric_name=False,
    )
    # a second callback for last.ckpt: Lightning's save_last only refreshes it when `best` improves
    latest = ModelCheckpoint(dirpath=run_dir, filename="last", enable_version_counter=False)
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator=args.accelerator,
        devices=args.devices,
        strategy=args.strategy,
        num_nodes=args.num_nodes,
        precision=args.precision,
        logger=logger,
        callbacks=[best, latest, interrupt, FiniteLossGuard(run_dir), RNGState(), *(extra_callbacks or [])],
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # the DataModule shards without padding evaluation splits
        log_every_n_steps=min(10, len(datamodule.train_dataloader())),
    )
    if trainer.is_global_zero and resume is None:
        _write_run_files(run_dir, args, module, datamodule)
    os.environ[RUN_VERSION_ENV] = str(logger.version)  # inherited by DDP worker processes
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    except (KeyboardInterrupt, SystemExit):  # Lightning exits on Ctrl-C; SIGTERM arrives as SystemExit
        if interrupt.interrupted_epoch is None:
            raise
        raise _interrupted(run_dir, interrupt.interrupted_epoch) from None
    finally:
        os.environ.pop(RUN_VERSION_ENV, None)
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
    log.info("saved %s (best: %s)", last, best.best_model_path)
    return last


def _write_run_files(run_dir: Path, args: argparse.Namespace, module, datamodule) -> None:
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


def _interrupted(run_dir: Path, epoch: int) -> Interrupted:
    last = run_dir / "last.ckpt"
    partial = f"the partial epoch is in {run_dir / 'interrupted.ckpt'}"
    if not last.is_file():
        return Interrupted(
            f"training interrupted during epoch {epoch}, before any epoch completed; {partial}"
        )
    command = " ".join(arg for arg in sys.argv if arg != "--resume")
    return Interrupted(
        f"training interrupted during epoch {epoch}; {partial}; epoch {epoch} restarts on resume: "
        f"{command} --resume {last}"
    )
