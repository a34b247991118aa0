"""Tables, the rate-quality plot and the self-contained HTML report of a sweep.

Every comparison pairs a row with its own seed's baseline: rate at equal quality is measured per
seed against that seed's baseline, and seeds are then summarised by mean and standard deviation.
"""

from __future__ import annotations

import csv
import html
import statistics
from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure

from embeddings_squeeze.utils import pages
from embeddings_squeeze.utils.columns import Kind, averaged, method_and_setting, ordered, reported
from embeddings_squeeze.utils.files import write_json
from embeddings_squeeze.utils.rate_quality import QUALITY_LEVELS, method_summaries

CURVE_KINDS = (Kind.SQUEEZED, Kind.INPUT)  # rows that form curves; floor and oracle rows are single points
POINT_KINDS = (Kind.FLOOR, Kind.ORACLE)
FLOOR_REFERENCE = "mask_context"  # the cheapest lossless floor row the sentences compare with
ANCHORS = ("JPEG", "WEBP")  # the curves BD-rates are taken against


def by_configuration(rows: list[dict], kinds=(Kind.SQUEEZED,)) -> dict[str, list[dict]]:
    """Rows of ``kinds`` grouped by configuration (the seeds of one setting)."""
    groups = defaultdict(list)
    for row in rows:
        if row["kind"] in kinds:
            groups[row["configuration"]].append(row)
    return groups


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _mean_and_std(entry: dict, members: list[dict], keys) -> None:
    """``entry[key]`` and ``entry[key_std]``: mean and standard deviation of the members' numbers."""
    for key in keys:
        values = [member[key] for member in members if _is_number(member.get(key))]
        if len(values) == len(members):
            entry[key] = statistics.fmean(values)
            entry[f"{key}_std"] = statistics.stdev(values)


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds of every configuration with several seeds."""
    summary = []
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
        summary.append(entry)
    return summary


def method_points(rows: list[dict], seed: int) -> dict[str, list[tuple[float, float]]]:
    """One seed's methods and their (bytes per image, mIoU) points: each quantizer type's curve,
    each image codec's curve, and every floor and oracle row."""
    methods = defaultdict(list)
    for row in rows:
        if row.get("seed") == seed and row["kind"] in (*CURVE_KINDS, *POINT_KINDS):
            methods[method_and_setting(row)[0]].append((row["payload_bytes_per_image"], row["miou"]))
    return methods


def rate_at_quality(rows: list[dict]) -> list[dict]:
    """Per seed and method: bytes at 90/95/99 % of that seed's baseline mIoU and the standing against
    JPEG and WebP; then, with several seeds, each method's mean and standard deviation."""
    baselines = {row["seed"]: row["miou"] for row in rows if row["kind"] == Kind.BASELINE}
    per_seed = []
    for seed, reference in baselines.items():
        for entry in method_summaries(method_points(rows, seed), reference, anchors=ANCHORS):
            per_seed.append(
                {"name": f"{entry['method']}_seed{seed}", "kind": Kind.METHOD, "seed": seed, **entry}
            )
    if len(baselines) < 2:
        return per_seed
    means = []
    groups = defaultdict(list)
    for entry in per_seed:
        groups[entry["method"]].append(entry)
    for method, members in groups.items():
        entry = {
            "name": f"{method}_mean",
            "kind": Kind.METHOD + Kind.MEAN,
            "method": method,
            "seeds": len(members),
        }
        numbers = [key for key, value in members[0].items() if _is_number(value) and key != "seed"]
        _mean_and_std(entry, members, numbers)
        for key in members[0]:
            if key.endswith("_upper_bound"):
                entry[key] = any(member[key] for member in members)
        means.append(entry)
    return per_seed + means


def _bytes(entry: dict, percent: int) -> str:
    value = entry.get(f"bytes_at_{percent}")
    if value is None:
        return "never"
    return ("<= " if entry.get(f"bytes_at_{percent}_upper_bound") else "") + f"{value:,.0f}"


def _difference(value: float, low: float | None, high: float | None, against: str) -> str:
    if low is None:
        return f"{value:+.3f} mIoU against {against}"
    verdict = "" if low > 0 or high < 0 else ": not significant"
    return f"{value:+.3f} mIoU [{low:+.3f}, {high:+.3f}] against {against}{verdict}"


