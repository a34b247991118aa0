"""The rows a sweep writes, as plain values: a squeezed model's, a baseline's with its floor and oracle
rows, and every seed's baseline on images sent with a codec. Intervals are added when the rows are
collected (``utils/sweep_statistics.py``), from the per-image statistics each job saves beside them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from embeddings_squeeze.config import QuantizerConfig
from embeddings_squeeze.models.quantizers import quantizer_class, quantizer_values, run_label
from embeddings_squeeze.utils.columns import RATE_COLUMNS, Kind
from embeddings_squeeze.utils.comparison import degenerate
from embeddings_squeeze.utils.metrics import key_of
from embeddings_squeeze.utils.records import ComparisonReport

log = logging.getLogger(__name__)


def finished(results: Path, name: str) -> dict | None:
    """The row an earlier job measured (None: not yet)."""
    path = results / f"{name}.json"
    if path.is_file():
        log.info("skipping %s: finished earlier (%s)", name, path)
        return json.loads(path.read_text())
    return None


def rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def metric_values(scores: dict, metrics, prefix: str = "") -> dict:
    """The values of the metrics beyond IoU of ``scores`` (``Scores.report`` keys, under ``prefix``)."""
    return {key_of(metric): scores[f"{prefix}{key_of(metric)}"] for metric in metrics[1:]}


def squeezed_row(
    name: str,
    quantizer: QuantizerConfig,
    seed: int,
    report: ComparisonReport,
    seconds: float | None,
    metrics=(),
) -> dict:
    """A squeezed model's row from its comparison with its seed's baseline."""
    axis = quantizer_class(quantizer.quantizer_type).sweep_axis
    result = report.result
    squeezed, baseline = result.models["squeezed"], result.models["baseline"]
    others = [key_of(metric) for metric in list(metrics)[1:]]
    row = {
        "name": name,
        "kind": Kind.SQUEEZED,
        "configuration": run_label(quantizer),
        "quantizer": quantizer.quantizer_type,
        "setting": axis,
        "value": quantizer_values(quantizer)[axis] if axis else None,
        "seed": seed,
        **{column.name: report.rate.get(column.rate_key) for column in RATE_COLUMNS},
        "miou": squeezed["miou"].value,
        "miou_input_size": squeezed.miou_input_size,
        "baseline_miou": baseline["miou"].value,
        "delta_miou": result.difference("squeezed", "baseline").estimate.value,
        "degenerate": squeezed.degenerate,
        **{key: squeezed[key].value for key in others},
        **{f"delta_{key}": result.difference("squeezed", "baseline", key).estimate.value for key in others},
    }
    row["training_seconds"] = rounded(seconds)
    row.update({f"iou_{k}": v for k, v in squeezed.class_iou.items()})
    return row


def baseline_row(name: str, seed: int, checkpoint: Path, scores: dict, trained: dict, metrics) -> dict:
    """A seed's baseline: its scores, how it trained (``trained``: ``epochs_trained``, ``converged``,
    ``seconds``, None when trained earlier) and whether it is degenerate."""
    return {"name": name, "kind": Kind.BASELINE, "configuration": "baseline", "seed": seed,
            "checkpoint": str(checkpoint), "epochs_trained": trained["epochs_trained"],
            "converged": trained["converged"], "miou": scores["miou"],
            "degenerate": degenerate(scores["confusions"].sum(dim=0), scores["class_names"]),
            "delta_miou": 0.0, "training_seconds": rounded(trained["seconds"]),
            **metric_values(scores, metrics),
            **{f"iou_{k}": v for k, v in scores["class_iou"].items()}}  # fmt: skip


def floor_rows(scores: dict, seed: int, metrics) -> list[dict]:
    """The baseline's masks sent losslessly (its mIoU, exactly), the ground truth's sizes and the grid
    oracles, measured in the baseline's scoring pass."""
    rows = []
    for configuration, entry in scores["floor"].items():
        row = {
            "name": f"{configuration}_seed{seed}",
            "configuration": configuration,
            "seed": seed,
            "codec": configuration.rsplit("_", 1)[1],
            "payload_bytes_per_image": entry["bytes_mean"],
            "amortised_bytes_per_image": entry["bytes_mean"],
            "payload_bytes_median": entry["bytes_median"],
            "header_bytes": entry["header_bytes"],
        }
        if configuration.startswith("mask_"):  # the baseline's own masks: its scores, exactly
            row.update(kind=Kind.FLOOR, miou=scores["miou"], delta_miou=0.0,
                       **metric_values(scores, metrics))  # fmt: skip
        elif configuration.startswith("gt_mask_"):  # for information: not scored against itself
            row.update(kind=Kind.FLOOR_GT)
        else:
            row.update(kind=Kind.ORACLE, codec="context", miou=entry["miou"],
                       delta_miou=entry["miou"] - scores["miou"],
                       **{f"iou_{k}": v for k, v in entry["class_iou"].items()})  # fmt: skip
        rows.append(row)
    return rows


def input_row(
    name: str, seed: int, codec: str, quality: int, measured: dict, baseline: dict, metrics
) -> dict:
    """A seed's baseline on images sent as ``codec`` at ``quality`` (``measured``: the codec's pass),
    against that baseline on the images themselves (``baseline``: its row)."""
    scores = measured["scores"][seed]
    return {
        "name": name,
        "kind": Kind.INPUT,
        "configuration": f"{codec.lower()}_q{quality}",
        "codec": codec,
        "quality": quality,
        "seed": seed,
        "payload_bytes_per_image": measured["payload_bytes_mean"],
        "amortised_bytes_per_image": measured["payload_bytes_mean"],
        "header_bytes": measured["header_bytes"],
        "miou": scores["miou"],
        "baseline_miou": baseline["miou"],
        "delta_miou": scores["miou"] - baseline["miou"],
        **metric_values(scores, metrics),
        **{f"delta_{key_of(m)}": scores[key_of(m)] - baseline[key_of(m)] for m in metrics[1:]},
        **{f"iou_{k}": v for k, v in scores["class_iou"].items()},
    }
