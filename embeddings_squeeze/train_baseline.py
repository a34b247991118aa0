"""Train the baseline: a segmentation head on frozen backbone features, no bottleneck.

    python train_baseline.py --model vit --epochs 10 --batch_size 4 --experiment_name my_baseline

saves ./outputs/my_baseline_baseline/version_N/last.ckpt.
"""

import argparse

from embeddings_squeeze import cli
from embeddings_squeeze.models import BaselineSegmentationModule
from embeddings_squeeze.training import train


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_model_args(parser)
    cli.add_data_args(parser)
    cli.add_training_args(parser)
    cli.add_runtime_args(parser)
    return parser


def main(args: argparse.Namespace):
    name = args.experiment_name or args.model
    return train(args, BaselineSegmentationModule, f"{name}_baseline")


if __name__ == "__main__":
    cli.run(main, get_args_parser())
