"""Tables, the rate-quality plot and the self-contained HTML report of a sweep."""

from __future__ import annotations

import base64
import csv
import html
import statistics
from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure

from embeddings_squeeze.utils.columns import AVERAGED, REPORTED, SQUEEZED, method_and_setting, ordered
from embeddings_squeeze.utils.files import write_json
from embeddings_squeeze.utils.rate_quality import QUALITY_LEVELS, method_summaries

CURVE_KINDS = (SQUEEZED, "input")  # rows that form curves; "floor" and "oracle" rows are single points
FLOOR_REFERENCE = "mask_context"  # the cheapest lossless floor row the sentences compare with


def configurations(rows: list[dict]) -> dict[str, list[dict]]:
    """Squeezed rows grouped by configuration (the seeds of one setting of one type)."""
    groups = defaultdict(list)
    for row in rows:
        if row["kind"] == SQUEEZED:
            groups[row["configuration"]].append(row)
    return groups


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds of every squeezed configuration with several seeds."""
    summary = []
    for configuration, members in sorted(configurations(rows).items()):
        if len(members) < 2:
            continue
        first = members[0]
        entry = {
            "name": f"{configuration}_mean",
            "kind": f"{SQUEEZED}_mean",
            "configuration": configuration,
            "quantizer": first["quantizer"],
            "setting": first["setting"],
            "value": first["value"],
            "seeds": len(members),
        }
        for key in AVERAGED:
            values = [m[key] for m in members if m.get(key) is not None]
            if values:
                entry[key] = statistics.fmean(values)
                entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def baseline_miou(rows: list[dict]) -> float:
    """The baseline's mIoU, averaged over seeds."""
    return statistics.fmean(row["miou"] for row in rows if row["kind"] == "baseline")


