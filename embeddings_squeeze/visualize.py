"""Compare a baseline and a VQ checkpoint on one split; draw the best and worst VQ results.

    embeddings-squeeze visualize --vq_checkpoint ./outputs/my_vq/version_0/last.ckpt \\
        --baseline_checkpoint ./outputs/my_baseline_baseline/version_0/last.ckpt \\
        --dataset_split test --n_best 5 --n_worst 5 --output_dir ./visualizations

(inside the package directory, ``python visualize.py ...`` runs the same command). Both models are
rebuilt from their checkpoint files alone: backbone, weights, dataset, image size, split and subset.
Writes best_results_<split>.png, worst_results_<split>.png, scores_<split>.csv (every image) and
summary_<split>.json.
"""

from __future__ import annotations

import argparse
import math

from embeddings_squeeze import cli
from embeddings_squeeze.config import (
    ComparisonConfig,
    DataConfig,
    ModelConfig,
    RuntimeConfig,
    add_arguments,
    from_namespace,
)


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.parser_for(__doc__)
    parser.add_argument(
        "--vq_checkpoint", required=True, help="the squeezed model's checkpoint (from squeeze)"
    )
    parser.add_argument(
        "--baseline_checkpoint", required=True, help="the baseline's checkpoint (from train-baseline)"
    )
    parser.add_argument(
        "--reference_checkpoint",
        help="optional: a continuous bottleneck (squeeze --quantizer_type none) scored beside them, so "
        "the VQ model's loss splits into the bottleneck's projections and the quantization alone",
    )
    add_arguments(parser, ComparisonConfig)
    add_arguments(
        parser,
        ModelConfig,
        only=("backbone", "dataset"),
        defaults={"backbone": None, "dataset": None},
        title="checks (refuse checkpoints trained with another --model or --dataset; default: theirs)",
    )
    data_flags = ("data_path", "subset_size", "split_seed", "batch_size", "num_workers")
    # the split seed and the subset size are the VQ checkpoint's unless given
    title = "data (--split_seed and --subset_size: the VQ checkpoint's unless given)"
    subset = {"help": "score at most this many images per split, a seeded random sample (default: as many as "
                      "the VQ model trained on)"}  # fmt: skip
    add_arguments(parser, DataConfig, only=data_flags, defaults={"split_seed": None}, title=title,
                  options={"subset_size": subset})  # fmt: skip
    add_arguments(parser, RuntimeConfig, only=("accelerator", "devices"))
    return parser


def _iou(value: float) -> str:
    return "absent" if math.isnan(value) else f"{value:.4f}"  # in neither ground truth nor prediction


def _difference(summary: dict, key: str) -> str:
    """A difference with its interval and its standing after Holm's adjustment."""
    from embeddings_squeeze.utils.intervals import bounds_text, verdict  # here: --help never loads torch

    standing = verdict(summary[f"{key}_p_holm"], summary[f"{key}_note"])
    return f"{summary[key]:+.4f} {bounds_text(summary[f'{key}_ci'], signed=True)}  ({standing})"


