"""A comparison's summary (``engine/compare.py``) as the lines the console shows; the commands print them."""

from __future__ import annotations

import math

from embeddings_squeeze.utils.comparison import TITLES
from embeddings_squeeze.utils.intervals import bounds_text, verdict
from embeddings_squeeze.utils.metrics import key_of, metric_named

WIDTH, LABEL = 26, 24  # a model's column, the row label


def summary_lines(summary: dict, split: str) -> list[str]:
    """The scores table with intervals, the paired differences, the rate, the task floor, the codes and
    the warnings."""
    models = [name for name in TITLES if f"{name}_miou" in summary]
    return [
        *_scores(summary, split, models),
        *_differences(summary, models),
        "",
        _rate(summary["rate"]),
        _floor(summary["rate"], summary["task_floor"]),
        *([_codes(summary["codes"])] if "codes" in summary else []),
        *summary["warnings"],
    ]


def console_text(summary: dict, split: str, output_dir: str) -> str:
    """The summary's lines, then what the comparison wrote to ``output_dir``, in one line."""
    written = f"{{best,worst}}_results_{split}.png, scores_{split}.csv, summary_{split}.json"
    if "codes" in summary:
        written += f", codes_{{best,worst}}_{split}.png, code_atlas_{split}.png, codes_{split}.csv"
    lines = [
        *summary_lines(summary, split),
        "",
        f"wrote {output_dir}/{written}, index.html (all of it on one page)",
    ]
    return "\n".join(lines)


def _row(label: str, cells: list[str]) -> str:
    return f"{label:{LABEL}}" + "".join(f"{cell:>{WIDTH}}" for cell in cells)


def _iou(value: float) -> str:
    return "absent" if math.isnan(value) else f"{value:.4f}"  # in neither ground truth nor prediction


def _scores(summary: dict, split: str, models: list[str]) -> list[str]:
    lines = [
        "",
        f"{split} split: {summary['images']} images ({summary['images_scored']} scored), scored at each "
        "mask's own size; [95 % interval over these images, for these trained models: delta method, t]; "
        f"differences paired on the same images, {summary['multiplicity']}",
    ]
    notes = sorted({note for key, note in summary.items() if key.endswith("_note") and note})
    lines += [f"interval note: {note}" for note in notes]
    lines.append(_row("", [TITLES[name] for name in models]))
    lines.append(_row("mIoU", [_with_interval(summary, name, "miou") for name in models]))
    for label, suffix in (
        ("mIoU at the input size", "miou_input_size"),
        ("mean per-image IoU", "mean_image_iou"),
    ):
        lines.append(_row(label, [f"{summary[f'{name}_{suffix}']:.4f}" for name in models]))
    for name in summary["baseline_class_iou"]:
        lines.append(_row(f"IoU {name}", [_iou(summary[f"{model}_class_iou"][name]) for model in models]))
    for metric in _others(summary):
        lines.append(_row(metric.title, [_with_interval(summary, name, key_of(metric)) for name in models]))
    return lines


def _with_interval(summary: dict, model: str, key: str) -> str:
    return f"{summary[f'{model}_{key}']:.4f} {bounds_text(summary[f'{model}_{key}_ci'])}"


def _others(summary: dict) -> list:
    return [metric_named(name) for name in summary["metrics"] if name != "iou"]


def _difference(summary: dict, key: str) -> str:
    """A difference with its interval and its standing after Holm's adjustment."""
    standing = verdict(summary[f"{key}_p_holm"], summary[f"{key}_note"])
    return f"{summary[key]:+.4f} {bounds_text(summary[f'{key}_ci'], signed=True)}  ({standing})"


def _differences(summary: dict, models: list[str]) -> list[str]:
    lines = [f"VQ - baseline mIoU: {_difference(summary, 'miou_difference')}"]
    for metric in _others(summary):
        lines.append(f"VQ - baseline {metric.title}: {_difference(summary, f'{key_of(metric)}_difference')}")
    if "reference" in models:
        quantization = _difference(summary, "miou_difference_vs_reference")
        lines.append(f"VQ - continuous mIoU (the quantization alone): {quantization}")
        projections = _difference(summary, "reference_miou_difference")
        lines.append(f"continuous - baseline mIoU (the projections): {projections}")
    return lines


def _rate(rate: dict) -> str:
    bits = f"{rate['coding']}): "
    if "fixed_bits_per_image" in rate:
        bits += f"fixed {rate['fixed_bits_per_image']:.0f} bits, "
    if "entropy_bits_per_image" in rate:
        bits += f"entropy {rate['entropy_bits_per_image']:.1f} bits (this split's own statistics), "
    return (
        f"rate per image ({rate['quantizer_type']}, {rate['positions_per_image']} grid positions, {bits}"
        f"coded {rate['coded_bits_per_image']:.1f} bits (the coder's model), "
        f"payload {rate['payload_bytes_mean']:.1f} bytes mean, {rate['header_bytes']} of them header "
        f"({rate['payload_bits_per_pixel']:.4f} bpp); "
        f"float32 embeddings {rate['float32_bits_per_image'] // 8} bytes "
        f"({rate['compression_vs_float32_payload']:.0f}x smaller as payload)"
    )


def _floor(rate: dict, floor: dict) -> str:
    return (
        "task floor (the baseline's own mask sent losslessly, its mIoU exactly): "
        f"PNG {floor['mask_png']['bytes_mean']:.0f}, WebP {floor['mask_webp']['bytes_mean']:.0f}, "
        f"context coder {floor['mask_context']['bytes_mean']:.0f} bytes per image mean; VQ payload "
        f"{rate['payload_bytes_mean'] / floor['mask_context']['bytes_mean']:.2f}x the context-coded mask"
    )


def _codes(codes: dict) -> str:
    size, top = codes["alphabet_size"], codes["most_used"][0]
    mostly = (
        f", mostly {top['dominant_class']} (purity {top['purity']:.2f})" if top["purity"] is not None else ""
    )
    return (
        f"codes: {size - codes['split_dead_codes']} of {size} sent on this split, perplexity "
        f"{codes['split_perplexity']:.1f} (training split: {size - codes['training_dead_codes']} sent, "
        f"perplexity {codes['training_perplexity']:.1f}); the commonest, code {top['code']}: "
        f"{top['share']:.1%} of the grid cells{mostly}"
    )
