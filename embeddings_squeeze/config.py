"""Every setting, defined once: typed dataclasses whose defaults the command line and checkpoints share.

Each field carries its command-line flag (the specification's snake_case names) and help; the
argparse groups of every command are derived from these classes (``add_arguments``), and parsed
flags become config objects again (``from_namespace``). Models store their configs in checkpoints
as plain values and are rebuilt from them, so no command re-types a flag or a default.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from typing import Any

JPEG_QUALITIES = (5, 10, 20, 40, 60, 80, 95)  # the sweep's image-codec references, by default
BASELINE_EPOCHS = 50  # the most a baseline trains in a sweep or the demo: it stops once converged


def _number(text: str, kind: type, wanted: str, accept) -> int | float:
    """``text`` as a ``kind`` that ``accept`` takes, or the parser's one-line complaint saying ``wanted``."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, "a positive integer", lambda value: value > 0)


def positive_float(text: str) -> float:
    # `value > 0` is False for nan; inf is no setting anyone means
    return _number(text, float, "a positive number", lambda value: value > 0 and value != float("inf"))


def non_negative_int(text: str) -> int:
    return _number(text, int, "zero or more", lambda value: value >= 0)


def evaluation_split(text: str) -> str:
    if text == "train":
        raise argparse.ArgumentTypeError(
            "the models were fitted on train, so scores there say nothing about new images; use test or val"
        )
    if text not in ("test", "val"):
        raise argparse.ArgumentTypeError(f"choose test or val, not {text!r}")
    return text


def devices_value(text: str) -> int | str:
    """Lightning accepts a count, 'auto', -1, or a list such as '0,1'."""
    return int(text) if text.lstrip("-").isdigit() else text


# the flag naming each model of a comparison by its role, as the specification spells it; the summary
# records the checkpoints under these names without the dashes
CHECKPOINT_FLAGS = {
    "baseline": "--baseline_checkpoint",
    "squeezed": "--vq_checkpoint",
    "reference": "--reference_checkpoint",
}


def setting(
    default: Any,
    help: str,
    flag: str | None = None,
    show_default: bool = True,
    sweep: dict | None = None,
    **argparse_options,
) -> Any:
    """A dataclass field with its command-line flag (``--<name>`` unless given) and help.

    ``show_default`` False: the help says what an unset value means, so '(default: ...)' is not
    added. ``sweep``: the field is a sweep axis; the sweep takes a list under ``sweep['flag']``
    (default: the field's own flag) with ``sweep['default']`` and ``sweep['help']``.
    """
    metadata = {"help": help, "flag": flag, "show_default": show_default, "sweep": sweep}
    return field(default=default, metadata={**metadata, "argparse": argparse_options})


@dataclass(frozen=True)
class DataConfig:
    """Which images, how they are split and batched."""

    data_path: str | None = setting(  # None: unset, a command decides (./data, or a run's recorded one)
        "./data",
        "folder holding the dataset: oxford-iiit-pet/ (pet), VOCdevkit/ (voc), or images/, masks/ and "
        "classes.json (folder)",
    )
    subset_size: int | None = setting(
        None,
        "use at most this many images per split, a seeded random sample (quick tests; default: all)",
        type=positive_int,
    )
    val_fraction: float = setting(
        0.1, "share of trainval held out for validation by a seeded split", type=float
    )
    split_seed: int | None = setting(  # None (visualize): the checkpoints' split seed
        42,
        "seed of the train/val split and of --subset_size samples, separate from --seed so runs with "
        "different seeds share one split",
        type=int,
    )
    batch_size: int = setting(4, "batch size", type=positive_int)
    num_workers: int = setting(0, "DataLoader workers", type=non_negative_int)


@dataclass(frozen=True)
class ModelConfig:
    """The frozen backbone and the labels it is trained for: stored in every checkpoint."""

    backbone: str = setting(
        "vit",
        "backbone: vit (ViT-B/32), deeplab (DeepLabV3-ResNet50), timm:<name> (any timm model, e.g. "
        "timm:resnet18, timm:vit_small_patch14_dinov2), or a registered one",
        flag="--model",
    )
    feature_layer: int | None = setting(
        None, "timm CNNs: the features_only stage to use (default: the last)", type=non_negative_int
    )
    weights: str = setting(
        "default",
        "frozen backbone weights: 'default' (torchvision's or timm's pretrained), 'none' (random) or a "
        "state-dict file",
    )
    backbone_seed: int = setting(
        0,
        "seed that draws the random frozen backbone of --weights none; runs with the same seed share one "
        "backbone, and checkpoints store the seed, not the weights",
        type=int,
    )
    image_size: int = setting(224, "square input side", type=positive_int)
    feature_precision: str = setting(
        "auto",
        "arithmetic of the frozen backbone's forward pass: auto (bfloat16 on CUDA devices that support "
        "it and on CPUs with bf16 matrix units, AMX or AVX512-BF16; float32 elsewhere), float32, "
        "bfloat16, float16; checkpoints store what auto chose, and the head, the quantizer and the "
        "metrics always run in float32",
        choices=("auto", "float32", "bfloat16", "float16"),
    )
    dataset: str = setting(
        "pet",
        "pet: Oxford-IIIT Pet; voc: Pascal VOC 2012; folder: your images/ and masks/ (see the README); or "
        "a registered one",
    )
    mask_mode: str | None = setting(
        None,
        "pet only: trimap (pet/background/border classes, the default) or binary (pet/background, border "
        "ignored)",
    )


