import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torchmetrics.classification import MulticlassJaccardIndex

from embeddings_squeeze.data.labels import IGNORE_INDEX
from embeddings_squeeze.utils.iou import class_iou, confusion_matrices, mean_iou, per_image_iou


def test_hand_computed_image():
    target = torch.tensor([[[0, 0, 1, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1]]])
    # class 0: tp 1, union 2 -> 0.5; class 1: tp 2, union 3 -> 2/3; class 2 absent from both
    assert per_image_iou(confusion_matrices(pred, target, 3)).item() == pytest.approx((0.5 + 2 / 3) / 2)


def test_class_only_in_prediction_counts_as_zero():
    target = torch.tensor([[[0, 0, 0, 0]]])
    pred = torch.tensor([[[0, 0, 0, 2]]])
    # class 0: 3/4; class 2: predicted but absent in truth -> 0; class 1 absent from both
    assert per_image_iou(confusion_matrices(pred, target, 3)).item() == pytest.approx(0.375)


def test_ignored_pixels_count_for_nothing():
    target = torch.tensor([[[0, IGNORE_INDEX, 1, IGNORE_INDEX]]])
    pred = torch.tensor([[[0, 1, 1, 2]]])
    assert per_image_iou(confusion_matrices(pred, target, 3)).item() == pytest.approx(1.0)


def test_image_with_no_labelled_pixel_is_nan():
    target = torch.full((1, 2, 2), IGNORE_INDEX)
    assert math.isnan(
        per_image_iou(confusion_matrices(torch.zeros(1, 2, 2, dtype=torch.long), target, 3)).item()
    )


def test_per_image_scores_are_independent():
    target = torch.tensor([[[0, 1]], [[1, 1]]])
    pred = torch.tensor([[[0, 1]], [[0, 0]]])
    assert per_image_iou(confusion_matrices(pred, target, 2)).tolist() == [1.0, 0.0]


def test_dataset_miou_agrees_with_torchmetrics():
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (4, 8, 8), generator=generator)
    target[0, 0, :4] = IGNORE_INDEX
    pred = torch.randint(0, 3, (4, 8, 8), generator=generator)
    reference = MulticlassJaccardIndex(3, ignore_index=IGNORE_INDEX)(pred, target).item()
    ours = mean_iou(confusion_matrices(pred, target, 3).sum(dim=0))
    assert ours == pytest.approx(reference, abs=1e-6)


def test_class_iou_marks_absent_classes_nan():
    confusion = torch.tensor([[2, 0, 0], [0, 0, 0], [1, 0, 1]])
    iou = class_iou(confusion)
    assert iou[0].item() == pytest.approx(2 / 3) and math.isnan(iou[1].item()) and iou[2].item() == 0.5


@given(
    batch=st.integers(1, 3),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    classes=st.one_of(st.integers(1, 6), st.just(150)),  # ADE20K's many classes included
    seed=st.integers(0, 2**31 - 1),
)
def test_confusion_counts_equal_a_pixel_by_pixel_tally(batch, height, width, classes, seed):
    generator = torch.Generator().manual_seed(seed)
    pred = torch.randint(0, classes, (batch, height, width), generator=generator)
    target = torch.randint(0, classes + 1, (batch, height, width), generator=generator)
    target[target == classes] = IGNORE_INDEX  # about one pixel in classes + 1 ignored
    expected = np.zeros((batch, classes, classes), dtype=np.int64)
    for (image, row, column), truth in np.ndenumerate(target.numpy()):
        if truth != IGNORE_INDEX:
            expected[image, truth, pred[image, row, column]] += 1
    assert np.array_equal(confusion_matrices(pred, target, classes).numpy(), expected)