def print_summary(summary: dict, split: str) -> None:
    # here: --help never loads torch
    from embeddings_squeeze.utils.comparison import TITLES as titles
    from embeddings_squeeze.utils.intervals import bounds_text
    from embeddings_squeeze.utils.metrics import key_of, metric_named

    models = [name for name in titles if f"{name}_miou" in summary]
    print(
        f"\n{split} split: {summary['images']} images ({summary['images_scored']} scored), scored at each "
        "mask's own size; [95 % interval over these images, for these trained models: delta method, t]; "
        f"differences paired on the same images, {summary['multiplicity']}"
    )
    notes = sorted({note for key, note in summary.items() if key.endswith("_note") and note})
    for note in notes:
        print(f"interval note: {note}")
    print(f"{'':24}" + "".join(f"{titles[name]:>26}" for name in models))
    cells = [f"{summary[f'{name}_miou']:.4f} {bounds_text(summary[f'{name}_miou_ci'])}" for name in models]
    print(f"{'mIoU':24}" + "".join(f"{cell:>26}" for cell in cells))
    for label, suffix in (
        ("mIoU at the input size", "miou_input_size"),
        ("mean per-image IoU", "mean_image_iou"),
    ):
        print(f"{label:24}" + "".join(f"{summary[f'{name}_{suffix}']:>26.4f}" for name in models))
    for name in summary["baseline_class_iou"]:
        print(f"{'IoU ' + name:24}" + "".join(f"{_iou(summary[f'{m}_class_iou'][name]):>26}" for m in models))
    others = [metric_named(name) for name in summary["metrics"] if name != "iou"]
    for metric in others:
        key = key_of(metric)
        cells = [
            f"{summary[f'{name}_{key}']:.4f} {bounds_text(summary[f'{name}_{key}_ci'])}" for name in models
        ]
        print(f"{metric.title:24}" + "".join(f"{cell:>26}" for cell in cells))
    print(f"VQ - baseline mIoU: {_difference(summary, 'miou_difference')}")
    for metric in others:
        print(f"VQ - baseline {metric.title}: {_difference(summary, f'{key_of(metric)}_difference')}")
    if "reference" in models:
        quantization = _difference(summary, "miou_difference_vs_reference")
        print(f"VQ - continuous mIoU (the quantization alone): {quantization}")
        projections = _difference(summary, "reference_miou_difference")
        print(f"continuous - baseline mIoU (the projections): {projections}")
    rate = summary["rate"]
    bits = f"{rate['coding']}): "
    if "fixed_bits_per_image" in rate:
        bits += f"fixed {rate['fixed_bits_per_image']:.0f} bits, "
    if "entropy_bits_per_image" in rate:
        bits += f"entropy {rate['entropy_bits_per_image']:.1f} bits (this split's own statistics), "
    print(
        f"\nrate per image ({rate['quantizer_type']}, {rate['positions_per_image']} grid positions, {bits}"
        f"coded {rate['coded_bits_per_image']:.1f} bits (the coder's model), "
        f"payload {rate['payload_bytes_mean']:.1f} bytes mean, {rate['header_bytes']} of them header "
        f"({rate['payload_bits_per_pixel']:.4f} bpp); "
        f"float32 embeddings {rate['float32_bits_per_image'] // 8} bytes "
        f"({rate['compression_vs_float32_payload']:.0f}x smaller as payload)"
    )
    floor = summary["task_floor"]
    print(
        "task floor (the baseline's own mask sent losslessly, its mIoU exactly): "
        f"PNG {floor['mask_png']['bytes_mean']:.0f}, WebP {floor['mask_webp']['bytes_mean']:.0f}, "
        f"context coder {floor['mask_context']['bytes_mean']:.0f} bytes per image mean; VQ payload "
        f"{rate['payload_bytes_mean'] / floor['mask_context']['bytes_mean']:.2f}x the context-coded mask"
    )
    if "codes" in summary:
        codes = summary["codes"]
        size, top = codes["alphabet_size"], codes["most_used"][0]
        mostly = (
            f", mostly {top['dominant_class']} (purity {top['purity']:.2f})"
            if top["purity"] is not None
            else ""
        )
        print(
            f"codes: {size - codes['split_dead_codes']} of {size} sent on this split, perplexity "
            f"{codes['split_perplexity']:.1f} (training split: {size - codes['training_dead_codes']} sent, "
            f"perplexity {codes['training_perplexity']:.1f}); the commonest, code {top['code']}: "
            f"{top['share']:.1%} of the grid cells{mostly}"
        )
    for warning in summary["warnings"]:
        print(warning)


def main(args: argparse.Namespace) -> dict:
    # imported here, after parsing: --help and flag mistakes answer without loading the training stack
    from embeddings_squeeze.engine.compare import compare

    view = from_namespace(ComparisonConfig, args)
    summary = compare(
        args.baseline_checkpoint, args.vq_checkpoint, args.backbone, from_namespace(DataConfig, args),
        args.dataset, from_namespace(RuntimeConfig, args), view, args.reference_checkpoint,
    )  # fmt: skip
    print_summary(summary, view.dataset_split)
    print_written(view, summary)
    return summary


def print_written(view: ComparisonConfig, summary: dict) -> None:
    split = view.dataset_split
    written = f"{{best,worst}}_results_{split}.png, scores_{split}.csv, summary_{split}.json"
    if "codes" in summary:
        written += f", codes_{{best,worst}}_{split}.png, code_atlas_{split}.png, codes_{split}.csv"
    print(f"\nwrote {view.output_dir}/{written}, index.html (all of it on one page)")


if __name__ == "__main__":
    cli.run(main, get_args_parser())