@dataclass(frozen=True)
class QuantizerConfig:
    """The bottleneck between the frozen features and the head: what every type shares, and
    ``settings``, the chosen type's own (its class's ``Settings``, see ``models/quantizers/``)."""

    quantizer_type: str = setting("vq", "the bottleneck type")  # choices: the quantizer registry's
    num_vectors: int = setting(
        512,
        "codebook size K per level: each grid position costs log2(K) bits per level",
        type=positive_int,
        aliases=("--codebook_size",),
        sweep={"default": (16, 64, 256), "help": "codebook sizes K, one model each"},
    )
    bottleneck_dim: int = setting(64, "size of the vectors the quantizer sees", type=positive_int)
    vq_loss_weight: float = setting(
        1.0, "weight of the quantizer's own loss (commitment, entropy or rate) in the objective", type=float
    )
    settings: Any = None  # the type's own settings; None: its defaults


@dataclass(frozen=True)
class OptimizerConfig:
    """How the trainable parameters move: stored in every checkpoint."""

    lr: float = setting(1e-3, "Adam learning rate", type=positive_float)
    weight_decay: float = setting(0.0, "Adam weight decay", type=float)


@dataclass(frozen=True)
class TrainingConfig:
    """How long a model is fitted and where its run goes."""

    epochs: int = setting(10, "training epochs", type=positive_int)
    seed: int = setting(42, "seed for initialisation and shuffling (not the split)", type=int)
    experiment_name: str | None = setting(
        None,
        "run name; outputs go to <output_dir>/<experiment_name>[_baseline]/version_N (default: the model's "
        "name, and the quantizer's for squeeze)",
    )
    output_dir: str = setting("./outputs", "root of all runs")
    resume: str | None = setting(
        None,
        "continue a run up to --epochs: the newest run of this experiment, a run directory or a checkpoint",
        nargs="?",
        const="latest",
        metavar="PATH",
    )
    converge: bool = setting(
        False,
        "stop once the validation loss (cross-entropy) has not improved by 0.001 for 10 epochs: trained "
        "to convergence, --epochs at most; history.json in the run folder keeps the validation curve",
        action="store_true",
    )
    cache_features: str = setting(
        "auto",
        "reuse frozen-backbone features across epochs and runs; auto: on for runs of 2+ epochs or when "
        "the cache folder exists",
        choices=("auto", "on", "off"),
    )
    cache_dir: str | None = setting(None, "feature cache folder (default: <output_dir>/.feature_cache)")


@dataclass(frozen=True)
class ComparisonConfig:
    """What visualize.py compares and draws."""

    dataset_split: str = setting(
        "test", "which split to score: test or val", type=evaluation_split, metavar="{test,val}"
    )
    n_best: int = setting(5, "best results to show", type=non_negative_int)
    n_worst: int = setting(5, "worst results to show", type=non_negative_int)
    output_dir: str = setting("./visualizations", "where figures, scores and the summary go")
    rank_by: str = setting(
        "iou",
        "iou (or any of --metrics): by the VQ model's per-image value; delta (or delta_<metric>): by VQ "
        "minus baseline, worst = where VQ loses most",
    )
    metrics: tuple[str, ...] = setting(
        ("dice", "pixel_accuracy", "boundary_f"),
        "metrics beyond IoU, which is always on: dice, pixel_accuracy, boundary_f (boundaries found "
        "within 2 pixels), or a registered one; the flag alone: IoU only",
        nargs="*",
        metavar="METRIC",
    )
    atlas_codes: int = setting(16, "codes the code atlas shows, the most used first", type=positive_int)
    overwrite: bool = setting(
        False, "replace the figures and scores an earlier run left in --output_dir", action="store_true"
    )
    unpaired: bool = setting(
        False,
        "compare models trained on different data or splits anyway; every output then says they are "
        "not paired by training",
        action="store_true",
    )


