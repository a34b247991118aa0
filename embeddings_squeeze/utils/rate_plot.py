"""The rate-quality plot of a sweep: mIoU against measured bytes per image, every point with its
stated interval, labelled with its setting, the baseline, floors and oracles (``plot_rate_quality``)."""

from __future__ import annotations

import math
import statistics as stats
import textwrap
from collections import defaultdict
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from embeddings_squeeze.utils.columns import Kind, by_configuration, is_number, method_and_setting
from embeddings_squeeze.utils.sweep_report import CURVE_KINDS, POINT_KINDS


def _points(members: list[dict], means: dict[str, dict], key: str, scale: float) -> list[tuple]:
    """(bytes, mIoU, interval low, interval high, setting's label, degenerate) per point of one curve,
    sorted by bytes: a setting's seeds averaged, with the 95 % interval of its seed mean (``means``, by
    configuration) or of its one seed (None where none is stated), its label ('K16', 'lambda 1', 'q50';
    None for a single point) and whether a seed's predictions are degenerate; points that a log-scale
    plot cannot place are left out."""
    groups = defaultdict(list)
    for row in members:
        groups[method_and_setting(row)[1]].append(row)
    points = []
    for setting, group in groups.items():
        shown = group[0] if len(group) == 1 else means.get(group[0]["configuration"], {})
        values = [r.get(key) for r in group] + [r.get("miou") for r in group]
        if not all(is_number(v) and math.isfinite(v) for v in values):
            continue
        x = stats.fmean(r[key] * scale for r in group)
        if x > 0:
            y = stats.fmean(r["miou"] for r in group)
            degenerate = any(r.get("degenerate") for r in group)
            points.append((x, y, shown.get("miou_low"), shown.get("miou_high"), _label(group[0], setting),
                           degenerate))  # fmt: skip
    return sorted(points, key=lambda point: point[:2])


def _label(row: dict, setting) -> str | None:
    """A point's setting as the plot writes it beside the point."""
    if setting is None:
        return None
    if row["kind"] == Kind.INPUT:
        return f"q{setting}"
    prefix = {"num_vectors": "K", "rate_lambda": "lambda "}.get(row.get("setting"), f"{row.get('setting')} ")
    return f"{prefix}{setting:g}" if is_number(setting) else f"{prefix}{setting}"


def _annotate(axis, points: list[tuple], colour: str) -> None:
    """Each point's setting beside it; a degenerate point ringed in red and named so."""
    for x, y, _, _, label, degenerate in points:
        if label:
            axis.annotate(label, (x, y), fontsize=7, color=colour, textcoords="offset points", xytext=(4, -9))
        if degenerate:
            axis.plot([x], [y], marker="o", markersize=11, markerfacecolor="none", markeredgecolor="red",
                      linestyle="none")  # fmt: skip
            axis.annotate("degenerate", (x, y), fontsize=7, color="red", textcoords="offset points",
                          xytext=(4, 6))  # fmt: skip


def _draw(axis, points: list[tuple], colour: str, **style) -> None:
    """A curve or a point, with each stated interval as a vertical bar from its low to its high end."""
    axis.plot([p[0] for p in points], [p[1] for p in points], color=colour, **style)
    stated = [p for p in points if is_number(p[2]) and is_number(p[3])]
    if stated:
        axis.vlines([p[0] for p in stated], [p[2] for p in stated], [p[3] for p in stated], color=colour,
                    linewidth=1)  # fmt: skip


def _draw_baseline(axis, rows: list[dict], means: dict[str, dict]) -> None:
    """The uncompressed baseline as a horizontal line (its seeds' mean) with its 95 % interval as a band."""
    baselines = [row for row in rows if row["kind"] == Kind.BASELINE and is_number(row.get("miou"))]
    if baselines and all(math.isfinite(row["miou"]) for row in baselines):
        several = len(baselines) > 1
        interval = means.get("baseline", {}) if several else baselines[0]
        label = "baseline, uncompressed features" + (f" (mean of {len(baselines)} seeds)" if several else "")
        axis.axhline(stats.fmean(row["miou"] for row in baselines), color="black", linestyle=":", label=label)
        if is_number(interval.get("miou_low")) and is_number(interval.get("miou_high")):
            axis.axhspan(interval["miou_low"], interval["miou_high"], color="black", alpha=0.08,
                         label="baseline's 95 % interval")  # fmt: skip


