"""Train the VQ model: the baseline's head behind a quantization bottleneck of any --quantizer_type.

    embeddings-squeeze squeeze --model vit --epochs 10 --batch_size 4 --experiment_name my_vq

saves ./outputs/my_vq/version_N/last.ckpt (inside the package directory, ``python squeeze.py ...`` runs
the same command). Each quantizer type has settings of its own: the groups below.
"""

import argparse

from embeddings_squeeze import cli
from embeddings_squeeze.models.quantizers import add_quantizer_arguments, quantizer_config, run_label
from embeddings_squeeze.utils.files import shown


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.parser_for(__doc__)
    cli.add_training_arguments(parser)
    add_quantizer_arguments(parser)
    return parser


def main(args: argparse.Namespace):
    # imported here, after parsing: --help and flag mistakes answer without loading the training stack
    from embeddings_squeeze.engine.fitting import fit

    quantizer = quantizer_config(args)
    name = args.experiment_name or f"{args.backbone}_{run_label(quantizer)}"
    last = fit(name, quantizer=quantizer, **cli.training_configs(args))
    data = f" --data_path {args.data_path}" if args.data_path is not None else ""
    cli.report_run(
        last,
        f"'{cli.PROGRAM} visualize --vq_checkpoint {shown(last)} --baseline_checkpoint "
        f"{_baseline_of(args)}{data}'",
    )
    return last


def _baseline_of(args: argparse.Namespace) -> str:
    """The newest baseline run train-baseline made with this experiment name, or a placeholder."""
    from embeddings_squeeze.engine.run_dirs import newest_run  # the training stack is loaded by now

    baseline = newest_run(args.output_dir, f"{args.experiment_name or args.backbone}_baseline")
    return shown(baseline / "last.ckpt") if baseline is not None else "<the baseline's last.ckpt>"


if __name__ == "__main__":
    cli.run(main, get_args_parser())
