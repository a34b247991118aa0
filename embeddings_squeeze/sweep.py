"""Rate-quality sweep: every squeezed model and the references it faces, each seed against its own baseline.

    embeddings-squeeze sweep --model vit --quantizer_type vq fsq eb --num_vectors 16 64 256 1024 \\
        --lambdas 1 10 100 --seeds 3 --epochs 5 --output_dir ./sweep

Each quantizer type takes one model per value of its sweep axis: --num_vectors for codebook types,
--lambdas for the entropy bottleneck (eb). Every seed also trains the continuous bottleneck
(``none``: the same projections, no quantization), so each squeezed model is measured against its
seed's baseline and against that reference (the quantization alone), and every seed's baseline is
measured sent the other ways: its masks coded losslessly (the task floor), the ground truth's size,
the grid oracles, and JPEG/WebP images. For every method and seed the sweep reports the bytes it
needs at 90/95/99 % of that seed's baseline mIoU and its BD-rate against JPEG and WebP inputs;
every mIoU has a 95 % bootstrap interval, and seeds are summarised by mean and standard deviation.

Seeds vary initialisation and shuffling only: every model trains and is scored on one split (from
--split_seed). With --weights none every model runs on the one random backbone of --backbone_seed.
Writes <output_dir>/sweep.csv, sweep.json, rate_quality.png and report.html. Each result is written
to results/ as soon as it is measured; running the same command again skips those, reuses models
that finished training with the same settings but were not scored, and never overwrites a result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from embeddings_squeeze import cli
from embeddings_squeeze.config import (
    JPEG_QUALITIES,
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    RuntimeConfig,
    TrainingConfig,
    add_arguments,
    from_namespace,
    positive_int,
)
from embeddings_squeeze.models.quantizers import add_quantizer_arguments


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.parser_for(__doc__)
    group = parser.add_argument_group("sweep")
    group.add_argument(
        "--seeds", type=positive_int, default=1,
        help="seeds per configuration, --seed, --seed + 1, ...; each trains its own baseline (default: 1)",
    )  # fmt: skip
    group.add_argument(
        "--jpeg_qualities", nargs="+", type=positive_int, default=list(JPEG_QUALITIES),
        help="qualities of the JPEG/WebP image references (default: %(default)s)",
    )  # fmt: skip
    group.add_argument("--output_dir", default="./sweep", help="where everything goes (default: ./sweep)")
    add_arguments(parser, ModelConfig)
    add_arguments(parser, DataConfig)
    add_arguments(parser, OptimizerConfig)
    add_arguments(parser, TrainingConfig, only=("epochs", "seed"), defaults={"epochs": 5})
    add_quantizer_arguments(parser, sweep=True)
    add_arguments(parser, RuntimeConfig, only=("accelerator", "devices"))
    return parser


def main(args: argparse.Namespace) -> list[dict]:
    # imported here, after parsing: --help and flag mistakes answer without loading the training stack
    from embeddings_squeeze.engine.sweep import Plan, configurations, run_sweep

    output_dir = Path(args.output_dir)
    training = from_namespace(TrainingConfig, args, output_dir=str(output_dir / "runs"))
    plan = Plan(
        model=from_namespace(ModelConfig, args),
        data=from_namespace(DataConfig, args),
        optimizer=from_namespace(OptimizerConfig, args),
        training=training,
        runtime=from_namespace(RuntimeConfig, args),
    )
    quantizers, reference = configurations(args)
    return run_sweep(plan, output_dir, quantizers, reference, args.seeds, args.jpeg_qualities, vars(args))


if __name__ == "__main__":
    cli.run(main, get_args_parser())
