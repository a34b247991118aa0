"""A comparison's report (``utils/records.py``) as the lines the console shows; the commands print them."""

from __future__ import annotations

import math

from embeddings_squeeze.utils.metrics import key_of, metric_named
from embeddings_squeeze.utils.records import TITLES, ComparisonReport, ComparisonResult

WIDTH, LABEL = 26, 24  # a model's column, the row label


def summary_lines(report: ComparisonReport) -> list[str]:
    """The scores table with intervals, the paired differences, the rate, the task floor, the codes and
    the warnings."""
    return [
        *_scores(report),
        *_differences(report.result),
        "",
        _rate(report.rate),
        *([_floor(report.rate, report.task_floor)] if report.task_floor is not None else []),
        *([_codes(report.codes)] if report.codes is not None else []),
        *report.warnings,
    ]


def console_text(report: ComparisonReport, output_dir: str) -> str:
    """The report's lines, then what the comparison wrote to ``output_dir``, in one line."""
    split = report.split
    written = f"{{best,worst}}_results_{split}.png, scores_{split}.csv, summary_{split}.json"
    if report.codes is not None:
        written += f", codes_{{best,worst}}_{split}.png, code_atlas_{split}.png, codes_{split}.csv"
    lines = [
        *summary_lines(report),
        "",
        f"wrote {output_dir}/{written}, index.html (all of it on one page)",
    ]
    return "\n".join(lines)


def _row(label: str, cells: list[str]) -> str:
    return f"{label:{LABEL}}" + "".join(f"{cell:>{WIDTH}}" for cell in cells)


def _iou(value: float) -> str:
    return "absent" if math.isnan(value) else f"{value:.4f}"  # in neither ground truth nor prediction


def _scores(report: ComparisonReport) -> list[str]:
    result = report.result
    models = result.models.values()
    lines = [
        "",
        f"{report.split} split: {result.images} images ({result.images_scored} scored), scored at each "
        "mask's own size; [95 % interval over these images, for these trained models: delta method, t]; "
        f"{report.pairing}, {result.multiplicity}",
    ]
    lines += [f"interval note: {note}" for note in result.notes()]
    lines.append(_row("", [TITLES[model.role] for model in models]))
    lines.append(_row("mIoU", [model["miou"].text() for model in models]))
    lines.append(_row("mIoU at the input size", [f"{model.miou_input_size:.4f}" for model in models]))
    lines.append(_row("mean per-image IoU", [f"{model.mean_image_iou:.4f}" for model in models]))
    for name in result.models["baseline"].class_iou:
        lines.append(_row(f"IoU {name}", [_iou(model.class_iou[name]) for model in models]))
    for metric in _others(result):
        lines.append(_row(metric.title, [model[key_of(metric)].text() for model in models]))
    return lines


def _others(result: ComparisonResult) -> list:
    return [metric_named(name) for name in result.metrics if name != "iou"]


def _differences(result: ComparisonResult) -> list[str]:
    lines = [f"VQ - baseline mIoU: {result.difference('squeezed', 'baseline').text()}"]
    for metric in _others(result):
        difference = result.difference("squeezed", "baseline", key_of(metric))
        lines.append(f"VQ - baseline {metric.title}: {difference.text()}")
    if "reference" in result.models:
        quantization = result.difference("squeezed", "reference").text()
        lines.append(f"VQ - continuous mIoU (the quantization alone): {quantization}")
        projections = result.difference("reference", "baseline").text()
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
