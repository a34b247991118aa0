"""Tables, the rate-quality plot and the self-contained HTML report of a sweep.

Every comparison pairs a row with its own seed's baseline: rate at equal quality is measured per
seed against that seed's baseline, and seeds are then combined (``utils/sweep_statistics.py``).
Renderers take the rows as they come: a score without an interval, an interval beside its estimate,
a degenerate model or baseline, one point or none draw and print without failing.
"""

from __future__ import annotations

import csv
import math
import statistics as stats
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embeddings_squeeze.utils import intervals, pages
from embeddings_squeeze.utils.columns import (
    Kind,
    by_configuration,
    is_number,
    method_and_setting,
    ordered,
    reported,
)
from embeddings_squeeze.utils.files import write_json
from embeddings_squeeze.utils.rate_quality import QUALITY_LEVELS, method_summaries

CURVE_KINDS = (Kind.SQUEEZED, Kind.INPUT)  # rows that form curves; floor and oracle rows are single points
POINT_KINDS = (Kind.FLOOR, Kind.ORACLE)
FLOOR_REFERENCE = "mask_context"  # the cheapest lossless floor row the sentences compare with
ANCHORS = ("JPEG", "WEBP")  # the curves BD-rates are taken against


def _is_point(row: dict, seed: int) -> bool:
    """Whether ``row`` is a point of one of ``seed``'s methods."""
    return (
        row.get("seed") == seed and row["kind"] in (*CURVE_KINDS, *POINT_KINDS) and is_number(row.get("miou"))
    )


def method_points(rows: list[dict], seed: int) -> dict[str, list[tuple[float, float]]]:
    """One seed's methods and their (bytes per image, mIoU) points: each quantizer type's curve,
    each image codec's curve, and every floor and oracle row."""
    methods = defaultdict(list)
    for row in (row for row in rows if _is_point(row, seed)):
        methods[method_and_setting(row)[0]].append((row["payload_bytes_per_image"], row["miou"]))
    return methods


def point_names(rows: list[dict], seed: int) -> dict[tuple[float, float], str]:
    """The points of ``method_points`` by their rows' names."""
    return {
        (row["payload_bytes_per_image"], row["miou"]): row["name"] for row in rows if _is_point(row, seed)
    }


def resolution(rows: list[dict], seed: int) -> dict[str, float | None]:
    """Per method of one seed, the widest 95 % interval of its points' difference from the baseline
    (None when a point has none): what a BD-rate's shared mIoU range must exceed."""
    widest: dict[str, float | None] = {}
    for row in rows:
        if row.get("seed") != seed or row["kind"] not in CURVE_KINDS:
            continue
        method = method_and_setting(row)[0]
        low, high = row.get("delta_miou_low"), row.get("delta_miou_high")
        if low is None or high is None or (method in widest and widest[method] is None):
            widest[method] = None
        else:
            widest[method] = max(high - low, widest.get(method, 0.0))
    return widest


def rate_at_quality(rows: list[dict]) -> list[dict]:
    """Per seed and method: bytes at 90/95/99 % of that seed's baseline mIoU and the standing against
    JPEG and WebP (nothing for a seed whose baseline is degenerate: a share of its mIoU means
    nothing); then, with several seeds, each method's mean over seeds and how many seeds reach each
    quality."""
    baselines = [row for row in rows if row["kind"] == Kind.BASELINE]
    per_seed = []
    for baseline in baselines:
        seed = baseline["seed"]
        if baseline.get("degenerate") or not is_number(baseline.get("miou")) or not baseline["miou"] > 0:
            why = baseline.get("degenerate") or "no score"
            per_seed.append({"name": f"baseline_seed{seed}_front", "kind": Kind.METHOD, "seed": seed,
                             "method": "(every method)", "reason": f"the seed's baseline {why}"})  # fmt: skip
            continue
        points, names = method_points(rows, seed), point_names(rows, seed)
        summaries = method_summaries(points, baseline["miou"], ANCHORS, resolution(rows, seed), names)
        for entry in summaries:
            per_seed.append(
                {"name": f"{entry['method']}_front_seed{seed}", "kind": Kind.METHOD, "seed": seed, **entry}
            )
    if len(baselines) < 2:
        return per_seed
    groups = defaultdict(list)
    for entry in per_seed:
        if "points" in entry:
            groups[entry["method"]].append(entry)
    return per_seed + [_method_mean(method, members, len(baselines)) for method, members in groups.items()]


