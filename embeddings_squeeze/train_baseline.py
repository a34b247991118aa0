"""Train the baseline: a segmentation head on frozen backbone features, no bottleneck.

    embeddings-squeeze train-baseline --model vit --epochs 10 --batch_size 4 --experiment_name my_baseline

saves ./outputs/my_baseline_baseline/version_N/last.ckpt (inside the package directory,
``python train_baseline.py ...`` runs the same command).
"""

import argparse

from embeddings_squeeze import cli
from embeddings_squeeze.utils.files import shown


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.parser_for(__doc__)
    cli.add_training_arguments(parser)
    return parser


def main(args: argparse.Namespace):
    # imported here, after parsing: --help and flag mistakes answer without loading the training stack
    from embeddings_squeeze.engine.fitting import fit

    last = fit(f"{args.experiment_name or args.backbone}_baseline", **cli.training_configs(args))
    cli.report_run(
        last,
        f"train the VQ model with '{cli.PROGRAM} squeeze' and the same flags, then '{cli.PROGRAM} visualize "
        f"--baseline_checkpoint {shown(last)} --vq_checkpoint <its last.ckpt>'",
    )
    return last


if __name__ == "__main__":
    cli.run(main, get_args_parser())
