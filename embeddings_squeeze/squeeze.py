"""Train the VQ model: the baseline's head behind a vector-quantization bottleneck.

    python squeeze.py --model vit --epochs 10 --batch_size 4 --experiment_name my_vq

saves ./outputs/my_vq/version_N/last.ckpt.
"""

import argparse

from embeddings_squeeze import cli
from embeddings_squeeze.models import VQSegmentationModule
from embeddings_squeeze.training import train


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_model_args(parser)
    cli.add_vq_args(parser)
    cli.add_data_args(parser)
    cli.add_training_args(parser)
    cli.add_runtime_args(parser)
    return parser


def main(args: argparse.Namespace):
    name = args.experiment_name or f"{args.model}_vq{args.num_vectors}"
    return train(
        args,
        VQSegmentationModule,
        name,
        num_vectors=args.num_vectors,
        bottleneck_dim=args.bottleneck_dim,
        commitment_weight=args.commitment_weight,
        decay=args.decay,
        vq_loss_weight=args.vq_loss_weight,
    )


if __name__ == "__main__":
    cli.run(main, get_args_parser())