def _method_mean(method: str, members: list[dict], seeds: int) -> dict:
    """A method's rate at equal quality over seeds: each quality's bytes averaged over the seeds only
    when every seed reaches it, with how many do (``bytes_at_<P>_seeds``)."""
    entry = {"name": f"{method}_front_mean", "kind": Kind.METHOD + Kind.MEAN, "method": method,
             "seeds": len(members), "points": stats.fmean(m["points"] for m in members)}  # fmt: skip
    for percent in QUALITY_LEVELS:
        key = f"bytes_at_{percent}"
        reached = [m for m in members if m[key] is not None]
        entry[f"{key}_seeds"] = f"{len(reached)} of {seeds}"
        entry[key] = stats.fmean(m[key] for m in reached) if len(reached) == seeds else None
        entry[f"{key}_upper_bound"] = any(m[f"{key}_upper_bound"] for m in reached)
    for key in members[0]:
        values = [m.get(key) for m in members]
        if key.startswith("bd_rate_vs_") and all(is_number(v) for v in values):
            entry[key] = float(np.mean(values))
            entry[f"{key}_std"] = float(np.std(values, ddof=1))
    return entry


def _bytes(entry: dict, percent: int) -> str:
    """bytes_at_<percent> as the tables show it: ``<=`` for an upper bound, and for a mean over seeds
    how many seeds reach it when not all do."""
    key = f"bytes_at_{percent}"
    value = entry.get(key)
    reached = entry.get(f"{key}_seeds")
    if value is None:
        return f"{reached} seeds reach it" if reached and not reached.startswith("0 ") else "never"
    return ("<= " if entry.get(f"{key}_upper_bound") else "") + f"{value:,.1f}"


def _difference(row: dict, column: str, against: str) -> str:
    """A difference with its interval and its standing after Holm's adjustment."""
    bounds = intervals.bounds_text(_bounds(row, column), signed=True)
    standing = intervals.verdict(row.get(f"{column}_p_holm"), _note(row, column))
    return f"{row[column]:+.3f} mIoU {bounds} against {against} ({standing})"


def _bounds(row: dict, column: str) -> list[float] | None:
    low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
    return None if low is None or high is None else [low, high]


def _note(row: dict, column: str) -> str | None:
    """Why a difference of ``row`` has no interval (None when it has one)."""
    return None if _bounds(row, column) is not None else (row.get("interval_note") or "none stated")


def sentences(rows: list[dict], aggregates: list[dict], rule: str) -> list[str]:
    """One sentence per squeezed configuration (seeds combined, each against its own seed's baseline):
    its bytes against the lossless mask, its quality, and whether its differences are shown to be
    real (``rule``: the multiplicity control, in words)."""
    floors = by_configuration(rows, (Kind.FLOOR,)).get(FLOOR_REFERENCE, [])
    floor_bytes = stats.fmean(r["payload_bytes_per_image"] for r in floors) if floors else None
    means = {entry["configuration"]: entry for entry in aggregates}
    degenerate = sorted({r["degenerate"] for r in rows if r["kind"] == Kind.BASELINE and r.get("degenerate")})
    lines = []
    for configuration, members in by_configuration(rows).items():
        seeds = len(members)
        size = stats.fmean(r["payload_bytes_per_image"] for r in members)
        where = f"{size:.0f} bytes per image"
        if floor_bytes:
            where = f"{size / floor_bytes:.2f}x the bytes of the lossless (context-coded) mask"
        parts = [f"{configuration}: {where}"]
        shares = [
            r["miou"] / r["baseline_miou"]
            for r in members
            if is_number(r.get("miou")) and r.get("baseline_miou")
        ]
        shares = [share for share in shares if math.isfinite(share)]  # no share of an undefined mIoU
        if degenerate:
            parts.append(f"no share of the baseline's mIoU: the baseline {degenerate[0]}")
        elif len(shares) == seeds:
            parts[0] += f" at {_percent_reached(stats.fmean(shares))} % of the baseline mIoU"
            lowest, highest = _percent_reached(min(shares)), _percent_reached(max(shares))
            if lowest != highest:  # beside the mean rows' count of seeds reaching each level
                parts[0] += f" (seeds {lowest} to {highest} %)"
        row = members[0] if seeds == 1 else means.get(configuration)
        over = "" if seeds == 1 else f" over {seeds} seeds"
        # the headline: against the model's own continuous reference, the quantization alone
        if row is not None and is_number(row.get("delta_miou_vs_reference")):
            parts.append(_difference(row, "delta_miou_vs_reference", "its continuous reference") + over)
        if row is not None and is_number(row.get("delta_miou")):
            against = "its baseline" if seeds == 1 else "each seed's baseline"
            parts.append(_difference(row, "delta_miou", against) + over)
        reasons = sorted({r["degenerate"] for r in members if r.get("degenerate")})
        parts += [f"warning: it {reason}, so its mIoU means little" for reason in reasons]
        lines.append("; ".join(parts) + ".")
    unfinished = [r for r in rows if r["kind"] == Kind.BASELINE and r.get("converged") is False]
    for row in unfinished:
        lines.append(
            f"warning: baseline_seed{row['seed']} did not converge within its {row.get('epochs_trained')} "
            "epochs (its validation loss was still falling), so differences against it may be understated; "
            "raise --baseline_epochs."
        )
    if lines:
        lines.append(
            f"Intervals: 95 %, over the test images and, for several seeds, over seeds; significance: {rule}."
        )
    return lines


