"""Train the VQ model: the baseline's head behind a quantization bottleneck (--quantizer_type).

    python squeeze.py --model vit --epochs 10 --batch_size 4 --experiment_name my_vq

saves ./outputs/my_vq/version_N/last.ckpt.
"""

import argparse

from embeddings_squeeze import cli
from embeddings_squeeze.engine.fitting import fit
from embeddings_squeeze.models.quantizers import add_quantizer_arguments, quantizer_config, run_label


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.parser_for(__doc__)
    cli.add_training_arguments(parser)
    add_quantizer_arguments(parser)
    return parser


def main(args: argparse.Namespace):
    quantizer = quantizer_config(args)
    name = args.experiment_name or f"{args.backbone}_{run_label(quantizer)}"
    return fit(name, quantizer=quantizer, **cli.training_configs(args))


if __name__ == "__main__":
    cli.run(main, get_args_parser())
