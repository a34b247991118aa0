"""Rate-quality sweep: every squeezed model and the references it faces, each seed against its own baseline.

    embeddings-squeeze sweep --model vit --quantizer_type vq fsq eb --num_vectors 16 64 256 1024 \\
        --lambdas 1 10 100 --seeds 3 --epochs 5 --output_dir ./sweep

Each quantizer type takes one model per value of its sweep axis: --num_vectors for codebook types,
--lambdas for the entropy bottleneck (eb). Every seed also trains each model's continuous reference
(``none``: the same standardisation, projections and, for FSQ and LFQ, code modules, with the
identity for the quantization), so each squeezed model is measured against its seed's baseline
(trained until its validation loss flattens, --baseline_epochs at most) and against its reference
(the quantization alone), and every seed's baseline is
measured sent the other ways: its masks coded losslessly (the task floor), the ground truth's size,
the grid oracles, and JPEG/WebP images. For every method and seed the sweep reports the bytes it
needs at 90/95/99 % of that seed's baseline mIoU and its BD-rate against JPEG and WebP inputs;
every score has a 95 % interval over the test images, and a configuration's seeds are combined with
the seeds' own variance in the interval; significance is adjusted (Holm) over the sweep's differences.

Seeds vary initialisation and shuffling only: every model trains and is scored on one split (from
--split_seed). With --weights none every model runs on the one random backbone of --backbone_seed.
Writes <output_dir>/sweep.csv, sweep.json, rate_quality.png and report.html. Each result is written
to results/ as soon as it is measured; running the same command again skips those, resumes or reuses
models that trained with the same settings but were not scored, and never overwrites a result.

The work is a graph of jobs (the feature cache, a baseline per seed, the references, one job per
model, the image codecs, then the tables): --launcher serial runs them here one after the other,
local as processes on this machine, slurm as SLURM job arrays (submitit), e.g.

    embeddings-squeeze sweep ... --launcher slurm --partition gpu --gpus_per_job 1 --time_limit 120

A job that fails becomes a failed row with its reason, and the others go on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from embeddings_squeeze import cli
from embeddings_squeeze.config import (
    BASELINE_EPOCHS,
    JPEG_QUALITIES,
    ComparisonConfig,
    DataConfig,
    LaunchConfig,
    ModelConfig,
    OptimizerConfig,
    QuantizerConfig,
    RuntimeConfig,
    TrainingConfig,
    add_arguments,
    from_namespace,
    positive_int,
)
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.quantizers import (
    QUANTIZERS,
    add_quantizer_arguments,
    quantizer_class,
    quantizer_config,
)


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.parser_for(__doc__)
    group = parser.add_argument_group("sweep")
    group.add_argument(
        "--seeds", type=positive_int, default=1,
        help="seeds per configuration, --seed, --seed + 1, ...; each trains its own baseline (default: 1)",
    )  # fmt: skip
    group.add_argument(
        "--jpeg_qualities", nargs="+", type=positive_int, default=list(JPEG_QUALITIES),
        help=f"qualities of the JPEG/WebP image references (default: {' '.join(map(str, JPEG_QUALITIES))})",
    )  # fmt: skip
    group.add_argument(
        "--baseline_epochs", type=positive_int, default=BASELINE_EPOCHS,
        help="the most epochs a baseline trains: each stops once its validation loss has not improved by "
        f"0.001 for 10 epochs, so the squeezed models face a converged baseline (default: {BASELINE_EPOCHS})",
    )  # fmt: skip
    group.add_argument("--output_dir", default="./sweep", help="where everything goes (default: ./sweep)")
    add_arguments(parser, ModelConfig)
    add_arguments(parser, DataConfig)
    add_arguments(parser, OptimizerConfig)
    epochs = {"help": "training epochs of every model, fewer than a single run's 10: a sweep trains many"}
    add_arguments(parser, TrainingConfig, only=("epochs", "seed", "cache_dir"), defaults={"epochs": 5},
                  options={"epochs": epochs})  # fmt: skip
    add_quantizer_arguments(parser, sweep=True)
    add_arguments(parser, ComparisonConfig, only=("metrics",), title="metrics")
    add_arguments(parser, RuntimeConfig, only=("accelerator", "devices"))
    add_arguments(parser, LaunchConfig, title="where the jobs run")
    return parser


SLURM_ONLY = ("gpus_per_job", "cpus_per_job", "mem_per_job", "time_limit", "partition", "account", "qos",
              "setup", "wait")  # fmt: skip


def check_launch(args: argparse.Namespace) -> None:
    """Refuse flag combinations that cannot do what they say, before anything runs."""
    defaults = LaunchConfig()
    if args.launcher != "slurm":
        given = [name for name in SLURM_ONLY if getattr(args, name) != getattr(defaults, name)]
        if given:
            raise UserError(
                f"--{given[0]} is for --launcher slurm (this sweep runs with --launcher {args.launcher})"
            )
    if args.launcher != "serial" and str(args.devices) not in ("1", "auto"):
        raise UserError(
            f"each job of a --launcher {args.launcher} sweep trains on one device; drop --devices "
            f"{args.devices} and raise --max_parallel to run more jobs at once"
        )
    if args.baseline_epochs < args.epochs:
        raise UserError(
            f"--baseline_epochs {args.baseline_epochs} is below --epochs {args.epochs}: the baseline would "
            "train less than the models compared with it; raise --baseline_epochs"
        )
    if args.launcher == "slurm" and args.accelerator in ("gpu", "cuda") and args.gpus_per_job == 0:
        raise UserError("--accelerator gpu on SLURM needs GPUs for the jobs: pass --gpus_per_job 1")


def configurations(args: argparse.Namespace) -> list[QuantizerConfig]:
    """Every bottleneck of the sweep: per type, one per value of its sweep axis, the type's
    highest-quality one, largest K or smallest lambda, last (a type without an axis: one). Their
    continuous references follow from them (``SweepSpec.references``).

    Settings that some type sweeps keep their defaults for the types that do not sweep them."""
    axes = {QUANTIZERS.find(name).sweep_axis for name in QUANTIZERS} - {None}
    shared = {key: value for key, value in vars(args).items() if key not in axes}
    chosen = []
    for name in dict.fromkeys(args.quantizer_type):
        cls = quantizer_class(name)
        values = (
            sorted(getattr(args, cls.sweep_axis), reverse=not cls.larger_is_finer)
            if cls.sweep_axis
            else [None]
        )
        for value in values:
            point = {cls.sweep_axis: value} if cls.sweep_axis else {}
            chosen.append(quantizer_config({**shared, "quantizer_type": name, **point}))
    return chosen


def main(args: argparse.Namespace) -> list[dict] | None:
    check_launch(args)
    # imported here, after parsing: --help and flag mistakes answer without loading the training stack
    from embeddings_squeeze.engine.launchers import launch
    from embeddings_squeeze.engine.sweep import Plan, Sweep, SweepSpec
    from embeddings_squeeze.utils.metrics import chosen

    chosen(args.metrics)  # an unknown name stops here, before any job
    output_dir = Path(args.output_dir)
    training = from_namespace(TrainingConfig, args, output_dir=str(output_dir / "runs"))
    plan = Plan(
        model=from_namespace(ModelConfig, args),
        data=from_namespace(DataConfig, args),
        optimizer=from_namespace(OptimizerConfig, args),
        training=training,
        runtime=from_namespace(RuntimeConfig, args),
    )
    seeds = tuple(training.seed + offset for offset in range(args.seeds))
    spec = SweepSpec(plan, tuple(configurations(args)), seeds, tuple(args.jpeg_qualities), vars(args),
                     tuple(args.metrics), args.baseline_epochs)  # fmt: skip
    return launch(Sweep(spec, output_dir), from_namespace(LaunchConfig, args), say=print)


if __name__ == "__main__":
    cli.run(main, get_args_parser())
