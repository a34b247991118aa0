"""The rows a sweep writes, as plain values: a squeezed model's, a baseline's with its floor and oracle
rows, and every seed's baseline on images sent with a codec. Intervals are added when the rows are
collected (``utils/sweep_statistics.py``), from the per-image statistics each job saves beside them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from embeddings_squeeze.config import QuantizerConfig
from embeddings_squeeze.engine.evaluation import BaselinePass, CodecPass
from embeddings_squeeze.models.quantizers import quantizer_class, quantizer_values, run_label
from embeddings_squeeze.utils.columns import RATE_COLUMNS, Kind
from embeddings_squeeze.utils.records import ComparisonReport, SplitScores

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


def squeezed_row(
    name: str,
    quantizer: QuantizerConfig,
    seed: int,
    report: ComparisonReport,
    seconds: float | None,
) -> dict:
    """A squeezed model's row from its comparison with its seed's baseline."""
    axis = quantizer_class(quantizer.quantizer_type).sweep_axis
    result = report.result
    squeezed, baseline = result.models["squeezed"], result.models["baseline"]
    others = squeezed.other_values()
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
        **others,
        **{f"delta_{key}": result.difference("squeezed", "baseline", key).estimate.value for key in others},
    }
    row["training_seconds"] = rounded(seconds)
    row.update({f"iou_{k}": v for k, v in squeezed.class_iou.items()})
    return row


def baseline_row(name: str, seed: int, checkpoint: Path, scores: SplitScores, trained: dict) -> dict:
    """A seed's baseline: its scores, how it trained (``trained``: ``epochs_trained``, ``converged``,
    ``seconds``, None when trained earlier) and whether it is degenerate."""
    return {"name": name, "kind": Kind.BASELINE, "configuration": "baseline", "seed": seed,
            "checkpoint": str(checkpoint), "epochs_trained": trained["epochs_trained"],
            "converged": trained["converged"], "miou": scores["miou"].value,
            "degenerate": scores.degenerate, "delta_miou": 0.0,
            "training_seconds": rounded(trained["seconds"]),
            **scores.other_values(),
            **{f"iou_{k}": v for k, v in scores.class_iou.items()}}  # fmt: skip


def floor_rows(measured: BaselinePass, seed: int) -> list[dict]:
    """The baseline's masks sent losslessly (its mIoU, exactly), the ground truth's sizes and the grid
    oracles, measured in the baseline's scoring pass."""
    scores, rows = measured.scores, []
    for configuration, entry in measured.floor.items():
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
            row.update(kind=Kind.FLOOR, miou=scores["miou"].value, delta_miou=0.0, **scores.other_values())
        elif configuration.startswith("gt_mask_"):  # for information: not scored against itself
            row.update(kind=Kind.FLOOR_GT)
        else:
            row.update(kind=Kind.ORACLE, codec="context", miou=entry["miou"],
                       delta_miou=entry["miou"] - scores["miou"].value,
                       **{f"iou_{k}": v for k, v in entry["class_iou"].items()})  # fmt: skip
        rows.append(row)
    return rows


def input_row(name: str, seed: int, codec: str, quality: int, measured: CodecPass, baseline: dict) -> dict:
    """A seed's baseline on images sent as ``codec`` at ``quality`` (``measured``: the codec's pass),
    against that baseline on the images themselves (``baseline``: its row)."""
    scores = measured.scores[seed]
    others = scores.other_values()
    return {
        "name": name,
        "kind": Kind.INPUT,
        "configuration": f"{codec.lower()}_q{quality}",
        "codec": codec,
        "quality": quality,
        "seed": seed,
        "payload_bytes_per_image": measured.payload_bytes_mean,
        "amortised_bytes_per_image": measured.payload_bytes_mean,
        "header_bytes": measured.header_bytes,
        "miou": scores["miou"].value,
        "baseline_miou": baseline["miou"],
        "delta_miou": scores["miou"].value - baseline["miou"],
        **others,
        **{f"delta_{key}": value - baseline[key] for key, value in others.items()},
        **{f"iou_{k}": v for k, v in scores.class_iou.items()},
    }
