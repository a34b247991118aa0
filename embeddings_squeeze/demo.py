"""Offline demo: synthetic pets -> baseline -> VQ model -> best/worst figures, no downloads.

    embeddings-squeeze demo --output_dir ./demo

Uses randomly initialised frozen backbones (--weights none), so the numbers show the pipeline
working, not what pretrained features achieve; pass --weights default when online.
"""

import argparse
import logging
from pathlib import Path

from embeddings_squeeze import cli, squeeze, train_baseline, visualize
from embeddings_squeeze.data.synthetic import make_synthetic_dataset

log = logging.getLogger(__name__)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output_dir", default="./demo", help="data, runs and figures go here (default: ./demo)"
    )
    parser.add_argument("--model", choices=cli.MODEL_CHOICES, default="vit", help="backbone (default: vit)")
    parser.add_argument("--weights", default="none", help="frozen weights (default: none, i.e. offline)")
    parser.add_argument("--epochs", type=cli.positive_int, default=4, help="epochs per model (default: 4)")
    parser.add_argument("--n_trainval", type=cli.positive_int, default=64, help="synthetic trainval images")
    parser.add_argument("--n_test", type=cli.positive_int, default=24, help="synthetic test images")
    parser.add_argument(
        "--image_size", type=cli.positive_int, default=224, help="model input side (default: 224)"
    )
    parser.add_argument(
        "--num_vectors", type=cli.positive_int, default=64, help="VQ codebook size (default: 64)"
    )
    parser.add_argument("--batch_size", type=cli.positive_int, default=8, help="batch size (default: 8)")
    parser.add_argument("--lr", type=float, default=5e-3, help="learning rate (default: 5e-3)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data, splits and training (default: 0)")
    return parser


def main(args: argparse.Namespace) -> dict:
    root = Path(args.output_dir)
    data = root / "data"
    if (data / "oxford-iiit-pet").is_dir():
        log.info("reusing synthetic data in %s", data)
    else:
        make_synthetic_dataset(data, args.n_trainval, args.n_test, seed=args.seed)
    common = [
        "--model", args.model, "--weights", args.weights, "--data_path", str(data),
        "--output_dir", str(root / "outputs"), "--epochs", str(args.epochs), "--lr", str(args.lr),
        "--batch_size", str(args.batch_size), "--image_size", str(args.image_size), "--seed", str(args.seed),
    ]  # fmt: skip
    baseline = train_baseline.main(
        train_baseline.get_args_parser().parse_args([*common, "--experiment_name", "demo"])
    )
    vq_args = [*common, "--experiment_name", "demo_vq", "--num_vectors", str(args.num_vectors)]
    vq = squeeze.main(squeeze.get_args_parser().parse_args(vq_args))
    return visualize.main(
        visualize.get_args_parser().parse_args(
            [
                "--baseline_checkpoint",
                str(baseline),
                "--vq_checkpoint",
                str(vq),
                "--model",
                args.model,
                "--data_path",
                str(data),
                "--output_dir",
                str(root / "visualizations"),
            ]  # fmt: skip
        )
    )


if __name__ == "__main__":
    cli.run(main, get_args_parser())
