"""What the codes stand for: the atlas's counts by hand, and visualize's code files against a recount
of what the model sends."""

import csv

import numpy as np
import pytest
import torch
from helpers import tiny_datamodule, visualize_summary
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from embeddings_squeeze.data.labels import IGNORE_INDEX, ClassSet
from embeddings_squeeze.engine.checkpoint import load_module
from embeddings_squeeze.utils.code_figures import CODES_COLUMN, atlas_title, plot_code_maps
from embeddings_squeeze.utils.codes import (
    PATCHES_PER_CODE,
    CodeAtlas,
    cell_of_pixels,
    code_colours,
    majority_labels,
)
from embeddings_squeeze.utils.comparison import ScoredImage
from embeddings_squeeze.utils.figures import figure_size_pixels


def test_cells_follow_the_image_not_the_square_input():
    # a 4 x 6 image on a 2 x 2 grid: rows 0-1 and 2-3, columns 0-2 and 3-5
    assert cell_of_pixels((4, 6), (2, 2)).tolist() == [[0, 0, 0, 1, 1, 1]] * 2 + [[2, 2, 2, 3, 3, 3]] * 2


@given(
    height=st.integers(1, 30),
    width=st.integers(1, 30),
    grid=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    classes=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
)
def test_each_cells_majority_is_a_recount_of_its_pixels(height, width, grid, classes, seed):
    """Grids finer than the image (cells without pixels) and ignored pixels included; ties go to
    the lower label."""
    rng = np.random.default_rng(seed)
    target = rng.choice([*range(classes), IGNORE_INDEX], size=(height, width))
    cells = cell_of_pixels((height, width), grid)
    expected = []
    for cell in range(grid[0] * grid[1]):
        labels = target[(cells == cell) & (target != IGNORE_INDEX)]
        votes = np.bincount(labels, minlength=classes)
        expected.append(int(votes.argmax()) if labels.size else -1)
    assert majority_labels(cells, target, grid[0] * grid[1], classes).tolist() == expected


def test_the_atlas_counts_by_hand():
    atlas = CodeAtlas(4, ["pet", "background"])
    codes = np.array([[3, 3], [1, 3]])
    target = np.array(
        [[0, 0, 1, 1],
         [0, 0, 1, 1],
         [1, 1, 0, 1],
         [1, 1, IGNORE_INDEX, IGNORE_INDEX]]
    )  # fmt: skip
    image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    atlas.add(codes, target, image)
    # cells: top left pet (4 of 4), top right background, bottom left background, bottom right 1 pet
    # and 1 background labelled (a tie: the lower label, pet, wins)
    rows = {row["code"]: row for row in atlas.table(np.array([0, 5, 0, 15]))}
    assert rows[3]["cells"] == 3 and rows[3]["share"] == pytest.approx(3 / 4)
    assert rows[3]["dominant_class"] == "pet" and rows[3]["purity"] == pytest.approx(2 / 3)
    assert rows[1]["dominant_class"] == "background" and rows[1]["purity"] == 1.0
    assert rows[0]["cells"] == 0 and rows[0]["dominant_class"] is None
    assert rows[3]["training_share"] == pytest.approx(15 / 20)
    usage = atlas.usage(np.array([0, 5, 0, 15]))
    assert usage["split_dead_codes"] == 2 and usage["training_dead_codes"] == 2
    shares = np.array([3 / 4, 1 / 4])
    assert usage["split_perplexity"] == pytest.approx(np.exp(-(shares * np.log(shares)).sum()))
    # one patch per code and image: code 3's first cell, the top left 2 x 2 pixels, resized
    assert len(atlas.patches[3]) == 1 and atlas.patches[3][0].shape == (32, 32, 3)
    top_left = np.asarray(Image.fromarray(image[:2, :2]).resize((32, 32)))
    assert np.array_equal(atlas.patches[3][0], top_left)


def test_patches_stay_few_however_many_images():
    atlas = CodeAtlas(2, ["a", "b"])
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    for _ in range(3 * PATCHES_PER_CODE):
        codes = np.array([[0, 1], [1, 1]])
        atlas.add(codes, np.zeros((8, 8), dtype=np.int64), image if atlas.wants_patches(codes) else None)
    assert {code: len(kept) for code, kept in atlas.patches.items()} == {
        0: PATCHES_PER_CODE,
        1: PATCHES_PER_CODE,
    }
    assert not atlas.wants_patches(np.array([[0, 1]]))  # later images are not even read
    assert atlas.cells.tolist() == [3 * PATCHES_PER_CODE, 9 * PATCHES_PER_CODE]


def test_each_code_keeps_its_colour():
    colours = code_colours(1024)
    assert np.array_equal(colours[:16], code_colours(16)) and len({tuple(c) for c in colours[:256]}) == 256


