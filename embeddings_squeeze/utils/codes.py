"""What the codes stand for: each grid cell's code, the ground-truth class it mostly covers, and the
image patches it was sent for; one colour per code, the same in every figure.

A grid cell of the (h, w) feature grid covers rows ``i * H / h`` to ``(i + 1) * H / h`` of an (H, W)
image (the image is resized to the square model input, so cells follow its aspect ratio). A cell's
majority label is the commonest labelled class of the ground truth inside it; a code's dominant
class is the commonest majority label of its cells, and its purity the share of its labelled cells
with that majority label. For quantizers with several index levels (RVQ) the first level is used.

``CodeAtlas`` keeps counts per code and at most ``PATCHES_PER_CODE`` small patches per code, each
from another image: its memory is bounded by the codebook, not by the split.
"""

from __future__ import annotations

import colorsys
import csv
import math
from pathlib import Path

import numpy as np
from PIL import Image

PATCHES_PER_CODE = 8
PATCH_SIDE = 32  # pixels a kept patch is resized to
GOLDEN = (math.sqrt(5) - 1) / 2


def code_colours(count: int) -> np.ndarray:
    """(count, 3) uint8: code c's colour, the same for a code in every image and figure. Hues step by
    the golden ratio, so nearby codes differ, with three levels of saturation and value."""
    colours = []
    for code in range(count):
        hue = (code * GOLDEN) % 1.0
        saturation, value = ((0.9, 0.95), (0.55, 0.85), (0.8, 0.6))[code % 3]
        colours.append([round(255 * c) for c in colorsys.hsv_to_rgb(hue, saturation, value)])
    return np.array(colours, dtype=np.uint8)


def cell_of_pixels(shape: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """(H, W): the index (row * w + column) of the grid cell each pixel lies in."""
    (height, width), (rows, columns) = shape, grid
    row = np.arange(height) * rows // height
    column = np.arange(width) * columns // width
    return row[:, None] * columns + column[None, :]


def cell_shares(cells: np.ndarray, where: np.ndarray, count: int) -> np.ndarray:
    """(count,) the share of each cell's pixels where ``where`` holds."""
    totals = np.bincount(cells.ravel(), minlength=count)
    hits = np.bincount(cells.ravel(), weights=where.ravel().astype(np.float64), minlength=count)
    return hits / np.maximum(totals, 1)


def majority_labels(cells: np.ndarray, target: np.ndarray, count: int, classes: int) -> np.ndarray:
    """(count,) each cell's commonest labelled class in ``target``, -1 where it has no labelled pixel."""
    # ignored pixels vote in one extra column, dropped after counting (2x selecting the labelled ones)
    keys = cells * (classes + 1) + np.minimum(target, classes)
    votes = np.bincount(keys.ravel(), minlength=count * (classes + 1)).reshape(count, classes + 1)
    votes = votes[:, :classes]
    return np.where(votes.sum(axis=1) > 0, votes.argmax(axis=1), -1)


class CodeAtlas:
    """Counts per code over a split: its cells, their majority labels, and a few patches of it."""

    def __init__(self, alphabet_size: int, class_names: list[str]):
        self.alphabet_size = alphabet_size
        self.class_names = list(class_names)
        self.cells = np.zeros(alphabet_size, dtype=np.int64)
        self.labels = np.zeros((alphabet_size, len(class_names)), dtype=np.int64)
        self.patches: dict[int, list[np.ndarray]] = {}

    def wants_patches(self, codes: np.ndarray) -> bool:
        """Whether an image with these codes would add a patch (so its pixels are worth reading)."""
        return any(len(self.patches.get(int(code), ())) < PATCHES_PER_CODE for code in np.unique(codes))

    def add(self, codes: np.ndarray, target: np.ndarray, image: np.ndarray | None = None) -> None:
        """One image's (h, w) codes, its (H, W) ground truth and, when wanted, its (H, W, 3) pixels."""
        count = codes.size
        cells = cell_of_pixels(target.shape, codes.shape)
        majority = majority_labels(cells, target, count, len(self.class_names))
        flat = codes.ravel().astype(np.int64)
        np.add.at(self.cells, flat, 1)
        labelled = majority >= 0
        np.add.at(self.labels, (flat[labelled], majority[labelled]), 1)
        if image is not None:
            self._keep_patches(flat, image, codes.shape)

    def _keep_patches(self, flat: np.ndarray, image: np.ndarray, grid: tuple[int, int]) -> None:
        """One patch per code from this image, for codes that have fewer than they keep."""
        (height, width), (rows, columns) = image.shape[:2], grid
        for code in np.unique(flat):
            kept = self.patches.setdefault(int(code), [])
            if len(kept) >= PATCHES_PER_CODE:
                continue
            cell = int(np.flatnonzero(flat == code)[0])
            row, column = divmod(cell, columns)
            top, bottom = -(-row * height // rows), -(-(row + 1) * height // rows)
            left, right = -(-column * width // columns), -(-(column + 1) * width // columns)
            # at least one pixel, for images with fewer pixels than the grid has cells
            region = image[
                min(top, height - 1) : max(bottom, top + 1), min(left, width - 1) : max(right, left + 1)
            ]
            patch = Image.fromarray(region).resize((PATCH_SIDE, PATCH_SIDE))
            kept.append(np.asarray(patch))

    def table(self, training_counts: np.ndarray | None = None) -> list[dict]:
        """One row per code, most used first: its cells and share, its dominant class and purity, and
        (given the training split's counts) its share there."""
        total = max(int(self.cells.sum()), 1)
        training_total = max(int(training_counts.sum()), 1) if training_counts is not None else 1
        rows = []
        for code in np.argsort(-self.cells, kind="stable"):
            votes = self.labels[code]
            labelled = int(votes.sum())
            row = {
                "code": int(code),
                "cells": int(self.cells[code]),
                "share": self.cells[code] / total,
                "dominant_class": self.class_names[int(votes.argmax())] if labelled else None,
                "purity": votes.max() / labelled if labelled else None,
            }
            if training_counts is not None:
                row["training_share"] = training_counts[code] / training_total
            rows.append(row)
        return rows

    def usage(self, training_counts: np.ndarray | None = None) -> dict:
        """Dead codes (never sent) and perplexity (the number of equally used codes with the same
        entropy) on this split and, given its counts, the training split."""
        summary = {}
        for name, counts in (("split", self.cells), ("training", training_counts)):
            if counts is None:
                continue
            shares = counts[counts > 0] / counts.sum()
            summary[f"{name}_dead_codes"] = int((counts == 0).sum())
            summary[f"{name}_perplexity"] = float(np.exp(-(shares * np.log(shares)).sum()))
        return summary


def write_codes_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
