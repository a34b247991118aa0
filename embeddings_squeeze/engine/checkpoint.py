"""Rebuild a trained model from its checkpoint file alone, without executing code from it."""

from __future__ import annotations

import json
import logging
import pickle
import zipfile
from pathlib import Path

import torch

from embeddings_squeeze.data.registry import LEGACY_DATASET
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models import MODULES, SegmentationModule
from embeddings_squeeze.models.backbones.base import frozen_fingerprint
from embeddings_squeeze.models.segmentation_module import CHECKPOINT_FORMAT, CHECKPOINT_KEY, FROZEN_PREFIX

log = logging.getLogger(__name__)
KIND_NAMES = {"baseline": "a baseline (train-baseline)", "squeezed": "a squeezed (squeeze)"}


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's contents, loaded with ``weights_only=True`` (plain data, no code)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}; {_runs_near(path)}")
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives; anything else is foreign or cut
        raise UserError(f"{path} is not a readable checkpoint (truncated, corrupt or another kind of file)")
    try:
        # memory-mapped: reading the metadata of a large checkpoint does not read its weights
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"{path} was refused: loading it would run code stored in the file (it holds objects other "
            "than tensors and plain values); use a checkpoint written by embeddings_squeeze training"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile):
        raise UserError(
            f"{path} is not a readable checkpoint (truncated or corrupt); copy it again or retrain"
        ) from None
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint:
        raise UserError(
            f"{path} is not an embeddings_squeeze checkpoint; pass a last.ckpt written by training"
        )
    info = checkpoint[CHECKPOINT_KEY]
    if info.get("format_version") != CHECKPOINT_FORMAT or info.get("kind") not in MODULES:
        raise UserError(
            f"{path} has checkpoint format {info.get('format_version')!r} (kind {info.get('kind')!r}); "
            f"this version reads format {CHECKPOINT_FORMAT}: retrain or use the matching release"
        )
    return checkpoint


def _runs_near(path: Path) -> str:
    """The finished runs beside where a missing checkpoint was looked for, as the user would pass them."""
    for folder in (path.parent.parent, path.parent.parent.parent):  # its experiment, or its output_dir
        if _finished_runs_in(folder):
            return _runs_listed(folder)
    return "training saves <output_dir>/<experiment_name>/version_N/last.ckpt"


def _finished_runs_in(folder: Path) -> list[Path]:
    """The last checkpoints of the runs in ``folder``, an experiment's or an output folder."""
    return sorted(folder.glob("version_*/last.ckpt")) + sorted(folder.glob("*/version_*/last.ckpt"))


def _runs_listed(folder: Path) -> str:
    found = _finished_runs_in(folder)
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return f"checkpoints found there: {', '.join(str(p) for p in found[:5])}{more}"


def checkpoint_file(path: str | Path, made_by: str) -> Path:
    """The checkpoint a user means by ``path``: the file, or a run folder's ``last.ckpt`` (said in a
    line). A missing one is refused in one line with the runs found near it or, where none is, the
    command that trains it (``made_by``)."""
    path = Path(path)
    if path.is_dir():
        if (path / "last.ckpt").is_file():
            log.info("%s is a run folder: using its last.ckpt", path)
            return path / "last.ckpt"
        runs = _runs_listed(path) if _finished_runs_in(path) else "no run finished in it"
        raise UserError(f"{path} is a folder without a last.ckpt; pass a checkpoint file ({runs})")
    if not path.is_file() and not _finished_runs_in(path.parent.parent):  # no run of this experiment
        raise UserError(
            f"checkpoint not found: {path}; nothing has been trained there yet: train it first with "
            f"'{made_by}' (it saves <output_dir>/<experiment_name>/version_N/last.ckpt)"
        )
    return path


def expect_kind(checkpoint: dict, kind: str, flag: str, path: str | Path) -> None:
    """Refuse a checkpoint of the wrong kind; ``flag`` names the option it came from."""
    found = checkpoint[CHECKPOINT_KEY]["kind"]
    if found != kind:
        raise UserError(f"{flag} {path} holds {KIND_NAMES[found]} model; {flag} needs {KIND_NAMES[kind]} one")