def plot_rate_quality(
    rows: list[dict], aggregates: list[dict], title: str, path: Path, names: dict[str, str] | None = None
) -> Figure:
    """mIoU against bytes per image (log x), each point with its 95 % interval as a bar (over the test
    images; over seeds too for a mean of seeds): per quantizer its measured payloads (solid) and its
    entropy-coded size before framing (dashed, the coded bits), a line per image codec, each point
    labelled with its setting and a degenerate one ringed, the floor points, the baseline, and the
    oracles within the methods' range (``_draw_oracles``). ``names``: how the legend names each
    quantizer type (default: the type, upper case). Returns the figure written to ``path``."""
    figure = Figure(figsize=(11, 5.5), dpi=100)
    axis = figure.add_subplot()
    means = {entry["configuration"]: entry for entry in aggregates}
    lines = defaultdict(list)
    for row in rows:
        if row["kind"] in CURVE_KINDS:
            lines[method_and_setting(row)[0]].append(row)
    colours = iter(f"C{i % 10}" for i in range(1000))
    for name, members in sorted(lines.items(), key=lambda item: str(item[0])):
        colour = next(colours)
        if members[0]["kind"] == Kind.INPUT:
            curves = [("payload_bytes_per_image", 1, "-", f"{name} input + baseline")]
        else:
            shown = (names or {}).get(name, str(name).upper())
            curves = [("payload_bytes_per_image", 1, "-", f"{shown} payload (measured)")]
            if members[0].get("quantizer") != "none":  # a continuous reference sends raw float16, not coded
                curves.append(("coded_bits_per_image", 1 / 8, "--", f"{shown} entropy-coded, before framing"))
        for key, scale, style, label in curves:
            points = _points(members, means, key, scale)
            if points:
                _draw(axis, points, colour, marker="o", linestyle=style, label=label)
            if points and key == "payload_bytes_per_image":
                _annotate(axis, points, colour)
    markers = iter("s^Dv<>pP*" * 100)
    oracles = {}
    for configuration, members in by_configuration(rows, POINT_KINDS).items():
        points = _points(members, means, "payload_bytes_per_image", 1)
        if not points:
            continue
        if members[0]["kind"] == Kind.FLOOR:
            _draw(axis, points, "black", marker=next(markers), linestyle="none",
                  label=f"{configuration} (task floor: the baseline's mask, lossless)")  # fmt: skip
        else:
            oracles[configuration] = points[0]
    _draw_baseline(axis, rows, means)
    _draw_oracles(axis, oracles)
    axis.set_xscale("log")
    axis.set_xlabel("bytes per image (log scale)")
    axis.set_ylabel("mIoU (at each mask's own size)")
    axis.set_title(f"{title}\nbars: 95 % intervals (over test images; for a mean of seeds, over seeds too); "
                   "no bar: none stated", fontsize=9)  # fmt: skip
    axis.grid(True, which="both", alpha=0.3)
    if axis.get_legend_handles_labels()[0]:  # beside the curves, not on them; long enough to show dashes
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), handlelength=4)
    figure.tight_layout()
    _declutter(figure, axis)
    figure.savefig(path)
    return figure


def _draw_oracles(axis, oracles: dict[str, tuple]) -> None:
    """The grid oracles (upper bounds, near mIoU 1) drawn last, inside the range the methods span: those
    above it sit on its top edge as grey triangles marked with their grid, their values in the legend, so
    they neither squeeze the curves into the bottom of the plot nor smear their labels together."""
    low, high = axis.get_ylim()
    above = []
    for configuration, (x, y, *_) in oracles.items():
        grid = configuration.rsplit("_", 1)[-1]
        if y <= high:
            _draw(axis, [(x, y, None, None)], "grey", marker="x", linestyle="none")
            axis.annotate(f"oracle {grid}", (x, y), fontsize=7, textcoords="offset points", xytext=(4, 4),
                          color="grey")  # fmt: skip
            continue
        axis.annotate(grid, (x, high), fontsize=7, textcoords="offset points", xytext=(0, -11), ha="center",
                      color="grey")  # fmt: skip
        above.append((x, f"{grid}: {y:.3f}"))
    if above:
        values = ", ".join(value for _, value in above)
        label = "\n".join(textwrap.wrap(f"grid oracles above the plot (cells: mIoU): {values}", 48))
        axis.plot([x for x, _ in above], [high] * len(above), marker="^", color="grey", linestyle="none",
                  clip_on=False, label=label)  # fmt: skip
    axis.set_ylim(low, high)


def _declutter(figure: Figure, axis) -> None:
    """Hide each label that would overlap one kept before it (a degenerate model's mark first, then in
    the order drawn): labels printed over each other read as nothing."""
    renderer = FigureCanvasAgg(figure).get_renderer()
    kept = []
    for text in sorted(axis.texts, key=lambda text: text.get_text() != "degenerate"):
        box = text.get_window_extent(renderer)
        if any(box.overlaps(other) for other in kept):
            text.set_visible(False)
        else:
            kept.append(box)
