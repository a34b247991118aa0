"""The task floor: what it costs to send a finished mask instead of features.

Lossless coders for one (H, W) label map:

- ``png_file`` / ``webp_file``: a real PNG or lossless WebP file at its best practical setting (the
  PNG with the smallest palette and bit depth that hold the labels, unfiltered rows at maximum
  compression; the WebP at libwebp's default lossless effort), and ``*_header_bytes``, its fixed part.
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
import struct
import zlib

import constriction
import numpy as np
from PIL import Image

PRIOR = 0.5
_MODEL = constriction.stream.model.Categorical(perfect=False)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WEBP_LOSSLESS_HEADER = 12 + 8 + 5  # RIFF container, the VP8L chunk's name and length, its image header


def _png_chunk(name: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + name + data + struct.pack(">I", zlib.crc32(name + data))


def png_file(mask: np.ndarray, labels: int) -> bytes:
    """``mask`` (values below ``labels`` <= 256) as a palette PNG: label i is colour (i, i, i).

    Written here rather than by Pillow, whose encoder keeps its own adaptive row filters: the PNG
    specification recommends no filtering for palette images, and unfiltered rows compress to
    about a third fewer bytes on label maps.
    """
    depth = next(bits for bits in (1, 2, 4, 8) if labels <= 2**bits)
    height, width = mask.shape
    bits = (mask.astype(np.uint8)[..., None] >> np.arange(depth - 1, -1, -1, dtype=np.uint8)) & 1
    rows = np.packbits(bits.reshape(height, width * depth), axis=1)  # each row padded to whole bytes
    scanlines = np.hstack([np.zeros((height, 1), dtype=np.uint8), rows]).tobytes()  # filter type 0
    header = struct.pack(">IIBBBBB", width, height, depth, 3, 0, 0, 0)  # colour type 3: palette
    palette = bytes(value for label in range(labels) for value in (label, label, label))
    return b"".join(
        [PNG_SIGNATURE, _png_chunk(b"IHDR", header), _png_chunk(b"PLTE", palette),
         _png_chunk(b"IDAT", zlib.compress(scanlines, 9)), _png_chunk(b"IEND", b"")]
    )  # fmt: skip


def png_header_bytes(data: bytes) -> int:
    """Everything in a ``png_file`` but its compressed image data."""
    idat = data.index(b"IDAT")
    return len(data) - struct.unpack(">I", data[idat - 4 : idat])[0]


def webp_file(mask: np.ndarray) -> bytes:
    """``mask`` as a lossless WebP (which stores it as a grey image) at libwebp's default effort.

    Its exhaustive mode (method 6 at quality 100) saves about 6 % on pet-sized masks at 100x the
    time (290 ms against 3 ms for a 430 x 400 mask), which was most of visualize's time per image;
    the context coder below is the tightest floor either way."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8), mode="L").save(
        buffer, format="WEBP", lossless=True, quality=100, method=4
    )
    return buffer.getvalue()


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
        pixels = contexts.size
        order = np.argsort(contexts, kind="stable")  # pixels grouped by context, raster order kept
        grouped, symbols = contexts[order], mask.ravel()[order]
        starts = np.ones(pixels, dtype=bool)
        np.not_equal(grouped[1:], grouped[:-1], out=starts[1:])
        group_start = np.maximum.accumulate(np.where(starts, np.arange(pixels), 0))
        raster = np.empty_like(order)  # each pixel's place in the grouped order
        raster[order] = np.arange(pixels)
        # a label at a time, over 1-d arrays: counts of that label before each pixel in its context
        counts = np.empty((self.labels, pixels))
        for label in range(self.labels):
            is_label = symbols == label
            seen = np.cumsum(is_label, dtype=np.int64) - is_label  # before each pixel, over all contexts
            counts[label] = (seen - seen[group_start])[raster]  # ... less those of earlier contexts
        counts += PRIOR
        totals = (np.arange(pixels) - group_start)[raster] + self.labels * PRIOR  # their sum, exactly
        return np.ascontiguousarray((counts / totals).T)

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
