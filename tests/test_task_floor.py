"""The task floor: lossless mask coders, the grid oracle and their sizes."""

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from embeddings_squeeze.data.labels import IGNORE_INDEX
from embeddings_squeeze.utils.iou import confusion_matrices, mean_iou
from embeddings_squeeze.utils.mask_coding import (
    ContextMaskCoder,
    grid_oracle,
    png_file,
    png_header_bytes,
    read_mask,
    upsample,
    webp_file,
)
from embeddings_squeeze.utils.task_floor import ORACLE_CELLS, SIZE_BYTES, TaskFloor


def pet_mask(size=96, seed=0) -> np.ndarray:
    """A pet-like trimap: a wobbly ellipse (0) on background (1) with a border band (2)."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:size, :size] / size
    centre, radii = rng.uniform(0.35, 0.65, 2), rng.uniform(0.2, 0.35, 2)
    radius = ((rows - centre[0]) / radii[0]) ** 2 + ((columns - centre[1]) / radii[1]) ** 2
    radius += 0.1 * np.sin(columns * rng.uniform(10, 30))
    mask = np.where(radius < 1, 0, 1)
    mask[(radius > 0.85) & (radius < 1.15)] = 2
    return mask.astype(np.uint8)


@pytest.mark.parametrize("labels", [2, 3, 4])
def test_context_coder_round_trip(labels):
    coder = ContextMaskCoder(labels)
    rng = np.random.default_rng(labels)
    for mask in (
        pet_mask(48, seed=labels) % labels,
        rng.integers(0, labels, (17, 23)),
        np.zeros((5, 9), int),
    ):
        data = coder.encode(mask)
        assert np.array_equal(coder.decode(data, mask.shape), mask)


def test_context_coder_beats_png_on_silhouettes_and_costs_what_it_predicts():
    coder = ContextMaskCoder(3)
    mask = pet_mask(224)
    data = coder.encode(mask)
    probabilities = coder.probabilities(mask)
    ideal_bytes = -np.log2(probabilities[np.arange(mask.size), mask.ravel()]).sum() / 8
    assert ideal_bytes <= len(data) <= ideal_bytes + 4  # the range coder's last word
    assert len(data) < len(png_file(mask, 3)) and len(data) < len(webp_file(mask))


def test_adaptive_probabilities_by_hand():
    # a 1 x 3 row: every pixel's context is (left, outside, outside, outside); counts start at 1/2
    probabilities = ContextMaskCoder(2).probabilities(np.array([[1, 1, 0]]))
    # pixel 0: context (outside x 4), fresh: (1/2, 1/2); pixel 1: context (left=1, ...), fresh: (1/2, 1/2);
    # pixel 2: same context as pixel 1, which saw a 1: (1/2, 3/2) / 2
    assert np.allclose(probabilities, [[0.5, 0.5], [0.5, 0.5], [0.25, 0.75]])


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 40), st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_adaptive_probabilities_equal_counts_kept_pixel_by_pixel(labels, height, width, seed):
    """The vectorised counts against the decoder's own way: a table of counts per context, updated
    after each pixel in raster order (many labels included; equal to the last bit)."""
    generator = np.random.default_rng(seed)
    palette = generator.choice(labels, size=min(labels, 3), replace=False)  # few values: contexts recur
    mask = palette[generator.integers(0, len(palette), (height, width))]
    padded = np.pad(mask, ((1, 0), (1, 1)), constant_values=labels)  # outside: a label of its own
    counts, expected = {}, []
    for row in range(1, height + 1):
        for column in range(1, width + 1):
            context = tuple(padded[row + dr, column + dc] for dr, dc in ((0, -1), (-1, -1), (-1, 0), (-1, 1)))
            seen = counts.setdefault(context, np.full(labels, 0.5))
            expected.append(seen / seen.sum())
            seen[padded[row, column]] += 1
    assert np.array_equal(ContextMaskCoder(labels).probabilities(mask), np.array(expected))


def test_png_is_a_two_bit_palette_file_of_the_size_computed_by_hand():
    mask = pet_mask(64)
    data = png_file(mask, 3)
    with Image.open(io.BytesIO(data)) as image:  # Pillow reads it: a real PNG, lossless
        assert image.mode == "P" and len(image.getpalette()) == 3 * 3
        assert np.array_equal(np.array(image), mask)
    # by hand: 3 labels fit 2 bits; rows of 64 pixels pack into 16 bytes, each after filter byte 0
    rows = b"".join(b"\x00" + bytes(int("".join(f"{v:02b}" for v in row[i : i + 4]), 2)
                                      for i in range(0, 64, 4)) for row in mask)  # fmt: skip
    image_data = zlib.compress(rows, 9)
    chunks = 8 + (12 + 13) + (12 + 3 * 3) + (12 + len(image_data)) + 12  # signature, IHDR, PLTE, IDAT, IEND
    assert len(data) == chunks and png_header_bytes(data) == chunks - len(image_data)
    assert struct.unpack(">IIB", data[16:25]) == (64, 64, 2)  # width, height, bit depth in IHDR
    # the same mask as Pillow writes it, 8-bit palette of 256 entries, is bigger
    pillow = io.BytesIO()
    image = Image.fromarray(mask, mode="P")
    image.putpalette([level for label in range(256) for level in (label,) * 3])
    image.save(pillow, format="PNG", optimize=True)
    assert len(data) < pillow.tell()


def test_webp_is_a_real_lossless_file():
    mask = pet_mask(64)
    data = webp_file(mask)
    # a RIFF WebP whose image chunk is VP8L, the lossless bitstream, and that decodes to the mask
    assert data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8L"
    assert int.from_bytes(data[4:8], "little") == len(data) - 8
    assert np.array_equal(read_mask(data), mask)


def test_grid_oracle_by_hand():
    target = np.array(
        [[0, 0, 1, 1],
         [0, 1, 1, 1],
         [2, 2, IGNORE_INDEX, IGNORE_INDEX],
         [2, 0, IGNORE_INDEX, IGNORE_INDEX]]
    )  # fmt: skip
    grid = grid_oracle(target, 2, 3, IGNORE_INDEX)
    # top-left: 0,0,0,1 -> 0; top-right: 1 x 4 -> 1; bottom-left: 2,2,2,0 -> 2; bottom-right: no
    # labelled pixel -> the image's most common label (1: five pixels)
    assert grid.tolist() == [[0, 1], [2, 1]]
    assert upsample(grid, (4, 4)).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 1, 1], [2, 2, 1, 1]]


def test_oracle_at_full_resolution_is_the_ground_truth():
    mask = pet_mask(56)
    assert np.array_equal(upsample(grid_oracle(mask, 56, 3, IGNORE_INDEX), mask.shape), mask)


def test_task_floor_rows():
    floor = TaskFloor(("pet", "background", "border"), reference=True)
    masks = [pet_mask(64, seed) for seed in range(3)]
    targets = [mask.astype(np.int64) for mask in masks]
    targets[0][:4] = IGNORE_INDEX
    for mask, target in zip(masks, targets):
        floor.update(torch.from_numpy(mask), torch.from_numpy(target))
    report = floor.report()
    coder = ContextMaskCoder(3)
    # the context coder sends the mask's size (4 bytes), then the labels
    assert report["mask_context"]["bytes_mean"] == SIZE_BYTES + np.mean([len(coder.encode(m)) for m in masks])
    assert report["mask_context"]["header_bytes"] == SIZE_BYTES
    assert report["mask_png"]["bytes_mean"] == np.mean([len(png_file(m, 3)) for m in masks])
    # the ground truth's ignore label is coded as a label of its own
    gt_sizes = [len(ContextMaskCoder(4).encode(np.where(t == IGNORE_INDEX, 3, t))) for t in targets]
    assert report["gt_mask_context"]["bytes_mean"] == SIZE_BYTES + np.mean(gt_sizes)
    for cells in ORACLE_CELLS:
        confusion = sum(
            confusion_matrices(
                torch.from_numpy(upsample(grid_oracle(t, cells, 3, IGNORE_INDEX), t.shape))[None],
                torch.from_numpy(t)[None], 3,
            )[0]
            for t in targets
        )  # fmt: skip
        assert report[f"grid_oracle_{cells}"]["miou"] == mean_iou(confusion)
    assert report["grid_oracle_7"]["miou"] < report["grid_oracle_56"]["miou"]
    assert report["grid_oracle_7"]["bytes_mean"] < report["grid_oracle_56"]["bytes_mean"]


def test_task_floor_without_references_codes_only_predictions():
    floor = TaskFloor(("pet", "background"))
    floor.update(torch.zeros(8, 8, dtype=torch.long), torch.zeros(8, 8, dtype=torch.long))
    assert set(floor.report()) == {"mask_png", "mask_webp", "mask_context"}
