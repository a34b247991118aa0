"""Train the VQ model: the baseline's head behind a quantization bottleneck (VQ, RVQ, FSQ or LFQ).

    python squeeze.py --model vit --epochs 10 --batch_size 4 --experiment_name my_vq

saves ./outputs/my_vq/version_N/last.ckpt.
"""

import argparse

from embeddings_squeeze import cli
from embeddings_squeeze.config import QuantizerConfig, add_arguments, from_namespace
from embeddings_squeeze.engine.fitting import fit


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.parser_for(__doc__)
    cli.add_training_arguments(parser)
    add_arguments(parser, QuantizerConfig, title="quantization")
    return parser


def main(args: argparse.Namespace):
    name = args.experiment_name or f"{args.backbone}_{args.quantizer_type}{args.num_vectors}"
    return fit(name, quantizer=from_namespace(QuantizerConfig, args), **cli.training_configs(args))


if __name__ == "__main__":
    cli.run(main, get_args_parser())
