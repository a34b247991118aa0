"""Run directories: versions, what --resume points at, and writable checks."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from embeddings_squeeze.engine.checkpoint import read_checkpoint
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models import SQUEEZED
from embeddings_squeeze.models.segmentation_module import CHECKPOINT_KEY

log = logging.getLogger(__name__)
RUN_VERSION_ENV = "EMBEDDINGS_SQUEEZE_RUN_VERSION"  # rank 0's version, inherited by DDP workers


def prepare_output_dir(path: str | Path, flag: str = "--output_dir") -> Path:
    """Create ``path`` if needed and check that files can be written there; one clear error if not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write to {flag} {path} ({error.strerror}); choose another folder") from None
    return path


@contextmanager
def output_folder(path: str | Path, flag: str = "--output_dir") -> Iterator[Path]:
    """The folder a command writes into (see ``prepare_output_dir``); the folders it made for it (the
    folder and any missing parents) are removed again when the command fails before writing there."""
    made = [folder for folder in (Path(path), *Path(path).parents) if not folder.exists()]
    folder = prepare_output_dir(path, flag)
    try:
        yield folder
    except BaseException:
        for empty in made:  # the deepest first; one that holds anything stays
            if empty.is_dir() and not any(empty.iterdir()):
                empty.rmdir()
        raise


def one_output_each(inputs: list[Path], folder: str | Path, suffix: str, overwrite: bool) -> list[Path]:
    """``<folder>/<input's stem><suffix>`` for each input: refused when two inputs would share one,
    or (unless ``overwrite``) when one is already there."""
    targets = [Path(folder) / f"{path.stem}{suffix}" for path in inputs]
    if len(set(targets)) < len(targets):
        twice = next(target for target in targets if targets.count(target) > 1)
        raise UserError(f"two inputs would both write {twice}; give them different names")
    if not overwrite:
        refuse_overwrite(targets, f"{suffix} files")
    return targets


def refuse_overwrite(paths: list[Path], what: str) -> None:
    """Stop before replacing files a user already has; ``--overwrite`` lets a command replace them."""
    existing = [path for path in paths if path.exists()]
    if existing:
        raise UserError(
            f"{existing[0]} already exists ({len(existing)} of the {what} would be replaced); "
            "pass --overwrite to replace them, or choose another output folder"
        )


def version_of(run_dir: Path) -> int:
    prefix, _, number = run_dir.name.partition("_")
    if prefix != "version" or not number.isdigit():
        raise UserError(f"--resume needs a <run>/version_N/ directory or a checkpoint in one, got {run_dir}")
    return int(number)


def epoch_of(path: Path) -> tuple[int, int]:
    """The (epoch, global step) a checkpoint was saved at."""
    checkpoint = read_checkpoint(path)
    return checkpoint["epoch"], checkpoint["global_step"]


