"""Rate-quality sweep: a baseline and every (quantizer, codebook size) VQ model per seed, JPEG/WebP inputs.

    embeddings-squeeze sweep --model vit --quantizer_type vq fsq --num_vectors 16 64 256 1024 \\
        --seeds 3 --epochs 5 --output_dir ./sweep

Seeds vary initialisation and shuffling only: every model trains and is scored on one split (from
--split_seed), and each VQ model is compared with the baseline of its own seed. Writes
<output_dir>/sweep.csv, sweep.json, rate_quality.png and report.html. Each finished model leaves
results/<name>.json; running the same command again skips those and never overwrites them.
"""

import argparse
import json
import logging
import os
import time
from pathlib import Path

import torch

from embeddings_squeeze import cli, squeeze, train_baseline
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.backbones import random_weights
from embeddings_squeeze.training import build_datamodule, pick_device
from embeddings_squeeze.utils.checkpoint import load_module
from embeddings_squeeze.utils.comparison import compare_models
from embeddings_squeeze.utils.input_compression import JPEG_QUALITIES, codecs, evaluate_input_compression
from embeddings_squeeze.utils.run_info import write_json
from embeddings_squeeze.utils.sweep_report import plot_rate_quality, write_report, write_tables
from embeddings_squeeze.visualize import draw_rankings

log = logging.getLogger(__name__)
SPLIT = "test"
FIGURE_ROWS = 5
RATE_FIELDS = (  # sweep column <- rate table key
    ("levels", "index_levels"),
    ("alphabet_size", "alphabet_size"),
    ("distinct_codes", "distinct_codes"),
    ("fixed_bits_per_image", "fixed_bits_per_image"),
    ("entropy_bits_per_image", "entropy_bits_per_image"),
    ("coded_bits_per_image", "coded_bits_per_image"),
    ("payload_bytes_per_image", "payload_bytes_mean"),
    ("compression_vs_float32", "compression_vs_float32_payload"),
    ("compression_vs_float16", "compression_vs_float16_payload"),
    ("compression_vs_float32_coded", "compression_vs_float32_coded"),
    ("code_usage", "code_usage_on_split"),
    ("codes_replaced_per_step", "codes_replaced_per_step_after_epoch1"),
    ("decoder_bytes", "decoder_bytes"),
    ("head_bytes", "head_bytes"),
)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quantizer_type", nargs="+", choices=("vq", "rvq", "fsq", "lfq"), default=["vq"])
    parser.add_argument("--num_vectors", nargs="+", type=cli.positive_int, default=[16, 64, 256])
    parser.add_argument(
        "--seeds", type=cli.positive_int, default=1,
        help="seeds per configuration, --seed, --seed + 1, ...; each trains its own baseline (default: 1)",
    )  # fmt: skip
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


def _common(args: argparse.Namespace, weights: str, runs: Path, seed: int) -> list[str]:
    """The flags every training run of the sweep shares: same data, split, weights and device."""
    flags = {
        "--model": args.model, "--weights": weights, "--data_path": args.data_path,
        "--output_dir": runs, "--epochs": args.epochs, "--lr": args.lr, "--batch_size": args.batch_size,
        "--image_size": args.image_size, "--seed": seed, "--split_seed": args.split_seed,
        "--mask_mode": args.mask_mode, "--val_fraction": args.val_fraction,
        "--num_workers": args.num_workers, "--accelerator": args.accelerator, "--devices": args.devices,
    }  # fmt: skip
    if args.subset_size:
        flags["--subset_size"] = args.subset_size
    return [str(part) for pair in flags.items() for part in pair]


