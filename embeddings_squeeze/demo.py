"""Offline demo: synthetic pets -> baseline -> VQ model -> best/worst figures, no downloads.

    embeddings-squeeze demo --output_dir ./demo

Uses a randomly initialised frozen backbone (--weights none), so the numbers show the pipeline
working, not what pretrained features achieve; pass --weights default when online. The baseline
trains until its validation loss flattens (--baseline_epochs at most), the VQ model for --epochs.
"""

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from embeddings_squeeze import cli
from embeddings_squeeze.config import (
    BASELINE_EPOCHS,
    ComparisonConfig,
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    QuantizerConfig,
    RuntimeConfig,
    TrainingConfig,
    add_arguments,
    from_namespace,
    positive_int,
)
from embeddings_squeeze.data.synthetic import make_synthetic_dataset

log = logging.getLogger(__name__)


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.parser_for(__doc__)
    group = parser.add_argument_group("demo")
    group.add_argument(
        "--output_dir", default="./demo", help="data, runs and figures go here (default: ./demo)"
    )
    group.add_argument(
        "--n_trainval", type=positive_int, default=64, help="synthetic trainval images (default: 64)"
    )
    group.add_argument("--n_test", type=positive_int, default=24, help="synthetic test images (default: 24)")
    group.add_argument(
        "--baseline_epochs", type=positive_int, default=BASELINE_EPOCHS,
        help=f"the most epochs the baseline trains; it stops once converged (default: {BASELINE_EPOCHS})",
    )  # fmt: skip
    # the demo's own defaults: offline weights, a short run at a learning rate that suits it
    add_arguments(
        parser, ModelConfig, only=("backbone", "weights", "image_size"), defaults={"weights": "none"}
    )
    add_arguments(parser, QuantizerConfig, only=("num_vectors",), defaults={"num_vectors": 64})
    add_arguments(parser, DataConfig, only=("batch_size",), defaults={"batch_size": 8})
    add_arguments(parser, OptimizerConfig, only=("lr",), defaults={"lr": 5e-3})
    add_arguments(parser, TrainingConfig, only=("epochs", "seed"), defaults={"epochs": 8, "seed": 0})
    return parser


def main(args: argparse.Namespace) -> dict:
    # imported here, after parsing: --help and flag mistakes answer without loading the training stack
    from embeddings_squeeze.engine.compare import Runs, compare
    from embeddings_squeeze.engine.fitting import fit
    from embeddings_squeeze.utils.summary_text import console_text

    root = Path(args.output_dir)
    data_root = root / "data"
    if (data_root / "oxford-iiit-pet").is_dir():
        log.info("reusing synthetic data in %s", data_root)
    else:
        make_synthetic_dataset(data_root, args.n_trainval, args.n_test, seed=args.seed)
    model = from_namespace(ModelConfig, args)
    data = from_namespace(DataConfig, args, data_path=str(data_root))
    training = from_namespace(TrainingConfig, args, output_dir=str(root / "outputs"))
    runtime, optimizer = RuntimeConfig(), from_namespace(OptimizerConfig, args)
    # the baseline trains until converged, so the VQ model's loss is not understated
    converged = replace(training, epochs=args.baseline_epochs, converge=True)
    baseline = fit("demo_baseline", model, data, converged, runtime, optimizer)
    squeezed = fit(
        "demo_vq", model, data, training, runtime, optimizer, from_namespace(QuantizerConfig, args)
    )
    view = ComparisonConfig(output_dir=str(root / "visualizations"))
    scored = DataConfig(data_path=str(data_root), split_seed=None)  # the checkpoints' split
    report = compare(Runs(baseline, squeezed), scored, runtime, view, model.backbone, model.dataset)
    print(console_text(report, view.output_dir))
    print(
        f"next: open {view.output_dir}/index.html in a browser; the README's 'Real data' runs "
        "the same steps on Oxford-IIIT Pet"
    )
    return report.as_dict()


if __name__ == "__main__":
    cli.run(main, get_args_parser())
