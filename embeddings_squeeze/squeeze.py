"""Train the VQ model: the baseline's head behind a quantization bottleneck (VQ, RVQ, FSQ or LFQ).

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
    name = args.experiment_name or f"{args.model}_{args.quantizer_type}{args.num_vectors}"
    return train(
        args,
        VQSegmentationModule,
        name,
        quantizer_type=args.quantizer_type,
        num_vectors=args.num_vectors,
        bottleneck_dim=args.bottleneck_dim,
        num_quantizers=args.num_quantizers,
        fsq_levels=args.fsq_levels,
        commitment_weight=args.commitment_weight,
        decay=args.decay,
        vq_loss_weight=args.vq_loss_weight,
        kmeans_init=args.kmeans_init,
        dead_code_threshold=args.dead_code_threshold,
        entropy_loss_weight=args.entropy_loss_weight,
    )


if __name__ == "__main__":
    cli.run(main, get_args_parser())