def _finished(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    if path.is_file():
        log.info("skipping %s: finished earlier (%s)", name, path)
        return json.loads(path.read_text())
    return None


def _vq_row(name: str, quantizer: str, size: int, seed: int, summary: dict, seconds: float) -> dict:
    row = {"name": name, "kind": "vq", "quantizer": quantizer, "num_vectors": size, "seed": seed}
    row.update({column: summary["rate"][key] for column, key in RATE_FIELDS})
    row.update(
        miou=summary["vq_miou"],
        baseline_miou=summary["baseline_miou"],
        delta_miou=summary["miou_difference"],
        training_seconds=round(seconds, 1),
        **{f"iou_{k}": v for k, v in summary["vq_class_iou"].items()},
    )
    return row


class Sweep:
    """One sweep's shared state: folders, data, device, and models loaded only when work needs them."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.output_dir = Path(args.output_dir)
        self.runs, self.results = self.output_dir / "runs", self.output_dir / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self.weights = _frozen_weights(args, self.output_dir)
        self.device = pick_device(args.accelerator, args.devices)
        self._datamodule = None
        self._baselines: dict[int, object] = {}

    @property
    def datamodule(self):
        """The evaluation data: the same split, images and batch size as training used."""
        if self._datamodule is None:
            self._datamodule = build_datamodule(self.args, self.args.model)
            self._datamodule.setup()
        return self._datamodule

    def baseline_row(self, seed: int) -> dict:
        name = f"baseline_seed{seed}"
        row = _finished(self.results, name)
        if row is None:
            started = time.perf_counter()
            argv = [*_common(self.args, self.weights, self.runs, seed), "--experiment_name", name]
            checkpoint = train_baseline.main(train_baseline.get_args_parser().parse_args(argv))
            row = {"name": name, "kind": "baseline", "seed": seed, "checkpoint": str(checkpoint),
                   "training_seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
        return row

    def baseline(self, row: dict):
        if row["seed"] not in self._baselines:
            self._baselines[row["seed"]] = load_module(row["checkpoint"], "baseline")
        return self._baselines[row["seed"]]

    def vq_row(self, quantizer: str, size: int, seed: int, baseline_row: dict, figures: Path | None) -> dict:
        """Train and score one VQ model; ``figures`` also draws its best and worst images there."""
        name = f"{quantizer}_K{size}_seed{seed}"
        row = _finished(self.results, name)
        if row is not None and (figures is None or _figures_done(figures)):
            return row
        started = time.perf_counter()
        if row is None:
            argv = [*_common(self.args, self.weights, self.runs, seed), "--experiment_name", name,
                    "--quantizer_type", quantizer, "--num_vectors", str(size),
                    "--num_quantizers", str(self.args.num_quantizers),
                    "--bottleneck_dim", str(self.args.bottleneck_dim)]  # fmt: skip
            checkpoint = squeeze.main(squeeze.get_args_parser().parse_args(argv))
        else:
            checkpoint = row["checkpoint"]
        seconds = time.perf_counter() - started
        rows_wanted = FIGURE_ROWS if figures is not None else 0
        comparison = compare_models(
            self.baseline(baseline_row), load_module(checkpoint, "vq"), self.datamodule.dataloader(SPLIT),
            self.datamodule.splits[SPLIT].image_ids, rows_wanted, rows_wanted, self.device,
            record=lambda _: None, rank_by=("iou", "delta"),
        )  # fmt: skip
        if figures is not None:
            for ranking in ("iou", "delta"):
                folder = figures / ranking
                folder.mkdir(parents=True, exist_ok=True)
                draw_rankings(comparison, ranking, SPLIT, FIGURE_ROWS, FIGURE_ROWS, folder)
        if row is not None:  # only the figures were missing
            return row
        summary = {**comparison.summary(), "rate": comparison.rate}
        if "miou" not in baseline_row:
            baseline_row.update(
                miou=summary["baseline_miou"], delta_miou=0.0,
                **{f"iou_{k}": v for k, v in summary["baseline_class_iou"].items()},
            )  # fmt: skip
            write_json(self.results / f"{baseline_row['name']}.json", baseline_row)
        row = {**_vq_row(name, quantizer, size, seed, summary, seconds), "checkpoint": str(checkpoint)}
        write_json(self.results / f"{name}.json", row)
        return row

    def input_row(self, codec: str, quality: int, baseline_row: dict) -> dict:
        """The baseline on test images sent as ``codec`` at ``quality`` (the first seed's baseline)."""
        name = f"{codec.lower()}_q{quality}"
        row = _finished(self.results, name)
        if row is None:
            measured = evaluate_input_compression(
                self.baseline(baseline_row), self.datamodule.dataloader(SPLIT), codec, quality, self.device
            )
            row = {"name": name, "kind": "input", "codec": codec, "quality": quality,
                   "payload_bytes_per_image": measured["payload_bytes_mean"], "miou": measured["miou"],
                   "delta_miou": measured["miou"] - baseline_row["miou"],
                   **{f"iou_{k}": v for k, v in measured["class_iou"].items()}}  # fmt: skip
            write_json(self.results / f"{name}.json", row)
        return row


def _figures_done(folder: Path) -> bool:
    names = ("iou/best_results_test.png", "iou/worst_results_test.png", "delta/worst_results_test.png")
    return all((folder / name).is_file() for name in names)


def main(args: argparse.Namespace) -> list[dict]:
    sweep = Sweep(args)
    seeds = [args.seed + offset for offset in range(args.seeds)]
    figures = sweep.output_dir / "figures"
    chosen = (args.quantizer_type[0], max(args.num_vectors), seeds[0])  # the model the report shows
    baselines = {seed: sweep.baseline_row(seed) for seed in seeds}
    vq_rows = []
    for quantizer in args.quantizer_type:
        for size in args.num_vectors:
            for seed in seeds:
                draw = figures if (quantizer, size, seed) == chosen else None
                vq_rows.append(sweep.vq_row(quantizer, size, seed, baselines[seed], draw))
    if any("miou" not in row for row in baselines.values()):
        raise UserError("the sweep needs at least one VQ model to score the baseline against")
    input_rows = [
        sweep.input_row(codec, quality, baselines[seeds[0]])
        for codec in codecs()
        for quality in args.jpeg_qualities
    ]
    rows = [*baselines.values(), *vq_rows, *input_rows]
    aggregates = write_tables(rows, sweep.output_dir)

    mask_mode = args.mask_mode
    title = f"{args.model} ({args.weights} weights), Oxford-IIIT Pet {SPLIT} split, {mask_mode} masks"
    plot_rate_quality(rows, title, sweep.output_dir / "rate_quality.png")
    name = f"{chosen[0]}_K{chosen[1]}_seed{chosen[2]}"
    report_figures = [
        (sweep.output_dir / "rate_quality.png", "mIoU against measured bytes per image"),
        (figures / "iou" / f"best_results_{SPLIT}.png", f"{name}: best images by VQ IoU"),
        (figures / "iou" / f"worst_results_{SPLIT}.png", f"{name}: worst images by VQ IoU"),
        (figures / "delta" / f"worst_results_{SPLIT}.png", f"{name}: where VQ loses most to the baseline"),
    ]  # fmt: skip
    write_report(
        sweep.output_dir / "report.html", f"Rate-quality sweep: {title}", vars(args), rows, aggregates,
        report_figures,
    )  # fmt: skip
    written = ("sweep.csv", "sweep.json", "rate_quality.png", "report.html")
    log.info("wrote %s", ", ".join(str(sweep.output_dir / n) for n in written))
    return rows


if __name__ == "__main__":
    cli.run(main, get_args_parser())