@dataclass(frozen=True)
class LaunchConfig:
    """Where a sweep's jobs run (``engine/launchers.py``): one after the other in this process,
    as processes on this machine, or as SLURM jobs."""

    launcher: str = setting(
        "serial",
        "serial: every job in this process, one after the other; local: processes on this machine, "
        "--max_parallel at a time; slurm: SLURM jobs through submitit",
        choices=("serial", "local", "slurm"),
    )
    max_parallel: int = setting(2, "local and slurm: jobs running at once, at most", type=positive_int)
    gpus_per_job: int = setting(0, "slurm: GPUs per job", type=non_negative_int)
    cpus_per_job: int = setting(1, "slurm: CPUs per job", type=positive_int)
    mem_per_job: float | None = setting(
        None, "slurm: memory per job in GB (default: the partition's)", type=positive_float
    )
    time_limit: int = setting(60, "slurm: minutes per job; a job near its limit requeues", type=positive_int)
    partition: str | None = setting(None, "slurm: partition (default: the cluster's default)")
    account: str | None = setting(None, "slurm: account to charge")
    qos: str | None = setting(None, "slurm: quality of service")
    setup: list[str] | None = setting(
        None,
        "slurm: a shell command each job runs first, e.g. 'module load cuda' (repeat the flag for more)",
        action="append",
        metavar="COMMAND",
    )
    dry_run: bool = setting(
        False,
        "print the jobs, the backbone's passes and an estimate of the wall time, and run nothing "
        "(slurm: also write the batch scripts and say where)",
        action="store_true",
    )
    wait: bool = setting(
        False, "slurm: block until the tables are written (default: return once queued)", action="store_true"
    )


@dataclass(frozen=True)
class RuntimeConfig:
    """Where the work runs: passed to Lightning's Trainer, and to evaluation loops."""

    accelerator: str = setting("auto", "cpu, gpu, mps or auto")
    devices: int | str = setting(1, "device count or ids", type=devices_value)
    strategy: str = setting("auto", "Lightning strategy, e.g. ddp")
    num_nodes: int = setting(1, "machines for multi-node training", type=positive_int)
    precision: str = setting("32-true", "Lightning precision, e.g. 32-true, bf16-mixed")


def add_arguments(
    parser: argparse.ArgumentParser,
    config: type,
    only: tuple[str, ...] | None = None,
    defaults: dict[str, Any] | None = None,
    title: str | None = None,
    sweep: bool = False,
    options: dict[str, dict] | None = None,
) -> None:
    """Add the flags of ``config``'s fields (``only`` those, if given) as one argument group.

    ``defaults`` replaces a field's default for this command only (e.g. visualize reads the
    split seed from the checkpoints unless --split_seed is given); ``sweep`` turns sweep axes into
    lists (see ``setting``); ``options`` adds argparse options to a field's flag.
    """
    group = parser.add_argument_group(title or config.__name__.removesuffix("Config").lower())
    for item in fields(config):
        # fields made without ``setting`` (QuantizerConfig.settings: the type's own) are no flag
        if "help" not in item.metadata or (only is not None and item.name not in only):
            continue
        arguments = {**item.metadata["argparse"], **(options or {}).get(item.name, {})}
        aliases = arguments.pop("aliases", ())
        flag = item.metadata["flag"] or f"--{item.name}"
        default = (defaults or {}).get(item.name, item.default)
        help = arguments.pop("help", item.metadata["help"])
        axis = item.metadata["sweep"] if sweep else None
        if axis is not None:
            flag, aliases = axis.get("flag", flag), ()
            default, help = list((defaults or {}).get(item.name, axis["default"])), axis["help"]
            arguments["nargs"] = "+"
        # None means "unset": the help says what that does
        shown = item.metadata["show_default"] and not arguments.get("action") and default is not None
        if shown:
            listed = isinstance(default, list | tuple)
            help += f" (default: {' '.join(map(str, default)) if listed else default})"
        group.add_argument(flag, *aliases, dest=item.name, default=default, help=help, **arguments)


def help_of(config: type, name: str) -> str:
    """The help text of ``config``'s field ``name``, for a command that words its default otherwise."""
    return next(item.metadata["help"] for item in fields(config) if item.name == name)


def from_namespace(config: type, namespace: argparse.Namespace, **overrides):
    """The ``config`` object for parsed flags: fields a command does not parse keep their defaults."""
    values = {
        item.name: getattr(namespace, item.name) for item in fields(config) if item.name in vars(namespace)
    }
    return config(**{**values, **overrides})


def from_values(config: type, values: dict):
    """The ``config`` object for the plain values a checkpoint stores (other keys are ignored)."""
    names = {item.name for item in fields(config)}
    return config(**{key: value for key, value in values.items() if key in names})