def instantiate(checkpoint: dict, path: str | Path) -> SegmentationModule:
    """The untrained model a checkpoint describes, on the frozen weights it was trained with.

    Frozen weights travel as a description (torchvision's name, the seed of a random backbone, or
    a file's path) plus a fingerprint: a rebuilt backbone that does not match it is refused.
    Exported checkpoints carry the weights themselves; ``build_module`` loads and checks them.
    """
    info = checkpoint[CHECKPOINT_KEY]
    hparams = {**checkpoint["hyper_parameters"], **{k: v for k, v in info.items() if k.startswith("class_")}}
    weights = hparams["weights"]
    if info["frozen_weights_stored"]:
        hparams["weights"] = "none"  # the stored frozen weights replace the random init on load
    elif weights not in ("default", "none") and not Path(weights).is_file():
        raise UserError(
            f"{path} was trained on the frozen weights file {weights}, which is missing; put it back, "
            "or use a checkpoint made by 'embeddings-squeeze export' where that file exists"
        )
    try:
        module = MODULES[info["kind"]].from_hparams(hparams)
    except (TypeError, KeyError):
        raise UserError(f"{path} has settings this version does not know; use the matching release") from None
    module.stores_frozen_weights = info["frozen_weights_stored"]  # a resumed export stays portable
    if not module.stores_frozen_weights:
        verify_frozen_weights(module, path)
    return module


def verify_frozen_weights(module: SegmentationModule, path: str | Path) -> None:
    """Refuse a model whose frozen encoder is not the one its checkpoint was trained with."""
    expected = module.hparams.weights_id
    if (
        not expected.startswith("sha256:")
        or expected == f"sha256:{frozen_fingerprint(module.backbone.encoder)}"
    ):
        return  # named torchvision weights identify themselves
    weights = module.hparams.weights
    if weights == "none":
        raise UserError(
            f"{path}: the random backbone rebuilt from seed {module.hparams.backbone_seed} differs from "
            "the one it was trained with (another torch version?); use the versions in the run's "
            "config.json, or a checkpoint made by 'embeddings-squeeze export'"
        )
    raise UserError(
        f"{path}: its frozen weights differ from the ones it was trained with (was {weights} changed?); "
        "restore that file, or use a checkpoint made by 'embeddings-squeeze export'"
    )


def build_module(checkpoint: dict, path: str | Path) -> SegmentationModule:
    """Rebuild the model a checkpoint describes and load its weights; returns it in eval mode."""
    info = checkpoint[CHECKPOINT_KEY]
    module = instantiate(checkpoint, path)
    result = module.load_state_dict(checkpoint["state_dict"], strict=False)
    stored = info["frozen_weights_stored"]
    missing = [k for k in result.missing_keys if stored or not k.startswith(FROZEN_PREFIX)]
    if missing or result.unexpected_keys:
        first = (missing or result.unexpected_keys)[0]
        raise UserError(
            f"{path} does not match the model it describes ({len(missing)} missing, "
            f"{len(result.unexpected_keys)} unexpected tensors, e.g. {first}); "
            "it may come from another version"
        )
    if stored:
        verify_frozen_weights(module, path)
    module.on_load_checkpoint(checkpoint)
    return module.eval()


def load_module(
    path: str | Path, kind: str, flag: str = "--checkpoint", dataset: str | None = None
) -> SegmentationModule:
    """Read, check (kind, and ``dataset`` unless None) and rebuild in one call."""
    checkpoint = read_checkpoint(path)
    expect_kind(checkpoint, kind, flag, path)
    expect_dataset(checkpoint, dataset, path)
    return build_module(checkpoint, path)


def trained_dataset(checkpoint: dict) -> str:
    """The dataset a checkpoint was trained on (checkpoints from before VOC and folders: pet)."""
    return checkpoint["hyper_parameters"].get("dataset", LEGACY_DATASET)


def expect_dataset(checkpoint: dict, dataset: str | None, path: str | Path) -> None:
    """Refuse a checkpoint trained on another dataset than ``--dataset`` (None: any)."""
    trained = trained_dataset(checkpoint)
    if dataset is not None and dataset != trained:
        raise UserError(
            f"{path} was trained on --dataset {trained}, not {dataset}; pass --dataset {trained} with its "
            "data, or a checkpoint trained on this dataset"
        )


