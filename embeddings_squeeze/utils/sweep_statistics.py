"""The sweep's intervals and verdicts, from each row's per-image statistics (no model, no file).

Every row is paired with its own seed's baseline on the same test images, and a squeezed row also
with its seed's continuous reference; a configuration's seeds are combined as ``utils/intervals.py``
says (the seeds' own variance included, not averaged bounds). Holm's adjustment runs over every
mIoU difference the sweep reports (against baselines and references), the per-seed rows as one
family and the means over seeds as another, so "significant" holds for the sweep as a whole.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from embeddings_squeeze.utils import intervals
from embeddings_squeeze.utils.columns import Kind, averaged, by_configuration, is_number
from embeddings_squeeze.utils.metrics import Metric, key_of

Statistics = dict[str, torch.Tensor]  # per-image statistics of one row's model, by statistics_key
TESTED = ("delta_miou", "delta_miou_vs_reference")  # the differences whose significance is claimed
# rows not compared with their baseline by an interval: the baseline itself, its own masks sent
# losslessly (its scores exactly), and the oracles (the ground truth coarsened, for information)
UNPAIRED = (Kind.BASELINE, Kind.FLOOR, Kind.ORACLE)


def _columns(column: str, found: intervals.Interval) -> dict:
    """``<column>`` (the interval's own estimate, so the two always agree), ``<column>_low``/``_high``
    (None when none is stated) and, for a difference, its p-value."""
    columns = {column: found.estimate, f"{column}_low": found.low, f"{column}_high": found.high}
    if column in TESTED:
        columns[f"{column}_p"] = found.p_value
    return columns


def _intervals(
    row: dict,
    runs: list[Statistics],
    baselines: list[Statistics] | None,
    references: list[Statistics] | None,
    metrics: list[Metric],
) -> dict:
    """The interval columns of ``row`` (one run per seed): each metric's it reports, each one's
    difference from the baselines, mIoU's from the references; ``interval_note`` says why one of
    mIoU's has none."""
    columns, notes = {}, []
    for metric in metrics:
        key = metric.statistics_key
        if key_of(metric) not in row or not all(key in run for run in runs):
            continue
        found = intervals.interval([run[key] for run in runs], metric)
        columns.update(_columns(key_of(metric), found))
        if metric.name == "iou":
            notes.append(found.note)
        if baselines is not None:
            paired = intervals.interval([run[key] for run in runs], metric, [b[key] for b in baselines])
            columns.update(_columns(f"delta_{key_of(metric)}", paired))
            if metric.name == "iou":
                notes.append(paired.note)
    if references is not None:
        iou = next(metric for metric in metrics if metric.name == "iou")
        paired = intervals.interval(
            [run["confusion"] for run in runs], iou, [r["confusion"] for r in references]
        )
        columns.update(_columns("delta_miou_vs_reference", paired))
        notes.append(paired.note)
    columns["interval_note"] = next((note for note in notes if note), None)
    return columns


def with_intervals(
    rows: list[dict],
    statistics: dict[str, Statistics],
    metrics: list[Metric],
    reference_of: Callable[[dict], str | None],
) -> list[dict]:
    """Every row that has statistics (``statistics[row name]``) with its interval columns: against
    ``baseline_seed<S>`` of its seed, and against ``reference_of(row)`` where that has statistics."""
    measured = []
    for row in rows:
        own = statistics.get(row["name"])
        if own is None:
            missing = "no per-image statistics (scored by an earlier release): sweep into a new --output_dir"
            measured.append({**row, "interval_note": missing} if "miou" in row else row)
            continue
        baseline = statistics.get(f"baseline_seed{row['seed']}")
        paired = None if row["kind"] in UNPAIRED or baseline is None else [baseline]
        reference = statistics.get(reference_of(row) or "")
        references = [reference] if reference else None
        measured.append({**row, **_intervals(row, [own], paired, references, metrics)})
    return measured


def _mean_and_std(entry: dict, members: list[dict], keys) -> None:
    """``entry[key]`` and ``entry[key_std]``: mean and standard deviation of the members' numbers, for
    the keys every member has a number for (NaN among them gives NaN)."""
    for key in keys:
        values = [member[key] for member in members if is_number(member.get(key))]
        if len(values) == len(members):
            entry[key] = float(np.mean(values))
            entry[f"{key}_std"] = float(np.std(values, ddof=1))


def seed_means(
    rows: list[dict],
    statistics: dict[str, Statistics],
    metrics: list[Metric],
    reference_of: Callable[[dict], str | None],
) -> list[dict]:
    """One row per configuration with several seeds: the mean and standard deviation over seeds of
    every averaged column, and intervals over seeds and images from the members' statistics."""
    means = []
    kinds = (Kind.BASELINE, Kind.SQUEEZED, Kind.INPUT, Kind.FLOOR, Kind.FLOOR_GT, Kind.ORACLE)
    for configuration, members in by_configuration(rows, kinds).items():
        if len(members) < 2:
            continue
        first = members[0]
        entry = {
            "name": f"{configuration}_mean",
            "kind": first["kind"] + Kind.MEAN,
            "configuration": configuration,
            **{key: first.get(key) for key in ("quantizer", "setting", "value", "codec", "quality")},
            "seeds": len(members),
        }
        _mean_and_std(entry, members, averaged())
        if "converged" in first:  # baselines: how many seeds converged before their cap
            entry["converged"] = f"{sum(bool(member['converged']) for member in members)} of {len(members)}"
        runs = [statistics.get(member["name"]) for member in members]
        if all(run is not None for run in runs):
            baselines = [statistics.get(f"baseline_seed{member['seed']}") for member in members]
            paired = first["kind"] not in UNPAIRED and all(b is not None for b in baselines)
            references = [statistics.get(reference_of(member) or "") for member in members]
            compared = all(r is not None for r in references)
            entry.update(_intervals(entry, runs, baselines if paired else None,
                                    references if compared else None, metrics))  # fmt: skip
        means.append(entry)
    return means


def adjust(rows: list[dict]) -> str:
    """Holm's adjustment (in place) over every tested mIoU difference of ``rows``, the per-seed rows and
    the means over seeds as two families (the sentences quote one or the other): ``<difference>_p_holm``
    and ``delta_significant`` / ``delta_vs_reference_significant``; returns the rule in words."""
    sizes = []
    for means in (False, True):
        family = [row for row in rows if row["kind"].endswith(Kind.MEAN) == means]
        tested = [(row, column) for row in family for column in TESTED if row.get(f"{column}_p") is not None]
        adjusted = intervals.holm([row[f"{column}_p"] for row, column in tested])
        for (row, column), p_value in zip(tested, adjusted):
            row[f"{column}_p_holm"] = p_value
            flag = "delta_significant" if column == "delta_miou" else "delta_vs_reference_significant"
            row[flag] = intervals.significant(p_value)
        sizes.append(len(tested))
    rule = f"Holm over the sweep's {sizes[0]} per-seed mIoU differences"
    return rule + (f", and apart over its {sizes[1]} differences of seed means" if sizes[1] else "")
