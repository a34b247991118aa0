"""Fitting a model: the Trainer, its callbacks, the run directory, resume and the feature cache."""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment

from embeddings_squeeze import PROGRAM
from embeddings_squeeze.config import (
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    QuantizerConfig,
    RuntimeConfig,
    TrainingConfig,
    from_values,
)
from embeddings_squeeze.data.registry import LEGACY_DATASET, dataset_class
from embeddings_squeeze.data.segmentation import SegmentationDataModule
from embeddings_squeeze.engine.callbacks import (
    AtomicCheckpointIO,
    CoderModel,
    FiniteLossGuard,
    InterruptCheckpoint,
    RNGState,
    ValidationHistory,
)
from embeddings_squeeze.engine.checkpoint import expect_kind, instantiate, read_checkpoint
from embeddings_squeeze.engine.feature_cache import cached_split
from embeddings_squeeze.engine.run_dirs import (
    RUN_VERSION_ENV,
    completed_checkpoint,
    completed_epochs,
    converged,
    epoch_of,
    prepare_output_dir,
    resume_target,
    run_location,
)
from embeddings_squeeze.engine.setup import datamodule_for, pick_device, recorded_folder
from embeddings_squeeze.errors import Interrupted, UserError
from embeddings_squeeze.models import (
    BASELINE,
    SQUEEZED,
    BaselineSegmentationModule,
    SegmentationModule,
    SqueezedSegmentationModule,
)
from embeddings_squeeze.models.backbones import backbone_class, precision
from embeddings_squeeze.utils.files import write_json
from embeddings_squeeze.utils.run_info import package_versions

log = logging.getLogger(__name__)


def fit(
    run_name: str,
    model: ModelConfig,
    data: DataConfig,
    training: TrainingConfig,
    runtime: RuntimeConfig,
    optimizer: OptimizerConfig = OptimizerConfig(),
    quantizer: QuantizerConfig | None = None,
    extra_callbacks: tuple[pl.Callback, ...] = (),
) -> Path:
    """Train the baseline (``quantizer`` None) or a squeezed model (any registered quantizer type), or
    resume a run; returns its ``last.ckpt``.

    A resumed run takes its model, optimizer and data settings from the checkpoint; only the data
    path, the workers, ``training.epochs`` and the runtime may change.
    """
    kind = BASELINE if quantizer is None else SQUEEZED
    resume = resume_target(training.resume, training.output_dir, run_name)
    if resume is not None and not resume.is_dir():
        checkpoint = read_checkpoint(resume)
        expect_kind(checkpoint, kind, "--resume", resume)
        module, datamodule = _resumed_parts(checkpoint, resume, data, training)
    else:
        if resume is not None:
            log.info("no epoch of %s completed; restarting the run in that directory", resume)
            data = recorded_folder(data, _recorded_data_path(resume), "the run")
        module, datamodule = _new_parts(model, data, training, runtime, optimizer, quantizer)
    save_dir, name, version = run_location(training.output_dir, run_name, resume)
    if training.cache_dir is None:  # the cache lives in the output folder: its problems are that folder's
        prepare_output_dir(save_dir)
    # before the output folder: a --cache_dir that fails leaves none made
    serve_cached_features(datamodule, module.backbone, training, runtime, ("train", "val"))
    prepare_output_dir(save_dir)
    logger = TensorBoardLogger(save_dir, name=name, version=version, default_hp_metric=False)
    run_dir = Path(logger.log_dir)
    interrupt = InterruptCheckpoint(run_dir)
    trainer = pl.Trainer(
        max_epochs=training.epochs,
        logger=logger,
        callbacks=_callbacks(run_dir, interrupt, training, kind, extra_callbacks),
        plugins=[AtomicCheckpointIO(), *_cluster_plugins()],
        use_distributed_sampler=False,  # the DataModule shards without padding evaluation splits
        log_every_n_steps=min(10, len(datamodule.train_dataloader())),
        enable_model_summary=False,  # it lists metric objects; ``parameter_summary`` says what trains
        **asdict(runtime),
    )
    if trainer.is_global_zero:
        processes = f" x {trainer.world_size} processes" if trainer.world_size > 1 else ""
        log.info("%s; on %s%s, backbone in %s", parameter_summary(module), trainer.strategy.root_device.type,
                 processes, module.backbone.feature_precision)  # fmt: skip
    if trainer.is_global_zero and (resume is None or resume.is_dir()):
        _write_run_files(run_dir, module, datamodule, training, runtime)
    _train(trainer, module, datamodule, resume, interrupt)
    return run_dir / "last.ckpt"


