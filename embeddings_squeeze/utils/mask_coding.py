"""The task floor: what it costs to send a finished mask instead of features.

Lossless coders for one (H, W) label map:

- ``png_bytes`` / ``webp_bytes``: a real PNG (palette, optimised) or lossless WebP file, in bytes.
- ``ContextMaskCoder``: an adaptive context-model coder. Pixels are coded in raster order; each
  label's probabilities come from counts of the labels that followed the same context earlier in
  the same image, the context being the labels of the left, upper-left, upper and upper-right
  neighbours (outside the image: a label of its own). Counts start at 1/2 (the Krichevsky-Trofimov
  estimate), so nothing is sent but the range-coded labels (``constriction``); the mask size and
  the number of labels are fixed by the model, like a payload's grid.

``grid_oracle`` reduces a ground-truth mask to an N x N grid of majority labels, the reference an
oracle that knew the answer could send.
"""

from __future__ import annotations

import io

import constriction
import numpy as np
from PIL import Image

PRIOR = 0.5
_MODEL = constriction.stream.model.Categorical(perfect=False)


GREY_PALETTE = [value for label in range(256) for value in (label, label, label)]


def png_bytes(mask: np.ndarray) -> int:
    """Bytes of ``mask`` (labels < 256) saved as an optimised palette PNG.

    Label i gets the colour (i, i, i): distinct colours, so the optimiser may pack the palette
    and the bit depth but never merge two labels.
    """
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(GREY_PALETTE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.tell()


def webp_bytes(mask: np.ndarray) -> int:
    """Bytes of ``mask`` saved as a lossless WebP (which stores it as a grey image)."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8), mode="L").save(buffer, format="WEBP", lossless=True)
    return buffer.tell()


def read_mask(data: bytes) -> np.ndarray:
    """Labels of a PNG or WebP mask file written by the functions above (label i is grey level i)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.array(image.convert("L"))


class ContextMaskCoder:
    """Codes (H, W) masks whose values are ``0 .. labels - 1``."""

    def __init__(self, labels: int):
        self.labels = labels
        self.outside = labels  # the label neighbours outside the image carry

    def _contexts(self, mask: np.ndarray) -> np.ndarray:
        padded = np.pad(mask.astype(np.int64), ((1, 0), (1, 1)), constant_values=self.outside)
        left, up_left = padded[1:, :-2], padded[:-1, :-2]
        up, up_right = padded[:-1, 1:-1], padded[:-1, 2:]
        base = self.labels + 1
        return ((left * base + up_left) * base + up) * base + up_right

    def probabilities(self, mask: np.ndarray) -> np.ndarray:
        """(H*W, labels) adaptive probabilities each pixel is coded with, in raster order."""
        contexts = self._contexts(mask).ravel()
        symbols = mask.ravel().astype(np.int64)
        order = np.argsort(contexts, kind="stable")  # pixels grouped by context, raster order kept
        one_hot = np.zeros((len(symbols), self.labels))
        one_hot[np.arange(len(symbols)), symbols[order]] = 1
        seen = np.cumsum(one_hot, axis=0) - one_hot  # counts before each pixel, over all contexts
        group_start = np.searchsorted(contexts[order], contexts[order], side="left")
        before = seen - seen[group_start]  # ... minus those of earlier contexts
        counts = np.empty_like(before)
        counts[order] = before
        counts += PRIOR
        return counts / counts.sum(axis=1, keepdims=True)

    def encode(self, mask: np.ndarray) -> bytes:
        """(H, W) labels -> the range-coded bytes."""
        if mask.min() < 0 or mask.max() >= self.labels:
            raise ValueError(f"mask labels must lie in 0..{self.labels - 1}")
        encoder = constriction.stream.queue.RangeEncoder()
        encoder.encode(mask.ravel().astype(np.int32), _MODEL, self.probabilities(mask))
        return encoder.get_compressed().astype(">u4").tobytes()

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        """Bytes -> (H, W) labels, pixel by pixel (each context needs the labels before it)."""
        height, width = shape
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype=">u4").astype(np.uint32))
        base = self.labels + 1
        counts = np.full(((base) ** 4, self.labels), PRIOR)
        mask = np.full((height + 1, width + 2), self.outside, dtype=np.int64)
        for row in range(1, height + 1):
            for column in range(1, width + 1):
                context = (
                    (mask[row, column - 1] * base + mask[row - 1, column - 1]) * base + mask[row - 1, column]
                ) * base + mask[row - 1, column + 1]
                probabilities = counts[context] / counts[context].sum()
                label = int(decoder.decode(_MODEL, probabilities[None])[0])
                counts[context, label] += 1
                mask[row, column] = label
        return mask[1:, 1:-1]


def grid_oracle(target: np.ndarray, cells: int, labels: int, ignore_index: int) -> np.ndarray:
    """(H, W) ground truth -> (cells, cells) majority labels over each cell's labelled pixels.

    Cell (r, c) holds the pixels (i, j) with floor(i * cells / H) = r and floor(j * cells / W) = c,
    the pixels nearest-neighbour upsampling maps back to it. A cell with no labelled pixel takes
    the image's most common label.
    """
    height, width = target.shape
    rows = np.arange(height) * cells // height
    columns = np.arange(width) * cells // width
    cell = (rows[:, None] * cells + columns[None, :]).ravel()
    valid = target.ravel() != ignore_index
    votes = np.zeros((cells * cells, labels), dtype=np.int64)
    np.add.at(votes, (cell[valid], target.ravel()[valid].astype(np.int64)), 1)
    fallback = int(votes.sum(axis=0).argmax())
    grid = votes.argmax(axis=1)
    grid[votes.sum(axis=1) == 0] = fallback
    return grid.reshape(cells, cells)


def upsample(grid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling that inverts ``grid_oracle``'s cell assignment."""
    cells_h, cells_w = grid.shape
    rows = np.arange(shape[0]) * cells_h // shape[0]
    columns = np.arange(shape[1]) * cells_w // shape[1]
    return grid[rows[:, None], columns[None, :]]
