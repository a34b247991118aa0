"""Compare a baseline and a VQ checkpoint on one split; draw the best and worst VQ results.

    embeddings-squeeze visualize --vq_checkpoint ./outputs/my_vq/version_0/last.ckpt \\
        --baseline_checkpoint ./outputs/my_baseline_baseline/version_0/last.ckpt \\
        --dataset_split test --n_best 5 --n_worst 5 --output_dir ./visualizations

(inside the package directory, ``python visualize.py ...`` runs the same command). Both models are
rebuilt from their checkpoint files alone: backbone, weights, dataset, image size, split and subset.
Writes best_results_<split>.png, worst_results_<split>.png, scores_<split>.csv (every image) and
summary_<split>.json.
"""

from __future__ import annotations

import argparse

from embeddings_squeeze import cli
from embeddings_squeeze.config import (
    ComparisonConfig,
    DataConfig,
    ModelConfig,
    RuntimeConfig,
    add_arguments,
    from_namespace,
    help_of,
)


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.parser_for(__doc__)
    parser.add_argument(
        "--vq_checkpoint", required=True, help="the squeezed model's checkpoint (from squeeze)"
    )
    parser.add_argument(
        "--baseline_checkpoint", required=True, help="the baseline's checkpoint (from train-baseline)"
    )
    parser.add_argument(
        "--reference_checkpoint",
        help="optional: a continuous bottleneck (squeeze --quantizer_type none) scored beside them, so "
        "the VQ model's loss splits into the bottleneck's projections and the quantization alone",
    )
    add_arguments(parser, ComparisonConfig)
    add_arguments(
        parser,
        ModelConfig,
        only=("backbone", "dataset"),
        defaults={"backbone": None, "dataset": None},
        title="checks (refuse checkpoints trained with another --model or --dataset; default: theirs)",
    )
    data_flags = ("data_path", "subset_size", "split_seed", "batch_size", "num_workers")
    # the data folder, the split seed and the subset size are the VQ checkpoint's unless given
    title = "data (--data_path, --split_seed and --subset_size: the VQ checkpoint's unless given)"
    subset = {"help": "score at most this many images per split, a seeded random sample (default: as many as "
                      "the VQ model trained on)"}  # fmt: skip
    folder = {"help": f"{help_of(DataConfig, 'data_path')} (default: the one the VQ model was trained on "
                      f"where it still exists, else {DataConfig.data_path})"}  # fmt: skip
    add_arguments(parser, DataConfig, only=data_flags, defaults={"split_seed": None, "data_path": None},
                  title=title, options={"subset_size": subset, "data_path": folder})  # fmt: skip
    add_arguments(parser, RuntimeConfig, only=("accelerator", "devices"))
    return parser


def main(args: argparse.Namespace) -> dict:
    # imported here, after parsing: --help and flag mistakes answer without loading the training stack
    from embeddings_squeeze.engine.compare import Runs, compare
    from embeddings_squeeze.utils.summary_text import console_text

    view = from_namespace(ComparisonConfig, args)
    runs = Runs(args.baseline_checkpoint, args.vq_checkpoint, args.reference_checkpoint)
    data, runtime = from_namespace(DataConfig, args), from_namespace(RuntimeConfig, args)
    report = compare(runs, data, runtime, view, args.backbone, args.dataset)
    print(console_text(report, view.output_dir))
    return report.as_dict()


if __name__ == "__main__":
    cli.run(main, get_args_parser())