def method_points(rows: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """Per method, its (bytes per image, mIoU) points; seeds of one setting averaged into one point.

    Methods: each quantizer type's curve, each image codec's curve, and every floor and oracle row.
    """
    groups = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["kind"] in (*CURVE_KINDS, "floor", "oracle"):
            method, setting = method_and_setting(row)
            groups[method][setting].append(row)
    return {
        method: sorted(
            (
                statistics.fmean(r["payload_bytes_per_image"] for r in members),
                statistics.fmean(r["miou"] for r in members),
            )
            for members in settings.values()
        )  # fmt: skip
        for method, settings in groups.items()
    }


def rate_at_quality(rows: list[dict]) -> list[dict]:
    """bytes_at_90/95/99 and BD-rate against JPEG and WebP for every method of the sweep."""
    return method_summaries(method_points(rows), baseline_miou(rows), anchors=("JPEG", "WEBP"))


def sentences(rows: list[dict]) -> list[str]:
    """One sentence per compressed-feature model (seeds averaged): where it stands against the floor."""
    floor = next((r for r in rows if r["name"] == FLOOR_REFERENCE), None)
    reference = baseline_miou(rows)
    lines = []
    for configuration, members in configurations(rows).items():
        size = statistics.fmean(r["payload_bytes_per_image"] for r in members)
        quality = 100 * statistics.fmean(r["miou"] for r in members) / reference
        if floor is None:
            lines.append(
                f"{configuration}: {size:.0f} bytes per image at {quality:.0f} % of the baseline mIoU."
            )
        else:
            ratio = size / floor["payload_bytes_per_image"]
            lines.append(
                f"{configuration}: {ratio:.2f}x the bytes of the lossless (context-coded) mask at "
                f"{quality:.0f} % of the baseline mIoU."
            )
    return lines


def write_tables(rows: list[dict], output_dir: Path) -> tuple[list[dict], list[dict], list[str]]:
    """sweep.csv (one row per model, then the seed aggregates and one row per method with its rate
    at equal quality) and sweep.json (the same, plus one sentence per model)."""
    aggregates = aggregate(rows)
    methods = rate_at_quality(rows)
    summary_sentences = sentences(rows)
    write_json(
        output_dir / "sweep.json",
        {"rows": rows, "aggregates": aggregates, "rate_at_quality": methods, "sentences": summary_sentences},
    )
    method_rows = [{"name": m["method"], "kind": "method", **m} for m in methods]
    table = rows + aggregates + method_rows
    columns = ordered(key for row in table for key in row)
    with open(output_dir / "sweep.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table)
    return aggregates, methods, summary_sentences


def _curve(members: list[dict], key: str, size) -> tuple[list, list, list]:
    """(bytes, mean mIoU, mIoU std over seeds) per point of one curve, sorted by bytes."""
    points = defaultdict(list)
    for row in members:
        points[method_and_setting(row)[1]].append(row)
    curve = []
    for group in points.values():
        ious = [r["miou"] for r in group]
        curve.append(
            (statistics.fmean(size(r[key]) for r in group), statistics.fmean(ious),
             statistics.stdev(ious) if len(ious) > 1 else 0.0)
        )  # fmt: skip
    return [list(values) for values in zip(*sorted(curve))]


def plot_rate_quality(rows: list[dict], title: str, path: Path) -> None:
    """mIoU against bytes per image (log x): per quantizer its measured payloads (solid) and its
    entropy-coded size before framing (dashed, the coded bits), and a line per image codec."""
    figure = Figure(figsize=(11, 5.5), dpi=100)
    axis = figure.add_subplot()
    lines = defaultdict(list)
    for row in rows:
        if row["kind"] in CURVE_KINDS:
            lines[method_and_setting(row)[0]].append(row)
    colours = iter(f"C{i}" for i in range(10))
    for name, members in sorted(lines.items()):
        colour = next(colours)
        if members[0]["kind"] == "input":
            curves = [("payload_bytes_per_image", 1, "-", f"{name} input + baseline")]
        else:
            curves = [
                ("payload_bytes_per_image", 1, "-", f"{name.upper()} payload (measured)"),
                ("coded_bits_per_image", 1 / 8, "--", f"{name.upper()} entropy-coded, before framing"),
            ]
        for key, scale, style, label in curves:
            xs, ys, errors = _curve(members, key, lambda value, scale=scale: value * scale)
            axis.errorbar(
                xs, ys, yerr=errors, marker="o", capsize=3, linestyle=style, color=colour, label=label
            )
    markers = iter("s^Dv<>pP*")
    for row in rows:
        if row["kind"] == "floor":
            axis.plot(
                row["payload_bytes_per_image"],
                row["miou"],
                linestyle="none",
                marker=next(markers),
                color="black",
                label=f"{row['name']} (task floor: the baseline's mask, lossless)",
            )
        elif row["kind"] == "oracle":
            axis.plot(row["payload_bytes_per_image"], row["miou"], linestyle="none", marker="x", color="grey")
            axis.annotate(
                f"oracle {row['name'].rsplit('_', 1)[1]}",
                (row["payload_bytes_per_image"], row["miou"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
                color="grey",
            )
    baselines = [row["miou"] for row in rows if row["kind"] == "baseline"]
    if baselines:
        label = "baseline, uncompressed features" + (
            f" (mean of {len(baselines)} seeds)" if len(baselines) > 1 else ""
        )
        axis.axhline(statistics.fmean(baselines), color="black", linestyle=":", label=label)
    axis.set_xscale("log")
    axis.set_xlabel("bytes per image (log scale)")
    axis.set_ylabel("mIoU")
    axis.set_title(title, fontsize=10)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves, not on them
    figure.tight_layout()
    figure.savefig(path)


def _image(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<figure><img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)} ({html.escape(path.name)})</figcaption></figure>"
    )


def _table(rows: list[dict], columns: list[str]) -> str:
    def cell(value):
        return (
            f"{value:.4g}"
            if isinstance(value, float)
            else html.escape(str(value if value is not None else ""))
        )

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(
    path: Path,
    title: str,
    settings: dict,
    rows: list[dict],
    aggregates: list[dict],
    methods: list[dict],
    summary_sentences: list[str],
    figures: list[tuple[Path, str]],
) -> None:
    """One HTML file with every figure embedded, so it opens from disk with no server."""
    columns = [name for name in REPORTED if any(name in row for row in rows)]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "figure{margin:1em 0}img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Settings</h2>",
        _table([{"setting": k, "value": v} for k, v in settings.items()], ["setting", "value"]),
        "<h2>Where each model stands</h2>",
        "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in summary_sentences) + "</ul>",
        "<h2>Rate at equal quality</h2>",
        "<p>bytes_at_P: the smallest measured bytes per image among a method's points reaching P % of the "
        "baseline mIoU (empty: none does). BD-rate: Bjontegaard delta rate in % against JPEG and WebP "
        "inputs (PCHIP of log-rate over the overlapping mIoU range; negative means fewer bytes).</p>",
        _table(
            methods,
            [
                "method",
                "points",
                *(f"bytes_at_{p}" for p in QUALITY_LEVELS),
                "bd_rate_vs_jpeg",
                "bd_rate_vs_webp",
            ],
        ),  # fmt: skip
        "<h2>Results</h2>",
        _table(rows, columns),
    ]
    if aggregates:
        parts += [
            "<h2>Mean and standard deviation over seeds</h2>",
            _table(
                aggregates,
                [
                    "name",
                    "seeds",
                    "miou",
                    "miou_std",
                    "payload_bytes_per_image",
                    "payload_bytes_per_image_std",
                    "delta_miou",
                    "delta_miou_std",
                ],
            ),
        ]
    parts.append("<h2>Figures</h2>")
    parts += [_image(figure, caption) for figure, caption in figures]
    parts.append("</body></html>")
    path.write_text("\n".join(parts))