def test_visualize_writes_code_maps_and_an_atlas_that_match_a_recount(trained, pet_root, tmp_path):
    summary = visualize_summary(trained["baseline"], trained["vq"], pet_root, tmp_path)
    vq = load_module(trained["vq"], "squeezed").eval()
    data = tiny_datamodule(pet_root)
    data.setup()
    counts = np.zeros(vq.bottleneck.alphabet_size, dtype=np.int64)
    majorities = {}  # code -> the majority label of each labelled cell it was sent for
    files = data.files["test"]
    with torch.no_grad():
        for position in range(len(files)):  # what the sender sends for each test image
            codes = vq.encode_image(files[position][0])[1][..., 0].numpy()
            np.add.at(counts, codes.flatten(), 1)
            target = files.load(position, files.transform.native_labels).numpy()
            rows_of = np.arange(target.shape[0]) * codes.shape[0] // target.shape[0]  # pixel -> cell row
            columns_of = np.arange(target.shape[1]) * codes.shape[1] // target.shape[1]
            for (row, column), code in np.ndenumerate(codes):
                labels = target[np.ix_(rows_of == row, columns_of == column)]
                labels = labels[labels != IGNORE_INDEX]
                if labels.size:  # the commonest label, the lower one on a tie
                    majorities.setdefault(int(code), []).append(int(np.bincount(labels).argmax()))
    with open(tmp_path / "codes_test.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {int(row["code"]): int(row["cells"]) for row in rows} == dict(enumerate(counts.tolist()))
    for row in rows:
        if int(row["code"]) in majorities:
            labels = np.bincount(majorities[int(row["code"])])
            assert row["dominant_class"] == vq.class_names[labels.argmax()]
            assert float(row["purity"]) == pytest.approx(labels.max() / labels.sum())
    assert summary["codes"]["split_dead_codes"] == int((counts == 0).sum())
    for kind in ("best", "worst"):
        with Image.open(tmp_path / f"codes_{kind}_test.png") as figure:
            assert figure.size[0] == figure_size_pixels(1)[0]  # four panels, as the seed's figures
    assert (tmp_path / "code_atlas_test.png").is_file() and (tmp_path / "index.html").is_file()


PETS = ClassSet(("pet", "background", "border"), ((1, 1, 1), (2, 2, 2), (3, 3, 3)))


def scored_image(position: int, codes: np.ndarray) -> ScoredImage:
    generator = np.random.default_rng(position)
    target = generator.integers(0, 3, (100, 50))  # portrait: the panels fill their cells' height
    pixels = generator.integers(0, 255, (100, 50, 3), dtype=np.uint8)
    return ScoredImage(
        position, f"image_{position}", 0.5, 0.4, pixels, target, target, (target + 1) % 3, codes
    )


def test_code_maps_number_each_cell_and_keep_the_title_clear_of_the_panels(tmp_path):
    codes = np.array([[33, 54, 12], [12, 33, 7]])  # 33, 54 and 12: three greens, told apart by number
    items = [scored_image(0, codes), *[scored_image(position, codes[::-1]) for position in range(1, 5)]]
    figure = plot_code_maps(items, 64, PETS, "codes of 5 images", tmp_path / "codes.png")
    first_row = figure.axes[:4]
    numbers = [text.get_text() for text in first_row[CODES_COLUMN].texts]
    assert numbers == [str(code) for code in codes.ravel()]  # row by row, each cell's code
    renderer = FigureCanvasAgg(figure).get_renderer()
    (title,) = [text for text in figure.texts if text.get_text() == figure.get_suptitle()]
    title_bottom = title.get_window_extent(renderer).y0
    assert title_bottom > max(axis.title.get_window_extent(renderer).y1 for axis in first_row)


def test_code_maps_of_a_large_grid_number_each_code_once(tmp_path):
    codes = np.full((20, 20), 5)  # 400 cells, over the numbering limit (DeepLab sends 28 x 28)
    codes[:, 10:], codes[15:, :4] = 9, 2
    figure = plot_code_maps([scored_image(0, codes)], 16, PETS, "codes", tmp_path / "codes.png")
    panel = figure.axes[CODES_COLUMN]
    assert sorted(text.get_text() for text in panel.texts) == ["2", "5", "9"]
    for text in panel.texts:  # each at the centre of a cell of its own code
        x, y = text.get_position()
        row, column = int((y + 0.5) * 20 / 100), int((x + 0.5) * 20 / 50)
        assert codes[row, column] == int(text.get_text())
    assert panel.get_title() == "3 codes in 400 cells, each numbered once"


def test_the_atlas_calls_unused_codes_by_one_name_on_both_splits():
    usage = {"split_dead_codes": 3, "split_perplexity": 5.25, "training_dead_codes": 1,
             "training_perplexity": 9.5}  # fmt: skip
    assert atlas_title(usage, 16, 64, "test") == (
        "the 16 most used of 64 codes on the test split: 3 never sent, perplexity 5.2 (training split: "
        "1 never sent, perplexity 9.5)"
    )
    # a split that sends fewer codes than the atlas could show: its title counts the rows drawn
    usage["split_dead_codes"] = 49
    assert atlas_title(usage, 16, 64, "test").startswith(
        "the 15 most used of 64 codes on the test split: 49 never"
    )
