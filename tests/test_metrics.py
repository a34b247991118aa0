"""Every metric against an independent computation on hand-made mask pairs: by hand (counted in the
comments) and, where it has them, torchmetrics."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

from embeddings_squeeze.data.labels import IGNORE_INDEX
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.utils.metrics import (
    BoundaryF,
    Scores,
    _boundaries,
    _near,
    check_ranking,
    chosen,
    metric_named,
)

# 0 top left (3 x 3), 1 the right half (6 x 3), 2 bottom left (3 x 3); the prediction moves the 0|1
# edge of the top half one column right
TARGET = torch.tensor([[0, 0, 0, 1, 1, 1]] * 3 + [[2, 2, 2, 1, 1, 1]] * 3)
PREDICTION = torch.tensor([[0, 0, 0, 0, 1, 1]] * 3 + [[2, 2, 2, 1, 1, 1]] * 3)


def value(name: str, prediction=PREDICTION, target=TARGET, classes: int = 3, metric=None) -> float:
    metric = metric or metric_named(name)
    return metric.value(metric.statistics(prediction, target, classes)).item()


def test_iou_dice_and_pixel_accuracy_by_hand():
    # class 0: 9 true pixels, 12 predicted, 9 right; class 1: 18 true, 15 predicted, 15 right; class 2: 9/9
    assert value("iou") == pytest.approx((9 / 12 + 15 / 18 + 1) / 3)
    assert value("dice") == pytest.approx((2 * 9 / 21 + 2 * 15 / 33 + 1) / 3)
    assert value("pixel_accuracy") == pytest.approx(33 / 36)


def test_dice_and_accuracy_agree_with_torchmetrics():
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (40, 50), generator=generator)
    noise = torch.randint(0, 4, (40, 50), generator=generator)
    prediction = torch.where(torch.rand(40, 50, generator=generator) < 0.7, target, noise)
    dice = multiclass_f1_score(prediction, target, num_classes=4, average="macro")
    assert value("dice", prediction, target, 4) == pytest.approx(dice.item())
    accuracy = multiclass_accuracy(prediction, target, num_classes=4, average="micro")
    assert value("pixel_accuracy", prediction, target, 4) == pytest.approx(accuracy.item())


def test_boundary_f_by_hand():
    # boundary pixels (a 4-neighbour of another label), counted on the grids above:
    #   true 0: (0,2) (1,2) (2,2) (2,0) (2,1)          predicted 0: (0,3) (1,3) (2,3) (2,0) (2,1) (2,2)
    #   true 1: (0..5, 3)                              predicted 1: (0..2, 4) (3..5, 3)
    #   true 2: (3,0) (3,1) (3,2) (4,2) (5,2)          predicted 2: the same
    # exact matches: class 0 3 of 6 predicted, 3 of 5 true; class 1 3 of 6 and 3 of 6; class 2 all
    exact = BoundaryF(tolerance=0)
    f0 = 2 * (3 / 6) * (3 / 5) / (3 / 6 + 3 / 5)
    assert value("", metric=exact) == pytest.approx((f0 + 0.5 + 1) / 3)
    assert value("", metric=BoundaryF(tolerance=1)) == 1.0  # every moved edge pixel is one column off


def test_boundary_f_counts_an_ignored_band_as_the_edge():
    target = torch.tensor([[0, 0, IGNORE_INDEX, 1, 1]] * 5)  # the uncertain band between the classes
    right_edge = torch.tensor([[0, 0, 0, 1, 1]] * 5)  # its edge inside the band
    wrong_edge = torch.tensor([[0, 1, 1, 1, 1]] * 5)  # its edge two columns into class 0
    assert value("", right_edge, target, 2, BoundaryF(tolerance=1)) == 1.0
    # class 0's edge (column 0) is 1 from its true edge (column 1): F 1; class 1's (column 1) is 2 from
    # its true edge (column 3), beyond the tolerance: F 0
    assert value("", wrong_edge, target, 2, BoundaryF(tolerance=1)) == 0.5
    # and the band counts for nothing in the confusion-based metrics
    assert value("pixel_accuracy", right_edge, target, 2) == 1.0


def test_a_split_sums_statistics_before_the_value():
    scores = Scores(chosen(["dice", "pixel_accuracy", "boundary_f"]), ["a", "b", "c"])
    per_image = [scores.add(PREDICTION, TARGET), scores.add(TARGET, TARGET)]
    assert per_image[1] == {"iou": 1.0, "dice": 1.0, "pixel_accuracy": 1.0, "boundary_f": 1.0}
    report = scores.report()
    assert report["pixel_accuracy"] == pytest.approx((33 + 36) / 72)  # not the mean of 33/36 and 1
    assert report["class_dice"]["a"] == pytest.approx(2 * (9 + 9) / (12 + 9 + 9 + 9))
    assert report["dice_ci"] is None and report["dice_note"] == "2 images: too few for an interval"


def test_unknown_names_are_refused():
    with pytest.raises(UserError, match="unknown --metrics 'hausdorff'; choose iou, dice"):
        chosen(["hausdorff"])
    check_ranking("delta_dice", chosen(["dice"]))
    with pytest.raises(UserError, match="--rank_by 'delta_boundary_f' is not a metric of this comparison"):
        check_ranking("delta_boundary_f", chosen(["dice"]))


@given(
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    distance=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
    density=st.sampled_from([0.02, 0.2, 0.6]),
)
def test_boundary_tolerance_is_scipys_chessboard_dilation(height, width, distance, seed, density):
    """The boundary F-score's tolerance band: every pixel within ``distance`` (chessboard) of the mask,
    as scipy dilates it with a square, at image edges too."""
    mask = torch.rand(2, height, width, generator=torch.Generator().manual_seed(seed)) < density
    square = np.ones((1, 2 * distance + 1, 2 * distance + 1), dtype=bool)
    expected = ndimage.binary_dilation(mask.numpy(), structure=square)
    assert np.array_equal(_near(mask, distance).numpy(), expected)


@given(
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    classes=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_boundary_pixels_are_those_scipys_erosion_removes(height, width, classes, seed):
    """A class's boundary pixels: its pixels with a 4-neighbour of another label, image edges none; by
    scipy, the class's mask less its erosion by a cross, the outside counting as the class."""
    labels = torch.randint(0, classes, (height, width), generator=torch.Generator().manual_seed(seed))
    cross = ndimage.generate_binary_structure(2, 1)
    expected = [(labels == c).numpy() & ~ndimage.binary_erosion((labels == c).numpy(), cross, border_value=1)
                for c in range(classes)]  # fmt: skip
    assert np.array_equal(_boundaries(labels, classes).numpy(), np.stack(expected))
