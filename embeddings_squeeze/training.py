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
        split_seed=args.split_seed,
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


def completed_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint of ``run_dir`` that holds the most completed epochs, whichever file it is.

    ``best-epochNN.ckpt`` and ``last.ckpt`` are written one after the other at the end of an
    epoch, so an interrupt between the two leaves the newer epoch in the best file only.
    """
    newest, newest_key = None, None
    for path in [run_dir / "last.ckpt", *sorted(run_dir.glob("best-epoch*.ckpt"))]:
        if path.is_file():
            checkpoint = read_checkpoint(path)
            key = (checkpoint["epoch"], checkpoint["global_step"])
            if newest_key is None or key > newest_key:
                newest, newest_key = path, key
    return newest


def find_resume_checkpoint(args: argparse.Namespace, run_name: str) -> Path | None:
    """What ``--resume`` points at: a checkpoint file, or a run directory to continue or restart.

    'latest' means the newest version directory of this run; a directory resumes from its newest
    completed epoch, or restarts in place when no epoch completed there.
    """
    if args.resume is None:
        return None
    if args.resume == "latest":
        runs = [p for p in (Path(args.output_dir) / run_name).glob("version_*") if p.is_dir()]
        if not runs:
            raise UserError(
                f"--resume found no run under {Path(args.output_dir) / run_name}; "
                "check --output_dir and --experiment_name, or pass --resume PATH"
            )
        target = max(runs, key=_version_of)
    else:
        target = Path(args.resume)
    if target.is_dir():
        _version_of(target)  # refuses folders that are not version_N run directories
        return completed_checkpoint(target) or target
    return target


def _run_location(
    args: argparse.Namespace, run_name: str, resume: Path | None
) -> tuple[Path, str, int | None]:
    """(save_dir, name, version) for the logger; DDP worker processes reuse rank 0's choice."""
    if resume is not None:
        run_dir = resume.resolve() if resume.is_dir() else resume.resolve().parent
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
    if resume is not None and resume.is_dir():
        log.info("no epoch of %s completed; restarting the run in that directory", resume)
    if resume is not None and not resume.is_dir():
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
        if args.model == "deeplab" and args.batch_size < 2:
            raise UserError(
                "DeepLab's head has BatchNorm layers that need at least 2 images per training batch; "
                "pass --batch_size 2 or more"
            )
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
    if trainer.is_global_zero and (resume is None or resume.is_dir()):
        _write_run_files(run_dir, args, module, datamodule)
    os.environ[RUN_VERSION_ENV] = str(logger.version)  # inherited by DDP worker processes
    ckpt_path = None if resume is None or resume.is_dir() else resume
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
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
        trainer.save_checkpoint(last, weights_only=False)  # the full state, resumable
        if trainer.is_global_zero:
            rate = evaluate_rate(module, datamodule.dataloader("val"))
            write_json(run_dir / "rate.json", {"split": "val", **rate})
            fixed, payload = rate["fixed_bits_per_image"], rate["payload_bytes_mean"]
            log.info("rate on val: %s bits/image fixed-length, %s bytes/image as payload", fixed, payload)
            if best.best_model_path and Path(best.best_model_path) != last:
                _count_codes_into(Path(best.best_model_path), module, datamodule)
    log.info("saved %s (best: %s)", last, best.best_model_path)
    return last


def _count_codes_into(path: Path, module: VQSegmentationModule, datamodule: OxfordPetDataModule) -> None:
    """Give the checkpoint at ``path`` its own code histogram, so it can code payloads too."""
    checkpoint = read_checkpoint(path)
    module.load_state_dict(checkpoint["state_dict"], strict=module.stores_frozen_weights)
    module.count_codes(datamodule.dataloader("train"))
    checkpoint["state_dict"]["bottleneck.code_histogram"] = module.bottleneck.code_histogram.cpu()
    AtomicCheckpointIO().save_checkpoint(checkpoint, path)


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
    """The one line that says what was kept and the exact command that continues the run."""
    command = " ".join(_without_resume(sys.argv))
    partial = f"the partial epoch is in {run_dir / 'interrupted.ckpt'}"
    completed = completed_checkpoint(run_dir)
    if completed is None:
        return Interrupted(
            f"training interrupted during epoch {epoch}, before any epoch completed; {partial}; "
            f"restart in the same run directory with: {command} --resume {run_dir}"
        )
    saved = read_checkpoint(completed)["epoch"]
    where = f"epochs up to {saved} are saved in {completed}"
    return Interrupted(
        f"training interrupted during epoch {epoch}; {where}; {partial}; continue with: "
        f"{command} --resume {completed}"
    )


def _without_resume(argv: list[str]) -> list[str]:
    """``argv`` without ``--resume`` and the path that may follow it."""
    kept, skip = [], False
    for position, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--resume":
            following = argv[position + 1] if position + 1 < len(argv) else ""
            skip = bool(following) and not following.startswith("-")
            continue
        if not arg.startswith("--resume="):
            kept.append(arg)
    return kept
