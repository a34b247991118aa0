"""Rate-quality sweep: one baseline, every (quantizer, codebook size, seed) VQ model, JPEG/WebP inputs.

    embeddings-squeeze sweep --model vit --quantizer_type vq fsq --num_vectors 16 64 256 1024 \\
        --seeds 3 --epochs 5 --output_dir ./sweep

Writes <output_dir>/sweep.csv, sweep.json, rate_quality.png and report.html. Each finished model
leaves results/<name>.json; running the same command again skips those and never overwrites them.
"""

import argparse
import io
import json
import logging
import os
import time
from contextlib import redirect_stdout
from pathlib import Path

import torch

from embeddings_squeeze import cli, squeeze, train_baseline, visualize
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.backbones import random_weights
from embeddings_squeeze.training import build_datamodule, pick_device
from embeddings_squeeze.utils.checkpoint import load_module
from embeddings_squeeze.utils.comparison import compare_models
from embeddings_squeeze.utils.input_compression import JPEG_QUALITIES, codecs, evaluate_input_compression
from embeddings_squeeze.utils.run_info import write_json
from embeddings_squeeze.utils.sweep_report import plot_rate_quality, write_report, write_tables

log = logging.getLogger(__name__)
SPLIT = "test"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quantizer_type", nargs="+", choices=("vq", "rvq", "fsq", "lfq"), default=["vq"])
    parser.add_argument("--num_vectors", nargs="+", type=cli.positive_int, default=[16, 64, 256])
    parser.add_argument(
        "--seeds", type=cli.positive_int, default=1, help="seeds per configuration (default: 1)"
    )
    parser.add_argument("--epochs", type=cli.positive_int, default=5, help="epochs per model (default: 5)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of every model (default: 1e-3)")
    parser.add_argument("--num_quantizers", type=cli.positive_int, default=2, help="RVQ levels (default: 2)")
    parser.add_argument("--bottleneck_dim", type=cli.positive_int, default=64)
    parser.add_argument("--jpeg_qualities", nargs="+", type=cli.positive_int, default=list(JPEG_QUALITIES))
    parser.add_argument("--output_dir", default="./sweep", help="default: ./sweep")
    cli.add_model_args(parser)
    cli.add_data_args(parser)
    cli.add_runtime_args(parser)
    return parser


def _frozen_weights(args: argparse.Namespace, output_dir: Path) -> str:
    """The frozen weights every model of the sweep uses.

    With ``--weights none`` each seed would otherwise draw its own random backbone, and the
    comparison would mix backbone and bottleneck effects; draw one, save it, and share it.
    """
    if args.weights != "none":
        return args.weights
    path = output_dir / f"random_{args.model}_{args.image_size}px_seed{args.seed}.pth"
    if not path.is_file():
        torch.manual_seed(args.seed)
        temporary = path.with_name(f".{path.name}.partial")
        torch.save(random_weights(args.model, args.image_size), temporary)
        os.replace(temporary, path)
    return str(path)


def _common(args: argparse.Namespace, runs: Path, seed: int) -> list[str]:
    return [
        "--model",
        args.model,
        "--weights",
        args.frozen_weights,
        "--data_path",
        args.data_path,
        "--output_dir",
        str(runs),
        "--epochs",
        str(args.epochs),
        "--lr",
        str(args.lr),
        "--batch_size",
        str(args.batch_size),
        "--image_size",
        str(args.image_size),
        "--seed",
        str(seed),
        "--mask_mode",
        args.mask_mode,
        "--val_fraction",
        str(args.val_fraction),
        "--num_workers",
        str(args.num_workers),
        "--accelerator",
        args.accelerator,
        "--devices",
        str(args.devices),
        *(["--subset_size", str(args.subset_size)] if args.subset_size else []),
    ]