def _new_parts(
    model: ModelConfig,
    data: DataConfig,
    training: TrainingConfig,
    runtime: RuntimeConfig,
    optimizer: OptimizerConfig,
    quantizer: QuantizerConfig | None,
) -> tuple[SegmentationModule, SegmentationDataModule]:
    """A fresh run's model and data, refused early where they cannot train (a missing dataset, a batch
    too small for the head, a codebook too big for the data)."""
    pl.seed_everything(training.seed, workers=True)
    datamodule = datamodule_for(replace(data, data_path=data.data_path or DataConfig.data_path), model,
                                training.seed)  # fmt: skip
    datamodule.prepare_data()
    datamodule.setup()  # a missing or broken dataset fails here, before any weights are fetched
    model = _resolved(model, runtime)
    least = backbone_class(model.backbone).min_training_batch
    if data.batch_size < least:
        raise UserError(
            f"{model.backbone}'s head has BatchNorm layers that need at least {least} images per "
            f"training batch; pass --batch_size {least} or more"
        )
    if quantizer is None:
        return BaselineSegmentationModule(model, optimizer, classes=datamodule.classes), datamodule
    module = SqueezedSegmentationModule(model, quantizer, optimizer, classes=datamodule.classes)
    positions = math.prod(module.backbone.grid_size(model.image_size))
    module.bottleneck.check_training_data(len(datamodule.files["train"]), positions)
    return module, datamodule


def _callbacks(
    run_dir: Path, interrupt: InterruptCheckpoint, training: TrainingConfig, kind: str, extra: tuple
) -> list[pl.Callback]:
    """The run's callbacks: the best and the last checkpoint, the interrupt checkpoint, the guards,
    the validation history, the convergence rule (``--converge``) and the coder's model (squeezed)."""
    best = ModelCheckpoint(
        dirpath=run_dir,
        filename="best-epoch{epoch:02d}",
        monitor="val/miou",
        mode="max",
        auto_insert_metric_name=False,
    )
    # a second callback for last.ckpt: Lightning's save_last only refreshes it when `best` improves
    latest = ModelCheckpoint(dirpath=run_dir, filename="last", enable_version_counter=False)
    callbacks = [
        best,
        latest,
        interrupt,
        FiniteLossGuard(run_dir),
        RNGState(),
        ValidationHistory(run_dir),
        *extra,
    ]
    if training.converge:
        callbacks.append(convergence())
    if kind == SQUEEZED:
        callbacks.append(CoderModel(run_dir, best))
    return callbacks


def _train(
    trainer: pl.Trainer, module, datamodule, resume: Path | None, interrupt: InterruptCheckpoint
) -> None:
    """Fit, from ``resume`` when it is a checkpoint; an interrupt ends in the one line that says how to
    continue, and a new run that failed before saving anything leaves no folder."""
    run_dir = interrupt.run_dir
    os.environ[RUN_VERSION_ENV] = str(trainer.logger.version)  # inherited by DDP worker processes
    ckpt_path = None if resume is None or resume.is_dir() else resume
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        if trainer.is_global_zero:  # an earlier interruption's partial epoch is done again by now
            (run_dir / "interrupted.ckpt").unlink(missing_ok=True)
    except (KeyboardInterrupt, SystemExit):  # Lightning exits on Ctrl-C; SIGTERM arrives as SystemExit
        if interrupt.interrupted_epoch is None:
            raise
        raise _interrupted(run_dir, interrupt.interrupted_epoch) from None
    except BaseException:
        # a new run that failed before saving anything leaves no folder: the retry keeps its number
        if resume is None and trainer.is_global_zero and not any(run_dir.glob("*.ckpt")):
            shutil.rmtree(run_dir, ignore_errors=True)
            if run_dir.parent.is_dir() and not any(run_dir.parent.iterdir()):
                run_dir.parent.rmdir()  # the experiment's folder, made for this run
        raise
    finally:
        os.environ.pop(RUN_VERSION_ENV, None)


