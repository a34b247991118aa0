"""Compare a baseline and a VQ checkpoint on one split; draw the best and worst VQ results.

    python visualize.py --vq_checkpoint ./outputs/my_vq/version_0/last.ckpt \\
        --baseline_checkpoint ./outputs/my_baseline_baseline/version_0/last.ckpt \\
        --dataset_split test --n_best 5 --n_worst 5 --output_dir ./visualizations

Both models are rebuilt from their checkpoint files alone. Writes best_results_<split>.png,
worst_results_<split>.png, scores_<split>.csv (every image) and summary_<split>.json.
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: figures go to files, no display backend needed
from matplotlib.patches import Patch

from embeddings_squeeze import cli
from embeddings_squeeze.data import labels
from embeddings_squeeze.data.labels import IGNORE_INDEX
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.training import build_datamodule, pick_device
from embeddings_squeeze.utils.checkpoint import build_module, expect_kind, read_checkpoint
from embeddings_squeeze.utils.comparison import Comparison, ScoredImage, compare_models
from embeddings_squeeze.utils.run_info import prepare_output_dir, write_json

log = logging.getLogger(__name__)

PANEL_INCHES = 3.0
HEADER_INCHES = 1.0
DPI = 80
COLUMNS = ("Original image", "Ground truth", "Baseline prediction", "VQ prediction")
CLASS_COLOURS = np.array(labels.CLASS_COLOURS, dtype=np.uint8)  # ignored pixels are black
IGNORE_COLOUR = np.array([0, 0, 0], dtype=np.uint8)
SCORE_FIELDS = ("position", "image_id", "baseline_iou", "vq_iou", "iou_difference")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vq_checkpoint", required=True, help="VQ model checkpoint (squeeze.py)")
    parser.add_argument(
        "--baseline_checkpoint", required=True, help="baseline checkpoint (train_baseline.py)"
    )
    parser.add_argument("--dataset_split", choices=("test", "val"), default="test", help="default: test")
    parser.add_argument(
        "--n_best", type=cli.non_negative_int, default=5, help="best results to show (default: 5)"
    )
    parser.add_argument(
        "--n_worst", type=cli.non_negative_int, default=5, help="worst results to show (default: 5)"
    )
    parser.add_argument("--output_dir", default="./visualizations", help="default: ./visualizations")
    parser.add_argument(
        "--rank_by", choices=("iou", "delta"), default="iou",
        help="iou: by VQ per-image IoU; delta: by VQ minus baseline IoU, worst = where VQ loses most",
    )  # fmt: skip
    cli.add_model_args(parser, training=False)
    cli.add_data_args(parser, training=False)
    cli.add_runtime_args(parser)
    return parser


def check_pair(model: str, baseline: dict, vq: dict) -> None:
    """Refuse checkpoint pairs whose comparison would be meaningless."""
    baseline_info, vq_info = baseline["embeddings_squeeze"], vq["embeddings_squeeze"]
    if baseline_info["backbone"] != vq_info["backbone"]:
        raise UserError(
            f"the checkpoints use different backbones (baseline: {baseline_info['backbone']}, "
            f"VQ: {vq_info['backbone']}); train both with the same --model"
        )
    if model != vq_info["backbone"]:
        raise UserError(
            f"--model {model} does not match the checkpoints, which use {vq_info['backbone']}; "
            f"pass --model {vq_info['backbone']}"
        )
    for key in ("mask_mode", "image_size"):
        if baseline["hyper_parameters"][key] != vq["hyper_parameters"][key]:
            raise UserError(
                f"the checkpoints differ in {key} (baseline: {baseline['hyper_parameters'][key]}, "
                f"VQ: {vq['hyper_parameters'][key]}); train both with the same --{key}"
            )
    if baseline_info["weights_id"] != vq_info["weights_id"]:
        log.warning(
            "warning: the two checkpoints were trained on different frozen weights (%s vs %s); "
            "the comparison mixes backbone and bottleneck effects",
            baseline_info["weights_id"],
            vq_info["weights_id"],
        )


def colourise(labels: np.ndarray) -> np.ndarray:
    """(H, W) labels -> (H, W, 3) colours."""
    rgb = np.empty((*labels.shape, 3), dtype=np.uint8)
    rgb[:] = IGNORE_COLOUR
    known = labels != IGNORE_INDEX
    rgb[known] = CLASS_COLOURS[labels[known]]
    return rgb


def figure_size_pixels(rows: int) -> tuple[int, int]:
    """(width, height) in pixels of a figure with ``rows`` result rows."""
    return round(len(COLUMNS) * PANEL_INCHES * DPI), round((rows * PANEL_INCHES + HEADER_INCHES) * DPI)


def plot_results(items: list[ScoredImage], class_names, title: str, path: Path) -> None:
    """One row per image: input, ground truth, baseline and VQ predictions with their IoU."""
    rows = max(len(items), 1)
    width, height = len(COLUMNS) * PANEL_INCHES, rows * PANEL_INCHES + HEADER_INCHES
    figure = Figure(figsize=(width, height), dpi=DPI)
    top = 1 - HEADER_INCHES / height
    grid = figure.add_gridspec(rows, len(COLUMNS), left=0.01, right=0.99, bottom=0.01, top=top, hspace=0.25)
    for row, item in enumerate(items):
        panels = (item.image, colourise(item.target), colourise(item.baseline_pred), colourise(item.vq_pred))
        titles = (
            item.image_id,
            "Ground truth",
            f"Baseline (IoU {item.baseline_iou:.3f})",
            f"VQ (IoU {item.vq_iou:.3f})",
        )
        for column, (panel, panel_title) in enumerate(zip(panels, titles)):
            axis = figure.add_subplot(grid[row, column])
            axis.imshow(panel, interpolation="nearest")
            axis.set_title(panel_title, fontsize=9)
            axis.axis("off")
    if not items:
        figure.text(0.5, 0.5, "no images to show", ha="center", va="center")
    legend = [Patch(color=CLASS_COLOURS[i] / 255, label=name) for i, name in enumerate(class_names)]
    legend.append(Patch(color=IGNORE_COLOUR / 255, label="ignored"))
    figure.suptitle(f"{title}\ncolumns: {' | '.join(COLUMNS)}", fontsize=10, y=1 - 0.05 / height)
    legend_top = 1 - 0.5 / height  # below the two title lines
    figure.legend(
        handles=legend, loc="upper center", bbox_to_anchor=(0.5, legend_top), ncol=len(legend), frameon=False
    )
    figure.savefig(path, dpi=DPI)


def print_summary(summary: dict, split: str) -> None:
    print(f"\n{split} split: {summary['images']} images ({summary['images_scored']} scored)")
    print(f"{'':24}{'baseline':>10}{'VQ':>10}{'VQ - base':>11}")
    print(
        f"{'mIoU (dataset)':24}{summary['baseline_miou']:10.4f}{summary['vq_miou']:10.4f}"
        f"{summary['miou_difference']:+11.4f}"
    )
    print(
        f"{'mean per-image IoU':24}{summary['baseline_mean_image_iou']:10.4f}"
        f"{summary['vq_mean_image_iou']:10.4f}{summary['mean_image_iou_difference']:+11.4f}"
    )
    for name, value in summary["baseline_class_iou"].items():
        print(f"{'IoU ' + name:24}{value:10.4f}{summary['vq_class_iou'][name]:10.4f}")
    rate = summary["rate"]
    print(
        f"\nVQ rate per image ({rate['positions_per_image']} grid positions, "
        f"{rate['alphabet_size']} codes per level): fixed {rate['fixed_bits_per_image']:.0f} bits, "
        f"entropy {rate['entropy_bits_per_image']:.1f} bits (this split's own statistics), "
        f"coded {rate['coded_bits_per_image']:.1f} bits (the coder's model), "
        f"payload {rate['payload_bytes_mean']:.1f} bytes mean ({rate['payload_bits_per_pixel']:.4f} bpp); "
        f"float32 embeddings {rate['float32_bits_per_image'] // 8} bytes "
        f"({rate['compression_vs_float32_payload']:.0f}x smaller as payload)"
    )


def write_outputs(comparison: Comparison, args: argparse.Namespace, output_dir: Path) -> dict:
    split = args.dataset_split
    summary = comparison.summary()
    summary.update(
        split=split,
        baseline_checkpoint=str(args.baseline_checkpoint),
        vq_checkpoint=str(args.vq_checkpoint),
        rate=comparison.rate,
    )
    write_json(output_dir / f"summary_{split}.json", summary)
    draw_rankings(comparison, args.rank_by, split, args.n_best, args.n_worst, output_dir)
    return summary


def draw_rankings(
    comparison: Comparison, ranking: str, split: str, n_best: int, n_worst: int, output_dir: Path
) -> dict[str, Path]:
    """best_results_<split>.png and worst_results_<split>.png for one ranking; returns their paths."""
    best, worst = comparison.rankings[ranking]
    ranked_by = "VQ minus baseline per-image IoU" if ranking == "delta" else "VQ per-image IoU"
    paths = {}
    for kind, items, wanted in (("best", best, n_best), ("worst", worst, n_worst)):
        if len(items) < wanted:
            log.warning(
                "only %d scored images in the %s split; showing %d %s", len(items), split, len(items), kind
            )
        title = f"{len(items)} {kind} VQ results on the {split} split, ranked by {ranked_by}"
        paths[kind] = output_dir / f"{kind}_results_{split}.png"
        plot_results(items, comparison.class_names, title, paths[kind])
    return paths


def main(args: argparse.Namespace) -> dict:
    baseline_checkpoint = read_checkpoint(args.baseline_checkpoint)
    vq_checkpoint = read_checkpoint(args.vq_checkpoint)
    expect_kind(baseline_checkpoint, "baseline", "--baseline_checkpoint", args.baseline_checkpoint)
    expect_kind(vq_checkpoint, "vq", "--vq_checkpoint", args.vq_checkpoint)
    check_pair(args.model, baseline_checkpoint, vq_checkpoint)

    trained = vq_checkpoint["datamodule_hyper_parameters"]
    hparams = vq_checkpoint["hyper_parameters"]
    datamodule = build_datamodule(
        args,
        args.model,
        image_size=hparams["image_size"],
        mask_mode=hparams["mask_mode"],
        val_fraction=trained["val_fraction"],
        split_seed=trained["split_seed"] if args.split_seed is None else args.split_seed,
    )
    datamodule.prepare_data()
    datamodule.setup()
    split = datamodule.splits[args.dataset_split]

    output_dir = prepare_output_dir(args.output_dir)
    baseline = build_module(baseline_checkpoint, args.baseline_checkpoint)
    vq = build_module(vq_checkpoint, args.vq_checkpoint)
    device = pick_device(args.accelerator, args.devices)
    scores_path = output_dir / f"scores_{args.dataset_split}.csv"
    with open(scores_path, "w", newline="") as scores_file:
        writer = csv.DictWriter(scores_file, fieldnames=SCORE_FIELDS)
        writer.writeheader()
        comparison = compare_models(
            baseline,
            vq,
            datamodule.dataloader(args.dataset_split),
            split.image_ids,
            args.n_best,
            args.n_worst,
            device,
            record=writer.writerow,
            rank_by=(args.rank_by,),
        )
    summary = write_outputs(comparison, args, output_dir)
    print_summary(summary, args.dataset_split)
    print(f"\nwrote {output_dir}/{{best,worst}}_results_{args.dataset_split}.png, {scores_path.name}")
    return summary


if __name__ == "__main__":
    cli.run(main, get_args_parser())
