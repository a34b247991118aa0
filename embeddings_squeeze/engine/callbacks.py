"""Trainer plumbing: atomic checkpoint files, interrupts, NaN guard, RNG state, the code histogram."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from embeddings_squeeze.engine.checkpoint import read_checkpoint
from embeddings_squeeze.engine.evaluation import evaluate_rate, prepare_coder
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.utils.files import atomic_path, write_json


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file, then rename it into place.

    A process killed mid-write leaves the previous file whole; loading is always weights-only.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with atomic_path(path) as temporary:
            super().save_checkpoint(checkpoint, temporary, storage_options)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


class InterruptCheckpoint(Callback):
    """On SIGINT/SIGTERM, save the partial epoch as ``interrupted.ckpt`` and remember it.

    Resuming continues from ``last.ckpt`` (the last completed epoch), so a resumed run repeats
    the interrupted epoch exactly and ends with the same result as an uninterrupted one.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.interrupted_epoch: int | None = None

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            self.interrupted_epoch = trainer.current_epoch
            trainer.save_checkpoint(self.run_dir / "interrupted.ckpt", weights_only=False)


class FiniteLossGuard(Callback):
    """Stop as soon as the training loss is NaN or infinite; earlier checkpoints stay untouched."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not math.isfinite(float(loss)):
            last = self.run_dir / "last.ckpt"
            kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was saved yet"
            raise UserError(
                f"the training loss became {float(loss)} at epoch {trainer.current_epoch}, step "
                f"{trainer.global_step}; training stopped and {kept}; try a lower --lr"
            )


class RNGState(Callback):
    """Carry torch's random state in checkpoints, so a resumed run draws what the original would."""

    def state_dict(self) -> dict:
        return {"torch": torch.get_rng_state()}

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch"])


class ValidationHistory(Callback):
    """Each epoch's validation loss and mIoU in ``history.json`` (resumed runs continue it): the curve
    a run trained to convergence shows flattening."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "history.json"
        self.epochs: list[dict] = []

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        self.epochs.append({"epoch": trainer.current_epoch, "val_loss": float(metrics["val/loss"]),
                            "val_miou": float(metrics["val/miou"])})  # fmt: skip
        write_json(self.path, {"epochs": self.epochs})

    def state_dict(self) -> dict:
        return {"epochs": list(self.epochs)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.epochs = list(state_dict["epochs"])


class CoderModel(Callback):
    """After training, build the entropy coder's model into every checkpoint that codes payloads.

    The quantizer's ``prepare_coder`` (VQ: the training split's code histogram; the entropy
    bottleneck: its exact quantiles and coding tables): ``last.ckpt`` and the best checkpoint both
    get the one of their own weights, and the validation rate table goes to ``rate.json``.
    """

    def __init__(self, run_dir: Path, best: Callback):
        self.run_dir = run_dir
        self.best = best

    def on_fit_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        datamodule, device = trainer.datamodule, module.device
        last = self.run_dir / "last.ckpt"
        _stop_live_bar(trainer)
        prepare_coder(module, datamodule.dataloader("train"), device)
        trainer.save_checkpoint(last, weights_only=False)  # the full state: it stays resumable
        if not trainer.is_global_zero:
            return
        rate = evaluate_rate(module, datamodule, "val", device)
        write_json(self.run_dir / "rate.json", {"split": "val", **rate})
        best = Path(self.best.best_model_path) if self.best.best_model_path else None
        if best is not None and best != last:
            checkpoint = read_checkpoint(best)
            module.load_state_dict(checkpoint["state_dict"], strict=False)  # frozen weights are not in it
            prepare_coder(module, datamodule.dataloader("train"), device)
            bottleneck = module.bottleneck.state_dict()
            checkpoint["state_dict"].update({f"bottleneck.{k}": v.cpu() for k, v in bottleneck.items()})
            AtomicCheckpointIO().save_checkpoint(checkpoint, best)


def _stop_live_bar(trainer: pl.Trainer) -> None:
    """Stop Lightning's rich progress bar (its last frame stays) before the coder's passes draw bars of
    their own: output while it is live goes through its display, a new line for every redraw."""
    bar = trainer.progress_bar_callback
    if isinstance(bar, RichProgressBar) and bar.progress is not None:
        bar.progress.stop()