def sentences(rows: list[dict], methods: list[dict]) -> list[str]:
    """One sentence per squeezed configuration (seeds averaged, each against its own seed's baseline):
    its bytes against the lossless mask, its quality, and whether its losses are real."""
    floors = by_configuration(rows, (Kind.FLOOR,)).get(FLOOR_REFERENCE, [])
    floor_bytes = statistics.fmean(r["payload_bytes_per_image"] for r in floors) if floors else None
    lines = []
    for configuration, members in by_configuration(rows).items():
        seeds = len(members)
        size = statistics.fmean(r["payload_bytes_per_image"] for r in members)
        quality = statistics.fmean(100 * r["miou"] / r["baseline_miou"] for r in members)
        where = f"{size:.0f} bytes per image"
        if floor_bytes:
            where = f"{size / floor_bytes:.2f}x the bytes of the lossless (context-coded) mask"
        parts = [f"{configuration}: {where} at {quality:.0f} % of the baseline mIoU"]
        if seeds == 1:
            row = members[0]
            parts.append(
                _difference(row["delta_miou"], row["delta_miou_low"], row["delta_miou_high"], "its baseline")
            )
            if row.get("delta_miou_vs_reference") is not None:
                low, high = row["delta_miou_vs_reference_low"], row["delta_miou_vs_reference_high"]
                parts.append(
                    _difference(row["delta_miou_vs_reference"], low, high, "the continuous bottleneck")
                )
        else:
            deltas = [r["delta_miou"] for r in members]
            real = sum(bool(r["delta_significant"]) for r in members)
            spread = f"{statistics.fmean(deltas):+.3f} +- {statistics.stdev(deltas):.3f}"
            parts.append(
                f"{spread} mIoU against each seed's baseline over {seeds} seeds ({real} significant)"
            )
        reasons = sorted({r["degenerate"] for r in members if r.get("degenerate")})
        parts += [f"warning: it {reason}, so its mIoU means little" for reason in reasons]
        lines.append("; ".join(parts) + ".")
    return lines


