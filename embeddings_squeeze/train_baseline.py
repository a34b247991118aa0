"""Train the baseline: a segmentation head on frozen backbone features, no bottleneck.

    python train_baseline.py --model vit --epochs 10 --batch_size 4 --experiment_name my_baseline

saves ./outputs/my_baseline_baseline/version_N/last.ckpt.
"""

import argparse

from embeddings_squeeze import cli
from embeddings_squeeze.engine.fitting import fit


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.parser_for(__doc__)
    cli.add_training_arguments(parser)
    return parser


def main(args: argparse.Namespace):
    return fit(f"{args.experiment_name or args.backbone}_baseline", **cli.training_configs(args))


if __name__ == "__main__":
    cli.run(main, get_args_parser())