CONVERGED_DELTA = 1e-3  # validation cross-entropy: smaller improvements do not count
CONVERGED_PATIENCE = 10  # epochs without an improvement (a small validation split is noisy: 5 stopped early)


def convergence() -> EarlyStopping:
    """The rule of ``--converge``: stop once the validation loss has not improved by
    ``CONVERGED_DELTA`` for ``CONVERGED_PATIENCE`` epochs (``run_dirs.converged`` reads it back)."""
    return EarlyStopping("val/loss", min_delta=CONVERGED_DELTA, patience=CONVERGED_PATIENCE, mode="min")


def parameter_summary(module: SegmentationModule) -> str:
    """One line: what trains (by part) and what stays frozen."""
    parts = {"head": module.backbone.head}
    if isinstance(module, SqueezedSegmentationModule):
        parts["bottleneck"] = module.bottleneck
    trained = ", ".join(f"{name} {_count(part.parameters())}" for name, part in parts.items())
    frozen = _count(module.backbone.encoder.parameters())
    backbone = module.hparams.backbone
    return f"training: {trained} parameters; frozen: {backbone}'s {frozen} parameters, in eval mode"


def _count(parameters) -> str:
    total = sum(p.numel() for p in parameters)
    return f"{total / 1e6:.1f} M" if total >= 1e6 else f"{total / 1e3:.1f} K" if total >= 1e3 else str(total)


def _cache_dir(training: TrainingConfig) -> Path:
    return Path(training.cache_dir or Path(training.output_dir) / ".feature_cache")