def expect_classes(module: SegmentationModule, classes: tuple[str, ...], where: str | Path) -> None:
    """Refuse data whose classes are not the ones ``module`` was trained for, saying which differ."""
    if tuple(classes) == tuple(module.class_names):
        return
    trained, given = list(module.class_names), list(classes)
    differing = next(
        (
            f"label {i} is {a!r} there, {b!r} in the checkpoint"
            for i, (a, b) in enumerate(zip(given, trained))
            if a != b
        ),
        f"{len(given)} classes there, {len(trained)} in the checkpoint",
    )
    raise UserError(
        f"the data in {where} does not have the classes the checkpoints were trained on ({differing}); "
        "pass the --data_path of the data they were trained on"
    )


SPLIT_SETTINGS = ("split_seed", "val_fraction", "subset_size")  # with the same files, the same split
NOTED_SETTINGS = ("seed", "batch_size")  # training settings that may differ; a comparison notes them


def training_differences(
    first: dict, second: dict, paths: tuple[Path, Path], names: tuple[str, str]
) -> tuple[list, list]:
    """(what makes the two runs' split differ, what else differs and is only noted), each item as
    'key (baseline: a, VQ: b)' with ``names``. The split is the same when the split settings are and
    the image ids of every split in the runs' split.json agree; without both split.json files the data
    folders recorded at training decide. ``paths``: the checkpoints. Keys an older checkpoint lacks are
    not compared."""
    first, second = first["datamodule_hyper_parameters"], second["datamodule_hyper_parameters"]

    def differing(keys):
        return [f"{key} ({names[0]}: {first[key]}, {names[1]}: {second[key]})" for key in keys
                if key in first and key in second and first[key] != second[key]]  # fmt: skip

    data, noted = differing(SPLIT_SETTINGS), differing(NOTED_SETTINGS)
    folders = differing(("trained_data_path",))
    splits = [path.parent / "split.json" for path in paths]
    if all(split.is_file() for split in splits):
        ids = [{k: v for k, v in json.loads(split.read_text()).items() if k in ("train", "val", "test")}
               for split in splits]  # fmt: skip
        data += [] if ids[0] == ids[1] else [f"the image ids in their split.json ({names[0]} and {names[1]})"]
        return data, noted + folders  # the same images, wherever their copy was
    return data + folders, noted


def check_pair(model: str, dataset: str | None, baseline: dict, squeezed: dict) -> None:
    """Refuse checkpoint pairs whose comparison would be meaningless."""
    baseline_info, squeezed_info = baseline["embeddings_squeeze"], squeezed["embeddings_squeeze"]
    if baseline_info["backbone"] != squeezed_info["backbone"]:
        raise UserError(
            f"the checkpoints use different backbones (baseline: {baseline_info['backbone']}, "
            f"VQ: {squeezed_info['backbone']}); train both with the same --model"
        )
    if model is not None and model != squeezed_info["backbone"]:
        raise UserError(
            f"--model {model} does not match the checkpoints, which use {squeezed_info['backbone']}; "
            f"pass --model {squeezed_info['backbone']}"
        )
    if trained_dataset(baseline) != trained_dataset(squeezed):
        raise UserError(
            f"the checkpoints were trained on different datasets (baseline: {trained_dataset(baseline)}, "
            f"VQ: {trained_dataset(squeezed)}); train both with the same --dataset"
        )
    expect_dataset(squeezed, dataset, "the VQ checkpoint")
    for key in ("mask_mode", "image_size", "feature_layer"):
        if baseline["hyper_parameters"].get(key) != squeezed["hyper_parameters"].get(key):
            raise UserError(
                f"the checkpoints differ in {key} (baseline: {baseline['hyper_parameters'].get(key)}, "
                f"VQ: {squeezed['hyper_parameters'].get(key)}); train both with the same --{key}"
            )
    if baseline_info["class_names"] != squeezed_info["class_names"]:
        raise UserError(
            f"the checkpoints were trained on different classes (baseline: {baseline_info['class_names']}, "
            f"VQ: {squeezed_info['class_names']}); train both on the same data"
        )
    if baseline_info["weights_id"] != squeezed_info["weights_id"]:
        log.warning(
            "warning: the two checkpoints were trained on different frozen weights (%s vs %s); "
            "the comparison mixes backbone and bottleneck effects",
            baseline_info["weights_id"],
            squeezed_info["weights_id"],
        )