def write_tables(
    rows: list[dict], output_dir: Path, unmeasured: list[dict] = ()
) -> tuple[list[dict], list[dict], list[str]]:
    """sweep.csv (one row per measured row, the failed and missing rows with their reasons, then the
    seed aggregates and the method rows of rate at equal quality) and sweep.json (the same, plus one
    sentence per squeezed configuration)."""
    aggregates = aggregate(rows)
    methods = rate_at_quality(rows)
    summary_sentences = sentences(rows, methods)
    write_json(
        output_dir / "sweep.json",
        {"rows": rows, "unmeasured": list(unmeasured), "aggregates": aggregates, "rate_at_quality": methods,
         "sentences": summary_sentences},
    )  # fmt: skip
    table = rows + list(unmeasured) + aggregates + methods
    columns = ordered(key for row in table for key in row)
    with open(output_dir / "sweep.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table)
    return aggregates, methods, summary_sentences


def _points(members: list[dict], key: str, scale: float) -> list[tuple]:
    """(bytes, mIoU, lower error, upper error) per point of one curve, seeds of a setting averaged,
    sorted by bytes: errors are the standard deviation over seeds, or one seed's 95 % interval."""
    groups = defaultdict(list)
    for row in members:
        groups[method_and_setting(row)[1]].append(row)
    points = []
    for group in groups.values():
        mious = [r["miou"] for r in group]
        mean = statistics.fmean(mious)
        if len(group) > 1:
            low = high = statistics.stdev(mious)
        else:
            low = mean - group[0]["miou_low"] if group[0].get("miou_low") is not None else 0.0
            high = group[0]["miou_high"] - mean if group[0].get("miou_high") is not None else 0.0
        points.append((statistics.fmean(r[key] * scale for r in group), mean, low, high))
    return sorted(points)


def plot_rate_quality(rows: list[dict], title: str, path: Path, names: dict[str, str] | None = None) -> None:
    """mIoU against bytes per image (log x), with error bars (95 % intervals, or the spread over
    seeds): per quantizer its measured payloads (solid) and its entropy-coded size before framing
    (dashed, the coded bits), a line per image codec, the floor and oracle points, the baseline.
    ``names``: how the legend names each quantizer type (default: the type, upper case)."""
    figure = Figure(figsize=(11, 5.5), dpi=100)
    axis = figure.add_subplot()
    lines = defaultdict(list)
    for row in rows:
        if row["kind"] in CURVE_KINDS:
            lines[method_and_setting(row)[0]].append(row)
    colours = iter(f"C{i % 10}" for i in range(100))
    for name, members in sorted(lines.items()):
        colour = next(colours)
        if members[0]["kind"] == Kind.INPUT:
            curves = [("payload_bytes_per_image", 1, "-", f"{name} input + baseline")]
        else:
            shown = (names or {}).get(name, name.upper())
            curves = [
                ("payload_bytes_per_image", 1, "-", f"{shown} payload (measured)"),
                ("coded_bits_per_image", 1 / 8, "--", f"{shown} entropy-coded, before framing"),
            ]
        for key, scale, style, label in curves:
            xs, ys, lows, highs = zip(*_points(members, key, scale))
            axis.errorbar(xs, ys, yerr=[lows, highs], marker="o", capsize=3, linestyle=style, color=colour,
                          label=label)  # fmt: skip
    markers = iter("s^Dv<>pP*" * 4)
    for configuration, members in by_configuration(rows, POINT_KINDS).items():
        x, y, low, high = _points(members, "payload_bytes_per_image", 1)[0]
        if members[0]["kind"] == Kind.FLOOR:
            axis.errorbar(x, y, yerr=[[low], [high]], linestyle="none", marker=next(markers), color="black",
                          label=f"{configuration} (task floor: the baseline's mask, lossless)")  # fmt: skip
        else:
            axis.errorbar(x, y, yerr=[[low], [high]], linestyle="none", marker="x", color="grey")
            axis.annotate(f"oracle {configuration.rsplit('_', 1)[1]}", (x, y), textcoords="offset points",
                          xytext=(4, 4), fontsize=7, color="grey")  # fmt: skip
    baselines = [row for row in rows if row["kind"] == Kind.BASELINE]
    if baselines:
        mean = statistics.fmean(row["miou"] for row in baselines)
        label = "baseline, uncompressed features" + (
            f" (mean of {len(baselines)} seeds)" if len(baselines) > 1 else ""
        )
        axis.axhline(mean, color="black", linestyle=":", label=label)
        if len(baselines) == 1 and baselines[0].get("miou_low") is not None:
            axis.axhspan(baselines[0]["miou_low"], baselines[0]["miou_high"], color="black", alpha=0.08,
                         label="baseline's 95 % interval")  # fmt: skip
    axis.set_xscale("log")
    axis.set_xlabel("bytes per image (log scale)")
    axis.set_ylabel("mIoU (at each mask's own size)")
    axis.set_title(title, fontsize=10)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves, not on them
    figure.tight_layout()
    figure.savefig(path)


def _method_table(methods: list[dict]) -> str:
    """Rate at equal quality, with upper bounds written as such."""
    shown = []
    for entry in methods:
        row = {"method": entry["method"], "seed": entry.get("seed", "mean"), "points": entry.get("points")}
        row.update({f"bytes_at_{p}": _bytes(entry, p) for p in QUALITY_LEVELS})
        row.update({key: entry[key] for key in entry if key.startswith(("bd_rate_vs_", "standing_vs_"))})
        shown.append(row)
    columns = ordered(key for row in shown for key in row)
    return pages.table(shown, columns, sortable=True)


def write_report(
    path: Path,
    title: str,
    settings: dict,
    rows: list[dict],
    aggregates: list[dict],
    methods: list[dict],
    summary_sentences: list[str],
    figures: list[tuple[Path, str]],
    unmeasured: list[dict] = (),
    run_pages: list[tuple[str, str]] = (),
) -> None:
    """One HTML file with every figure embedded, so it opens from disk with no server: the plot and
    the verdicts first (after the rows that could not be measured, if any), then the tables (sortable),
    the figures with links to the pages of the runs shown (``run_pages``: href, text), and the settings
    last."""
    columns = [name for name in reported() if any(name in row for row in rows)]
    plot, *others = figures
    parts = [
        *(
            ["<h2>Not measured</h2>", pages.table(list(unmeasured), ["name", "kind", "reason"])]
            if unmeasured
            else []
        ),
        pages.image(*plot),
        "<h2>Where each model stands</h2>",
        "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in summary_sentences) + "</ul>",
        "<h2>Rate at equal quality</h2>",
        "<p>bytes_at_P: bytes per image at P % of the seed's baseline mIoU on the method's Pareto front, "
        "log-bytes interpolated; &lt;= N: the cheapest point tried already reaches it. BD-rate: Bjontegaard "
        "delta rate in % against JPEG and WebP inputs, only where the fronts share at least half of the "
        "narrower mIoU range; negative means fewer bytes.</p>",
        _method_table(methods),
        "<h2>Results</h2>",
        "<p>mIoU at each mask's own size, with its 95 % bootstrap interval (low, high); delta_miou against "
        "the row's own seed's baseline (paired interval). Click a header to sort.</p>",
        pages.table(rows, columns, sortable=True),
    ]
    if aggregates:
        shown = ordered(key for row in aggregates for key in row
                        if key in columns or key.endswith("_std") or key == "seeds")  # fmt: skip
        parts += [
            "<h2>Mean and standard deviation over seeds</h2>",
            pages.table(aggregates, shown, sortable=True),
        ]
    parts.append("<h2>Figures</h2>")
    parts += [pages.image(figure, caption) for figure, caption in others if figure.is_file()]
    parts += [pages.link(href, text) for href, text in run_pages]
    parts += ["<h2>Settings</h2>", pages.table([{"setting": k, "value": v} for k, v in settings.items()],
                                               ["setting", "value"])]  # fmt: skip
    path.write_text(pages.page(title, parts))