def _finished(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    if path.is_file():
        log.info("skipping %s: finished earlier (%s)", name, path)
        return json.loads(path.read_text())
    return None


def _vq_row(name, quantizer, size, seed, comparison_summary, seconds) -> dict:
    rate = comparison_summary["rate"]
    row = {
        "name": name,
        "kind": "vq",
        "quantizer": quantizer,
        "num_vectors": size,
        "seed": seed,
        "levels": rate["index_levels"],
        "alphabet_size": rate["alphabet_size"],
        "fixed_bits_per_image": rate["fixed_bits_per_image"],
        "entropy_bits_per_image": rate["entropy_bits_per_image"],
        "payload_bytes_per_image": rate["payload_bytes_mean"],
        "compression_vs_float32": rate["compression_vs_float32_payload"],
        "compression_vs_float16": rate["compression_vs_float16_payload"],
        "miou": comparison_summary["vq_miou"],
        "delta_miou": comparison_summary["miou_difference"],
        "code_usage": rate.get("code_usage_on_split"),
        "training_seconds": round(seconds, 1),
    }
    row.update({f"iou_{k}": v for k, v in comparison_summary["vq_class_iou"].items()})
    return row


def main(args: argparse.Namespace) -> list[dict]:
    output_dir = Path(args.output_dir)
    runs, results = output_dir / "runs", output_dir / "results"
    results.mkdir(parents=True, exist_ok=True)
    args.frozen_weights = _frozen_weights(args, output_dir)
    device = pick_device(args.accelerator, args.devices)
    seeds = [args.seed + offset for offset in range(args.seeds)]

    baseline_row = _finished(results, "baseline")
    if baseline_row is None:
        started = time.perf_counter()
        parsed = train_baseline.get_args_parser().parse_args(
            [*_common(args, runs, seeds[0]), "--experiment_name", "sweep"]
        )
        checkpoint = train_baseline.main(parsed)
        baseline_row = {
            "name": "baseline",
            "kind": "baseline",
            "checkpoint": str(checkpoint),
            "training_seconds": round(time.perf_counter() - started, 1),
        }
    baseline = load_module(baseline_row["checkpoint"], "baseline")
    datamodule = build_datamodule(
        args, args.model, image_size=baseline.hparams.image_size, mask_mode=baseline.hparams.mask_mode
    )
    datamodule.setup()
    image_ids = datamodule.splits[SPLIT].image_ids

    rows = []
    for quantizer in args.quantizer_type:
        for size in args.num_vectors:
            for seed in seeds:
                name = f"{quantizer}_K{size}_seed{seed}"
                row = _finished(results, name)
                if row is None:
                    extra = [
                        "--experiment_name",
                        name,
                        "--quantizer_type",
                        quantizer,
                        "--num_vectors",
                        str(size),
                        "--num_quantizers",
                        str(args.num_quantizers),
                        "--bottleneck_dim",
                        str(args.bottleneck_dim),
                    ]
                    started = time.perf_counter()
                    checkpoint = squeeze.main(
                        squeeze.get_args_parser().parse_args([*_common(args, runs, seed), *extra])
                    )
                    seconds = time.perf_counter() - started
                    vq = load_module(checkpoint, "vq")
                    comparison = compare_models(
                        baseline,
                        vq,
                        datamodule.dataloader(SPLIT),
                        image_ids,
                        0,
                        0,
                        device,
                        record=lambda _: None,
                    )
                    summary = {**comparison.summary(), "rate": comparison.rate}
                    row = {
                        **_vq_row(name, quantizer, size, seed, summary, seconds),
                        "checkpoint": str(checkpoint),
                    }
                    if "miou" not in baseline_row:
                        baseline_row.update(
                            miou=summary["baseline_miou"],
                            delta_miou=0.0,
                            **{f"iou_{k}": v for k, v in summary["baseline_class_iou"].items()},
                        )
                        write_json(results / "baseline.json", baseline_row)
                    write_json(results / f"{name}.json", row)
                rows.append(row)
    if "miou" not in baseline_row:
        raise UserError("the sweep needs at least one VQ model to score the baseline against")

    for codec in codecs():
        for quality in args.jpeg_qualities:
            name = f"{codec.lower()}_q{quality}"
            row = _finished(results, name)
            if row is None:
                measured = evaluate_input_compression(
                    baseline, datamodule.dataloader(SPLIT), codec, quality, device
                )
                row = {
                    "name": name,
                    "kind": "input",
                    "codec": codec,
                    "quality": quality,
                    "payload_bytes_per_image": measured["payload_bytes_mean"],
                    "miou": measured["miou"],
                    "delta_miou": measured["miou"] - baseline_row["miou"],
                    **{f"iou_{k}": v for k, v in measured["class_iou"].items()},
                }
                write_json(results / f"{name}.json", row)
            rows.append(row)
    rows.insert(0, baseline_row)
    aggregates = write_tables(rows, output_dir)

    title = (
        f"{args.model} backbone ({args.weights} weights), Oxford-IIIT Pet layout at {args.data_path}, "
        f"{SPLIT} split, mask mode {baseline.hparams.mask_mode}"
    )
    plot_rate_quality(rows, title, output_dir / "rate_quality.png")
    figures = [(output_dir / "rate_quality.png", "mIoU against measured bytes per image")]
    figures += _model_figures(args, rows, baseline_row, output_dir / "figures")
    settings = {key: value for key, value in vars(args).items()}
    write_report(
        output_dir / "report.html", f"Rate-quality sweep: {title}", settings, rows, aggregates, figures
    )
    log.info(
        "wrote %s",
        ", ".join(
            str(output_dir / n) for n in ("sweep.csv", "sweep.json", "rate_quality.png", "report.html")
        ),
    )
    return rows


def _model_figures(args, rows, baseline_row, folder: Path) -> list[tuple[Path, str]]:
    """Best and worst figures of the chosen model (first quantizer, largest K): by IoU and by loss."""
    chosen = max(
        (r for r in rows if r["kind"] == "vq" and r["quantizer"] == args.quantizer_type[0]),
        key=lambda r: (r["num_vectors"], -r["seed"]),
    )
    figures = []
    for rank_by in ("iou", "delta"):
        target = folder / rank_by
        argv = [
            "--baseline_checkpoint",
            baseline_row["checkpoint"],
            "--vq_checkpoint",
            chosen["checkpoint"],
            "--model",
            args.model,
            "--data_path",
            args.data_path,
            "--output_dir",
            str(target),
            "--rank_by",
            rank_by,
            "--accelerator",
            args.accelerator,
        ]
        with io.StringIO() as quiet, redirect_stdout(quiet):  # the summary table belongs to visualize's CLI
            visualize.main(visualize.get_args_parser().parse_args(argv))
        if rank_by == "iou":
            figures += [
                (target / f"best_results_{SPLIT}.png", f"{chosen['name']}: best images by VQ IoU"),
                (target / f"worst_results_{SPLIT}.png", f"{chosen['name']}: worst images by VQ IoU"),
            ]
        else:
            figures.append(
                (
                    target / f"worst_results_{SPLIT}.png",
                    f"{chosen['name']}: images where VQ loses most against the baseline",
                )
            )
    return figures


if __name__ == "__main__":
    cli.run(main, get_args_parser())