@dataclass(frozen=True)
class SweepTables:
    """What a sweep's tables hold: the measured rows with their intervals, the rows not measured (with
    their reasons), the seed aggregates, the methods' rates at equal quality, and one sentence per
    squeezed configuration."""

    rows: list[dict]
    unmeasured: list[dict]
    aggregates: list[dict]
    methods: list[dict]
    sentences: list[str]


def write_tables(output_dir: Path, tables: SweepTables) -> None:
    """sweep.csv (one row per measured row, the failed and missing rows with their reasons, then the
    seed aggregates and the method rows of rate at equal quality) and sweep.json (the same, plus one
    sentence per squeezed configuration)."""
    write_json(
        output_dir / "sweep.json",
        {"rows": tables.rows, "unmeasured": tables.unmeasured, "aggregates": tables.aggregates,
         "rate_at_quality": tables.methods, "sentences": tables.sentences},
    )  # fmt: skip
    table = tables.rows + tables.unmeasured + tables.aggregates + tables.methods
    columns = ordered(key for row in table for key in row)
    with open(output_dir / "sweep.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table)


def _method_rows(methods: list[dict]) -> list[dict]:
    """Rate at equal quality, with upper bounds written as such."""
    shown = []
    for entry in methods:
        row = {"method": entry["method"], "seed": entry.get("seed", "mean"), "points": entry.get("points")}
        if "reason" in entry:
            row["reason"] = entry["reason"]
        else:
            row.update({f"bytes_at_{p}": _bytes(entry, p) for p in QUALITY_LEVELS})
            row.update({key: entry[key] for key in entry if key.startswith(("bd_rate_vs_", "standing_vs_"))})
        shown.append(row)
    return shown


def write_report(
    path: Path,
    title: str,
    settings: dict,
    tables: SweepTables,
    figures: list[tuple[Path, str]],
    run_pages: list[tuple[str, str]] = (),
) -> None:
    """One HTML file with every figure embedded, so it opens from disk with no server: the plot and
    the verdicts first (after the rows that could not be measured, if any), then the tables (sortable),
    the figures with links to the pages of the runs shown (``run_pages``: href, text), and the settings
    last."""
    columns = [name for name in reported() if any(name in row for row in tables.rows)]
    kept = {*columns, "seeds"}
    aggregate_columns = ordered(key for row in tables.aggregates for key in row
                                if key in kept or key.removesuffix("_std") in columns)  # fmt: skip
    methods = _method_rows(tables.methods)
    plot, *others = figures
    page = pages.render(
        "sweep_report.html",
        title,
        tables=tables,
        plot=plot,
        methods=methods,
        method_columns=ordered(key for row in methods for key in row),
        columns=columns,
        aggregate_columns=aggregate_columns,
        figures=others,
        run_pages=run_pages,
        settings=[{"setting": key, "value": value} for key, value in settings.items()],
    )
    path.write_text(page)


def _percent_reached(share: float) -> str:
    """``share`` as a percentage rounded down to a tenth, so a sentence never claims a level (95 %) the
    table's bytes_at columns say was not reached (94.96 % reads 94.9, not 95.0)."""
    return f"{math.floor(1000 * share + 1e-9) / 10:.1f}"  # + 1e-9: 0.95 is 0.94999... as a float