def completed_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint of ``run_dir`` that holds the most completed epochs, whichever file it is.

    ``best-epochNN.ckpt`` and ``last.ckpt`` are written one after the other at the end of an
    epoch, so an interrupt between the two leaves the newer epoch in the best file only.
    """
    files = [
        path for path in [run_dir / "last.ckpt", *sorted(run_dir.glob("best-epoch*.ckpt"))] if path.is_file()
    ]
    return max(files, key=epoch_of, default=None)


def completed_epochs(checkpoint: dict) -> int:
    """Epochs whose training finished, as Lightning's fit loop counts them (``epoch`` is the index of
    the epoch a checkpoint was saved in, but the count once fitting has ended)."""
    return checkpoint["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"]


def converged(checkpoint: dict) -> bool:
    """Whether the run stopped because its validation loss stopped improving (``--converge``)."""
    return any(
        name.startswith("EarlyStopping") and state["wait_count"] >= state["patience"]
        for name, state in checkpoint.get("callbacks", {}).items()
    )


def unconverged(checkpoint: dict) -> bool:
    """Whether a run trained with ``--converge`` reached its epochs before its validation loss flattened."""
    rule = any(name.startswith("EarlyStopping") for name in checkpoint.get("callbacks", {}))
    return rule and not converged(checkpoint)


def trained_enough(checkpoint: dict, epochs: int) -> bool:
    """Whether a run has done its training: ``epochs`` epochs, or converged before them."""
    return completed_epochs(checkpoint) >= epochs or converged(checkpoint)


def run_result(last: Path) -> dict:
    """What a finished run achieved: epochs trained, the best validation mIoU and its checkpoint."""
    checkpoint = read_checkpoint(last)
    best = next(state for name, state in checkpoint["callbacks"].items() if "'monitor': 'val/miou'" in name)
    return {
        "epochs": completed_epochs(checkpoint),
        "best_miou": float(best["best_model_score"]),
        "best_checkpoint": Path(best["best_model_path"]),
    }


def _runs(output_dir: str, run_name: str) -> list[Path]:
    """The version directories of ``run_name``, newest first."""
    return sorted((Path(output_dir) / run_name).glob("version_*"), key=version_of, reverse=True)


def newest_run(output_dir: str, run_name: str) -> Path | None:
    """The newest run directory of ``run_name`` that has a ``last.ckpt``."""
    return next((run for run in _runs(output_dir, run_name) if (run / "last.ckpt").is_file()), None)


def _matches(checkpoint: dict, settings: dict) -> bool:
    """Whether a checkpoint was trained with ``settings`` (hyperparameters; None values not compared)."""
    stored = checkpoint["hyper_parameters"]
    return all(value is None or stored.get(key) == value for key, value in settings.items())


def finished_run(output_dir: str, run_name: str, epochs: int, settings: dict) -> Path | None:
    """The ``last.ckpt`` of the newest run of ``run_name`` that trained ``epochs`` epochs (or converged
    before) with ``settings`` and went through the end of fitting (squeezed runs: the coder's model built,
    ``rate.json`` written). Unreadable checkpoints count as unfinished."""
    for run_dir in _runs(output_dir, run_name):
        last = run_dir / "last.ckpt"
        try:
            checkpoint = read_checkpoint(last) if last.is_file() else None
        except UserError as error:
            log.warning("not reusing %s: %s", last, error)
            continue
        if checkpoint is None or not trained_enough(checkpoint, epochs) or not _matches(checkpoint, settings):
            continue
        squeezed = checkpoint[CHECKPOINT_KEY]["kind"] == SQUEEZED
        if not squeezed or (run_dir / "rate.json").is_file():
            return last
    return None


def unfinished_run(output_dir: str, run_name: str, epochs: int, settings: dict) -> Path | None:
    """The newest run directory of ``run_name`` trained with ``settings`` that stopped on the way
    (requeued, killed) after completing some but not all of its ``epochs``: resume from there."""
    for run_dir in _runs(output_dir, run_name):
        try:
            completed = completed_checkpoint(run_dir)
            checkpoint = read_checkpoint(completed) if completed is not None else None
            if (
                checkpoint is not None
                and not trained_enough(checkpoint, epochs)
                and _matches(checkpoint, settings)
            ):
                return run_dir
        except UserError as error:
            log.warning("not resuming %s: %s", run_dir, error)
    return None


def resume_target(resume: str | None, output_dir: str, run_name: str) -> Path | None:
    """What ``--resume`` points at: a checkpoint file, or a run directory to restart in.

    'latest' means the newest version directory of this run; a directory resumes from its newest
    completed epoch (see ``completed_checkpoint``), or restarts in place when none completed.
    """
    if resume is None:
        return None
    if resume == "latest":
        runs = [path for path in (Path(output_dir) / run_name).glob("version_*") if path.is_dir()]
        if not runs:
            raise UserError(
                f"--resume found no run under {Path(output_dir) / run_name}; "
                "check --output_dir and --experiment_name, or pass --resume PATH"
            )
        target = max(runs, key=version_of)
    else:
        target = Path(resume)
    if target.is_dir():
        version_of(target)  # refuses folders that are not version_N run directories
        return completed_checkpoint(target) or target
    return target


def run_location(output_dir: str, run_name: str, resume: Path | None) -> tuple[Path, str, int | None]:
    """(save_dir, name, version) for the logger: the resumed run's, or a new version.

    DDP worker processes reuse the version rank 0 chose.
    """
    if resume is not None:
        run_dir = resume.resolve() if resume.is_dir() else resume.resolve().parent
        return run_dir.parent.parent, run_dir.parent.name, version_of(run_dir)
    version = os.environ.get(RUN_VERSION_ENV) if os.environ.get("LOCAL_RANK", "0") != "0" else None
    return Path(output_dir), run_name, None if version is None else int(version)
