"""The best/worst figures: one row per image, input, ground truth and both predictions.

No pyplot: figures go straight to files, so no display backend is needed.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from embeddings_squeeze.data.labels import IGNORE_COLOUR, IGNORE_INDEX, ClassSet
from embeddings_squeeze.utils.comparison import Comparison, ScoredImage

log = logging.getLogger(__name__)

PANEL_INCHES = 3.0
TITLE_INCHES = 0.75
WARNING_LINE_INCHES = 0.2  # a line of a warning under the title (10 pt)
LEGEND_ROW_INCHES = 0.25
LEGEND_COLUMNS = 8  # legend entries per line: VOC's 21 classes take three lines
DPI = 80
COLUMNS = ("Original image", "Ground truth", "Baseline prediction", "VQ prediction")


def colourise(labels: np.ndarray, classes: ClassSet) -> np.ndarray:
    """(H, W) labels -> (H, W, 3) colours: each class in its colour, ignored pixels in IGNORE_COLOUR."""
    rgb = np.empty((*labels.shape, 3), dtype=np.uint8)
    rgb[:] = IGNORE_COLOUR
    known = labels != IGNORE_INDEX
    rgb[known] = np.array(classes.colours, dtype=np.uint8)[labels[known]]
    return rgb


def image_panel(figure: Figure, place) -> Axes:
    """An axes at ``place`` of ``figure`` for an image, without axis lines or ticks. The ticks are
    removed, not only hidden: placing each title above hidden ticks took a quarter of the time a
    figure of 20 titled panels took to draw (the same pixels either way)."""
    axis = figure.add_subplot(place, xticks=[], yticks=[])
    axis.axis("off")
    return axis


def legend_rows(classes: int) -> int:
    return -(-(classes + 1) // LEGEND_COLUMNS)  # the classes and "ignored"


def figure_inches(rows: int, classes: int = 3, warning_lines: int = 0) -> tuple[float, float]:
    """(width, height) in inches of a figure with ``rows`` result rows, a legend of ``classes`` and
    ``warning_lines`` lines of warnings under the title."""
    header = TITLE_INCHES + WARNING_LINE_INCHES * warning_lines + LEGEND_ROW_INCHES * legend_rows(classes)
    return len(COLUMNS) * PANEL_INCHES, rows * PANEL_INCHES + header


def figure_size_pixels(rows: int, classes: int = 3, warning_lines: int = 0) -> tuple[int, int]:
    """(width, height) in pixels of a figure with ``rows`` result rows, as saved."""
    width, height = figure_inches(rows, classes, warning_lines)
    return round(width * DPI), round(height * DPI)


def wrapped_warnings(warnings: tuple[str, ...]) -> list[str]:
    """``warnings`` wrapped to the figure's width, each from a line of its own."""
    characters = int(len(COLUMNS) * PANEL_INCHES * 72 / (10 * 0.62))  # 10 pt, about 0.6 em a character
    return [line for warning in warnings for line in textwrap.wrap(warning, characters)]


def plot_results(
    items: list[ScoredImage], classes: ClassSet, title: str, path: Path, warnings: tuple[str, ...] = ()
) -> Figure:
    """One row per image: input, ground truth, baseline and VQ predictions with their IoU; each of
    ``warnings`` under the title, wrapped to the figure's width. Saved to ``path``, and returned."""
    rows, notes = max(len(items), 1), wrapped_warnings(warnings)
    width, height = figure_inches(rows, len(classes), len(notes))
    figure = Figure(figsize=(width, height), dpi=DPI)
    top = 1 - (height - rows * PANEL_INCHES) / height  # below the header figure_inches made room for
    grid = figure.add_gridspec(rows, len(COLUMNS), left=0.01, right=0.99, bottom=0.01, top=top, hspace=0.25)
    for row, item in enumerate(items):
        masks = (item.target, item.baseline_pred, item.squeezed_pred)
        panels = (item.image, *(colourise(mask, classes) for mask in masks))
        titles = (
            item.image_id,
            "Ground truth",
            f"Baseline (IoU {item.baseline_iou:.3f})",
            f"VQ (IoU {item.squeezed_iou:.3f})",
        )
        for column, (panel, panel_title) in enumerate(zip(panels, titles)):
            axis = image_panel(figure, grid[row, column])
            axis.imshow(panel, interpolation="nearest")
            axis.set_title(panel_title, fontsize=9)
    if not items:
        figure.text(0.5, 0.5, "no images to show", ha="center", va="center")
    legend = [
        Patch(color=np.array(colour) / 255, label=name)
        for name, colour in zip(classes.names, classes.colours)
    ]
    legend.append(Patch(color=np.array(IGNORE_COLOUR) / 255, label="ignored"))
    lines = [title, *notes, f"columns: {' | '.join(COLUMNS)}"]
    figure.suptitle("\n".join(lines), fontsize=10, y=1 - 0.05 / height)
    legend_top = 1 - (0.5 + WARNING_LINE_INCHES * len(notes)) / height  # below the title's lines
    figure.legend(
        handles=legend,
        loc="upper center",
        bbox_to_anchor=(0.5, legend_top),
        ncol=min(len(legend), LEGEND_COLUMNS),
        frameon=False,
        fontsize=9,
    )
    figure.savefig(path, dpi=DPI)
    return figure


def draw_rankings(
    comparison: Comparison,
    ranking: str,
    split: str,
    n_best: int,
    n_worst: int,
    output_dir: Path,
    warnings: tuple[str, ...] = (),
) -> dict[str, Path]:
    """best_results_<split>.png and worst_results_<split>.png for one ranking, ``warnings`` (e.g. of a
    model that predicts one class) under their titles; returns their paths."""
    best, worst = comparison.rankings[ranking]
    ranked_by = "VQ minus baseline per-image IoU" if ranking == "delta" else "VQ per-image IoU"
    paths = {}
    for kind, items, wanted in (("best", best, n_best), ("worst", worst, n_worst)):
        if len(items) < wanted:
            log.warning(
                "only %d scored images in the %s split; showing %d %s", len(items), split, len(items), kind
            )
        title = f"{len(items)} {kind} VQ results on the {split} split, ranked by {ranked_by}"
        paths[kind] = output_dir / f"{kind}_results_{split}.png"
        plot_results(items, comparison.classes, title, paths[kind], warnings)
    return paths
