"""Tables, the rate-quality plot and the self-contained HTML report of a sweep."""

from __future__ import annotations

import base64
import csv
import html
import statistics
from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure

from embeddings_squeeze.utils.files import write_json

NUMERIC = (
    "fixed_bits_per_image",
    "entropy_bits_per_image",
    "coded_bits_per_image",
    "codes_replaced_per_step",
    "payload_bytes_per_image",
    "miou",
    "delta_miou",
    "compression_vs_float32",
    "compression_vs_float16",
    "code_usage",
    "training_seconds",
)


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds of every VQ configuration with several seeds."""
    groups = defaultdict(list)
    for row in rows:
        if row["kind"] == "vq":
            groups[(row["quantizer"], row["num_vectors"])].append(row)
    summary = []
    for (quantizer, size), members in sorted(groups.items()):
        if len(members) < 2:
            continue
        entry = {
            "name": f"{quantizer}_K{size}_mean",
            "kind": "vq_mean",
            "quantizer": quantizer,
            "num_vectors": size,
            "seeds": len(members),
        }
        for key in NUMERIC:
            values = [m[key] for m in members if m.get(key) is not None]
            if values:
                entry[key] = statistics.fmean(values)
                entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def write_tables(rows: list[dict], output_dir: Path) -> list[dict]:
    """sweep.csv (one row per model) and sweep.json (rows plus seed aggregates)."""
    aggregates = aggregate(rows)
    write_json(output_dir / "sweep.json", {"rows": rows, "aggregates": aggregates})
    columns = list(dict.fromkeys(key for row in rows + aggregates for key in row))
    with open(output_dir / "sweep.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows + aggregates)
    return aggregates


def _curve(members: list[dict], key: str, size) -> tuple[list, list, list]:
    """(bytes, mean mIoU, mIoU std over seeds) per point of one curve, sorted by bytes."""
    points = defaultdict(list)
    for row in members:
        points[row["num_vectors"] if row["kind"] == "vq" else row["quality"]].append(row)
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
    figure = Figure(figsize=(8, 5.5), dpi=100)
    axis = figure.add_subplot()
    lines = defaultdict(list)
    for row in rows:
        if row["kind"] in ("vq", "input"):
            lines[row["quantizer"] if row["kind"] == "vq" else row["codec"]].append(row)
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
    baselines = [row["miou"] for row in rows if row["kind"] == "baseline"]
    if baselines:
        label = "baseline, uncompressed features" + (
            f" (mean of {len(baselines)} seeds)" if len(baselines) > 1 else ""
        )
        axis.axhline(statistics.fmean(baselines), color="black", linestyle=":", label=label)
    axis.set_xscale("log")
    axis.set_xlabel("bytes per image (log scale)")
    axis.set_ylabel("mIoU")
    axis.set_title(title, fontsize=10, wrap=True)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
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
    figures: list[tuple[Path, str]],
) -> None:
    """One HTML file with every figure embedded, so it opens from disk with no server."""
    columns = [
        "name",
        "kind",
        "quantizer",
        "codec",
        "quality",
        "num_vectors",
        "seed",
        "alphabet_size",
        "distinct_codes",
        "fixed_bits_per_image",
        "entropy_bits_per_image",
        "coded_bits_per_image",
        "payload_bytes_per_image",
        "compression_vs_float32",
        "codes_replaced_per_step",
        "miou",
        "delta_miou",
        "code_usage",
        "training_seconds",
    ]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "figure{margin:1em 0}img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Settings</h2>",
        _table([{"setting": k, "value": v} for k, v in settings.items()], ["setting", "value"]),
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