def trained_cache_dir(checkpoint: str | Path) -> Path | None:
    """The feature cache folder the run of ``checkpoint`` trained from, where it still exists and this
    user can add an entry to it: the ``--cache_dir`` its ``config.json`` records (absolute), else the
    one beside its run folders (``<output_dir>/<name>/version_<n>/``); None for a checkpoint elsewhere,
    whose comparison computes features live."""
    run_dir = Path(checkpoint).resolve().parent
    try:
        recorded = json.loads((run_dir / "config.json").read_text())["training"]["cache_dir"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not a run folder (an exported checkpoint, a copy of the file alone)
    if recorded is None and len(run_dir.parents) < 2:
        return None
    folder = Path(recorded) if recorded else run_dir.parents[1] / ".feature_cache"  # runs before it was kept
    return folder if folder.is_dir() and os.access(folder, os.W_OK) else None


def wants_cache(training: TrainingConfig) -> bool:
    """Whether runs of these settings train (and a sweep scores) from the feature cache."""
    if training.cache_features != "auto":
        return training.cache_features == "on"
    return training.epochs > 1 or _cache_dir(training).is_dir()


def build_feature_cache(
    model: ModelConfig,
    data: DataConfig,
    optimizer: OptimizerConfig,
    training: TrainingConfig,
    runtime: RuntimeConfig,
    splits: tuple[str, ...],
) -> None:
    """Build the feature cache entries of ``splits`` for these settings, where ``fit`` reads a cache:
    a sweep's first job, so the jobs that train and score all read one cache instead of each
    computing features."""
    if not wants_cache(training):
        return
    datamodule = datamodule_for(data, model, training.seed)
    datamodule.prepare_data()
    datamodule.setup()
    module = BaselineSegmentationModule(_resolved(model, runtime), optimizer, classes=datamodule.classes)
    serve_cached_features(datamodule, module.backbone, training, runtime, splits)


def _resolved(model: ModelConfig, runtime: RuntimeConfig) -> ModelConfig:
    """``model`` with its feature precision resolved for the device this run uses: checkpoints and
    cache entries record what the machine ran, never 'auto'."""
    return replace(model, feature_precision=precision.resolve(model.feature_precision, pick_device(runtime)))


def _cluster_plugins() -> list:
    """Under SLURM, Lightning's own requeue (on SIGUSR1) stays off: exactly one layer requeues a job,
    the sweep's launcher (submitit), and a requeued run resumes from its last completed epoch."""
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def serve_cached_features(
    datamodule: SegmentationDataModule,
    backbone,
    training: TrainingConfig,
    runtime: RuntimeConfig,
    splits: tuple[str, ...],
) -> None:
    """Train, validate and score ``splits`` on ``backbone``'s cached features (see ``feature_cache``),
    where these settings use the cache; entries that are missing are built now."""
    if not wants_cache(training):
        return
    cache_dir = prepare_output_dir(_cache_dir(training), "--cache_dir")
    for name in splits:
        split = cached_split(
            datamodule.files[name], backbone, cache_dir, datamodule.hparams.batch_size, pick_device(runtime)
        )
        datamodule.serve(name, split)


def _recorded_data_path(run_dir: Path) -> str | None:
    """The data folder a run directory's config.json records (None: it has none)."""
    config = run_dir / "config.json"
    return json.loads(config.read_text())["data"].get("trained_data_path") if config.is_file() else None


def _resumed_parts(
    checkpoint: dict, path: Path, data: DataConfig, training: TrainingConfig
) -> tuple[SegmentationModule, SegmentationDataModule]:
    """Model and data exactly as the checkpoint's run had them; only paths and workers may change."""
    trained_epochs = completed_epochs(checkpoint)
    if trained_epochs >= training.epochs:
        raise UserError(f"{path} already holds {trained_epochs} epochs; pass --epochs above that to continue")
    if training.converge and converged(checkpoint):
        raise UserError(f"{path} converged after {trained_epochs} epochs; there is nothing to continue")
    stored = checkpoint["datamodule_hyper_parameters"]
    data = recorded_folder(data, stored.get("trained_data_path"), "the run")
    data = replace(from_values(DataConfig, stored), data_path=data.data_path, num_workers=data.num_workers)
    datamodule = dataset_class(stored.get("dataset", LEGACY_DATASET))(
        data, stored["image_size"], stored["mask_mode"], stored["seed"], stored["mean"], stored["std"]
    )
    datamodule.prepare_data()
    datamodule.setup()
    pl.seed_everything(stored["seed"], workers=True)
    return instantiate(checkpoint, path), datamodule


def _write_run_files(
    run_dir: Path, module, datamodule, training: TrainingConfig, runtime: RuntimeConfig
) -> None:
    config = {
        "command": sys.argv,
        "run_dir": str(run_dir),
        "model": dict(module.hparams),
        "data": dict(datamodule.hparams),
        # the cache folder absolute: visualize finds it from any working directory
        "training": asdict(replace(training, cache_dir=str(_cache_dir(training).resolve()))),
        "runtime": asdict(runtime),
        "versions": package_versions(),
    }
    write_json(run_dir / "config.json", config)
    write_json(run_dir / "split.json", datamodule.split_record())


def _interrupted(run_dir: Path, epoch: int) -> Interrupted:
    """The one line that says what was kept and the exact command that continues the run."""
    command = _as_typed(_without_resume(sys.argv))
    partial = f"the partial epoch is in {run_dir / 'interrupted.ckpt'}"
    completed = completed_checkpoint(run_dir)
    if completed is None:
        return Interrupted(
            f"training interrupted during epoch {epoch}, before any epoch completed; {partial}; "
            f"restart in the same run directory with: {command} --resume {run_dir}"
        )
    saved = epoch_of(completed)[0]
    return Interrupted(
        f"training interrupted during epoch {epoch}; epochs up to {saved} are saved in {completed}; "
        f"{partial}; continue with: {command} --resume {completed}"
    )


def _as_typed(argv: list[str]) -> str:
    """A command line as the user types it: the entry point and ``python -m`` by the program's name."""
    program = [PROGRAM] if Path(argv[0]).name in (PROGRAM, "__main__.py") else ["python", argv[0]]
    return shlex.join([*program, *argv[1:]])


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
