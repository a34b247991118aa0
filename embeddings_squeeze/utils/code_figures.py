"""Figures of the codes: the code map of each best/worst image and the atlas of the busiest codes.

No pyplot: figures go straight to files, so no display backend is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import patheffects
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from embeddings_squeeze.data.labels import ClassSet
from embeddings_squeeze.utils.codes import (
    PATCH_SIDE,
    PATCHES_PER_CODE,
    CodeAtlas,
    cell_of_pixels,
    cell_shares,
    code_colours,
)
from embeddings_squeeze.utils.comparison import ScoredImage
from embeddings_squeeze.utils.figures import DPI, PANEL_INCHES, colourise, image_panel

CODE_COLUMNS = (
    "Original image",
    "Codes sent (a colour per code)",
    "VQ prediction",
    "Disagreement with baseline",
)
CODES_COLUMN, DISAGREEMENT_COLUMN = 1, 3  # the panels drawn with the grid's cell borders
ROW_INCHES = 0.75  # an atlas row: one code and its patches
TITLE_INCHES = 1.1  # the code maps' two title lines above the first row's panel titles
NUMBERED_CELLS = 256  # grids up to this many cells carry each cell's code number (the colours' key);
# larger ones (DeepLab's 28 x 28) carry each code's number once, at one of its cells


def _grid_lines(axis, shape: tuple[int, int], grid: tuple[int, int], colour: str = "white") -> None:
    """The grid cells' borders over an image of ``shape``: the backbone's stride made visible."""
    (height, width), (rows, columns) = shape, grid
    for row in range(1, rows):
        axis.axhline(row * height / rows - 0.5, color=colour, linewidth=0.6, alpha=0.8)
    for column in range(1, columns):
        axis.axvline(column * width / columns - 0.5, color=colour, linewidth=0.6, alpha=0.8)


def plot_code_maps(
    items: list[ScoredImage], alphabet_size: int, classes: ClassSet, title: str, path: Path
) -> Figure:
    """One row per image: the image, the code each grid cell sent (its number written in the cell, so
    codes of similar colours stay apart), the VQ prediction, and per cell the share of pixels where the
    VQ and baseline predictions differ. Returns the figure written to ``path``."""
    colours = code_colours(alphabet_size)
    rows = max(len(items), 1)
    height = rows * PANEL_INCHES + TITLE_INCHES
    figure = Figure(figsize=(len(CODE_COLUMNS) * PANEL_INCHES, height), dpi=DPI)
    grid = figure.add_gridspec(rows, len(CODE_COLUMNS), left=0.01, right=0.99, bottom=0.01,
                               top=1 - TITLE_INCHES / height, hspace=0.25)  # fmt: skip
    for row, item in enumerate(items):
        cells = cell_of_pixels(item.target.shape, item.codes.shape)
        differs = cell_shares(cells, item.squeezed_pred != item.baseline_pred, item.codes.size)
        panels = (
            (item.image, item.image_id),
            (
                colours[item.codes.ravel()[cells]],
                f"{len(np.unique(item.codes))} codes in {item.codes.size} cells"
                + ("" if item.codes.size <= NUMBERED_CELLS else ", each numbered once"),
            ),
            (colourise(item.squeezed_pred, classes), f"VQ (IoU {item.squeezed_iou:.3f})"),
            (differs[cells], f"differ: {(item.squeezed_pred != item.baseline_pred).mean():.1%} of pixels"),
        )
        for column, (panel, panel_title) in enumerate(panels):
            axis = image_panel(figure, grid[row, column])
            if column == DISAGREEMENT_COLUMN:
                axis.imshow(panel, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
            else:
                axis.imshow(panel, interpolation="nearest")
            if column in (CODES_COLUMN, DISAGREEMENT_COLUMN):
                _grid_lines(axis, item.target.shape, item.codes.shape)
            if column == CODES_COLUMN:
                _code_numbers(axis, item.codes, item.target.shape)
            axis.set_title(panel_title, fontsize=9)
    if not items:
        figure.text(0.5, 0.5, "no images to show", ha="center", va="center")
    figure.suptitle(f"{title}\ncolumns: {' | '.join(CODE_COLUMNS)}", fontsize=10)
    figure.savefig(path, dpi=DPI)
    return figure


def _code_numbers(axis, codes: np.ndarray, shape: tuple[int, int]) -> None:
    """Each grid cell's code number at its centre, white on a dark outline, over an image of ``shape``;
    on grids of more than ``NUMBERED_CELLS`` cells, each code's number once, at the middle one of its
    cells in raster order."""
    (height, width), (rows, columns) = shape, codes.shape
    size = max(4.0, min(8.0, 90 / max(rows, columns)))
    cells = np.ndindex(rows, columns)
    if codes.size > NUMBERED_CELLS:
        places = [np.flatnonzero(codes == code) for code in np.unique(codes)]
        cells = [divmod(int(place[len(place) // 2]), columns) for place in places]
    for row, column in cells:
        code = codes[row, column]
        axis.text((column + 0.5) * width / columns - 0.5, (row + 0.5) * height / rows - 0.5, str(code),
                  ha="center", va="center", fontsize=size, color="white",
                  path_effects=[patheffects.withStroke(linewidth=1.2, foreground="black")])  # fmt: skip


def atlas_title(usage: dict, shown: int, alphabet_size: int, split: str) -> str:
    """The atlas's title: the codes it shows (at most ``shown``, and only codes sent on the split), and
    for this split and the training split the codes never sent (one word for both) and the perplexity."""
    shown = min(shown, alphabet_size - usage["split_dead_codes"])
    return (
        f"the {shown} most used of {alphabet_size} codes on the {split} split: {usage['split_dead_codes']} "
        f"never sent, perplexity {usage['split_perplexity']:.1f} (training split: "
        f"{usage['training_dead_codes']} never sent, perplexity {usage['training_perplexity']:.1f})"
    )


def plot_code_atlas(
    atlas: CodeAtlas,
    table: list[dict],
    training_counts: np.ndarray | None,
    shown: int,
    title: str,
    path: Path,
) -> None:
    """The ``shown`` most used codes, a row each: its colour, share of cells, dominant class and purity,
    and patches it was sent for; below, every code's share by rank on this split and the training
    split (codes never sent fall off the log scale)."""
    colours = code_colours(atlas.alphabet_size)
    top = [row for row in table if row["cells"] > 0][:shown]
    rows = max(len(top), 1)
    height = rows * ROW_INCHES + 3.2
    figure = Figure(figsize=(12, height), dpi=DPI)
    grid = figure.add_gridspec(rows + 1, PATCHES_PER_CODE + 3, left=0.01, right=0.99, bottom=0.07,
                               top=1 - 0.7 / height, height_ratios=[ROW_INCHES] * rows + [2.2],
                               hspace=0.35, wspace=0.08)  # fmt: skip
    for row, entry in enumerate(top):
        label = image_panel(figure, grid[row, :3])
        label.add_patch(_swatch(colours[entry["code"]]))
        purity = (
            f"{entry['dominant_class']} (purity {entry['purity']:.2f})"
            if entry["purity"] is not None
            else "-"
        )
        label.text(0.16, 0.5, f"code {entry['code']}: {entry['share']:.1%} of cells\nmostly {purity}",
                   va="center", fontsize=8)  # fmt: skip
        strip = image_panel(figure, grid[row, 3:])
        strip.imshow(_patch_strip(atlas.patches.get(entry["code"], [])))
        strip.set_anchor("W")  # beside the code's label
    curve = figure.add_subplot(grid[rows, 1:])
    for name, counts, style in (("this split", atlas.cells, "-"), ("training split", training_counts, "--")):
        if counts is None:
            continue
        shares = np.sort(counts)[::-1] / max(counts.sum(), 1)
        dead = int((counts == 0).sum())
        never = f"{dead} code{'' if dead == 1 else 's'} never sent"
        curve.plot(np.arange(1, len(shares) + 1), shares, style, label=f"{name} ({never})")
    curve.set_yscale("log")
    curve.set_xlabel("code rank (most used first)")
    curve.set_ylabel("share of grid cells")
    curve.legend(fontsize=8)
    curve.grid(True, which="both", alpha=0.3)
    figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=DPI)


def _patch_strip(patches: list[np.ndarray]) -> np.ndarray:
    """A code's patches side by side on white, in ``PATCHES_PER_CODE`` places (a row of fewer keeps
    their size): one image, as one axes per patch made the atlas's 145 axes a third of its time."""
    gap = PATCH_SIDE // 12  # about the space between the columns of the figure's grid
    strip = np.full((PATCH_SIDE, PATCHES_PER_CODE * (PATCH_SIDE + gap) - gap, 3), 255, dtype=np.uint8)
    for place, patch in enumerate(patches):
        start = place * (PATCH_SIDE + gap)
        strip[:, start : start + PATCH_SIDE] = patch
    return strip


def _swatch(colour: np.ndarray) -> Rectangle:
    return Rectangle((0.0, 0.2), 0.12, 0.6, color=colour / 255)
