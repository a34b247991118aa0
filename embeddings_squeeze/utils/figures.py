"""The best/worst figures: one row per image, input, ground truth and both predictions.

No pyplot: figures go straight to files, so no display backend is needed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from embeddings_squeeze.data import labels
from embeddings_squeeze.data.labels import IGNORE_INDEX
from embeddings_squeeze.utils.comparison import Comparison, ScoredImage

log = logging.getLogger(__name__)

PANEL_INCHES = 3.0
HEADER_INCHES = 1.0
DPI = 80
COLUMNS = ("Original image", "Ground truth", "Baseline prediction", "VQ prediction")
CLASS_COLOURS = np.array(labels.CLASS_COLOURS, dtype=np.uint8)
IGNORE_COLOUR = np.array([0, 0, 0], dtype=np.uint8)  # ignored pixels are black


def colourise(labels: np.ndarray) -> np.ndarray:
    """(H, W) labels -> (H, W, 3) colours."""
    rgb = np.empty((*labels.shape, 3), dtype=np.uint8)
    rgb[:] = IGNORE_COLOUR
    known = labels != IGNORE_INDEX
    rgb[known] = CLASS_COLOURS[labels[known]]
    return rgb


def figure_inches(rows: int) -> tuple[float, float]:
    """(width, height) in inches of a figure with ``rows`` result rows."""
    return len(COLUMNS) * PANEL_INCHES, rows * PANEL_INCHES + HEADER_INCHES


def figure_size_pixels(rows: int) -> tuple[int, int]:
    """(width, height) in pixels of a figure with ``rows`` result rows, as saved."""
    width, height = figure_inches(rows)
    return round(width * DPI), round(height * DPI)


def plot_results(items: list[ScoredImage], class_names, title: str, path: Path) -> None:
    """One row per image: input, ground truth, baseline and VQ predictions with their IoU."""
    rows = max(len(items), 1)
    width, height = figure_inches(rows)
    figure = Figure(figsize=(width, height), dpi=DPI)
    top = 1 - HEADER_INCHES / height
    grid = figure.add_gridspec(rows, len(COLUMNS), left=0.01, right=0.99, bottom=0.01, top=top, hspace=0.25)
    for row, item in enumerate(items):
        panels = (item.image, colourise(item.target), colourise(item.baseline_pred), colourise(item.vq_pred))
        titles = (
            item.image_id,
            "Ground truth",
            f"Baseline (IoU {item.baseline_iou:.3f})",
            f"VQ (IoU {item.vq_iou:.3f})",
        )
        for column, (panel, panel_title) in enumerate(zip(panels, titles)):
            axis = figure.add_subplot(grid[row, column])
            axis.imshow(panel, interpolation="nearest")
            axis.set_title(panel_title, fontsize=9)
            axis.axis("off")
    if not items:
        figure.text(0.5, 0.5, "no images to show", ha="center", va="center")
    legend = [Patch(color=CLASS_COLOURS[i] / 255, label=name) for i, name in enumerate(class_names)]
    legend.append(Patch(color=IGNORE_COLOUR / 255, label="ignored"))
    figure.suptitle(f"{title}\ncolumns: {' | '.join(COLUMNS)}", fontsize=10, y=1 - 0.05 / height)
    legend_top = 1 - 0.5 / height  # below the two title lines
    figure.legend(
        handles=legend, loc="upper center", bbox_to_anchor=(0.5, legend_top), ncol=len(legend), frameon=False
    )
    figure.savefig(path, dpi=DPI)


def draw_rankings(
    comparison: Comparison, ranking: str, split: str, n_best: int, n_worst: int, output_dir: Path
) -> dict[str, Path]:
    """best_results_<split>.png and worst_results_<split>.png for one ranking; returns their paths."""
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
        plot_results(items, comparison.class_names, title, paths[kind])
    return paths
