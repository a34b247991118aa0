import re

import numpy as np
import pytest
import torch
from helpers import tiny_datamodule, tiny_model
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from embeddings_squeeze.data.labels import IGNORE_INDEX, index_to_labels, trimap_to_labels
from embeddings_squeeze.data.synthetic import make_synthetic_dataset
from embeddings_squeeze.errors import UserError


def datamodule(root, image_size=32, mask_mode="trimap", seed=42, **data):
    module = tiny_datamodule(root, tiny_model(image_size=image_size, mask_mode=mask_mode), seed, **data)
    module.setup()
    return module


def test_seeded_split_is_disjoint_and_complete(pet_root):
    record = datamodule(pet_root, seed=1).split_record()
    trainval_ids = [
        line.split()[0] for line in (pet_root / "oxford-iiit-pet/annotations/trainval.txt").open()
    ]
    assert sorted(record["train"] + record["val"]) == sorted(trainval_ids)
    assert not set(record["train"]) & set(record["val"])
    assert len(record["val"]) == round(0.1 * len(trainval_ids))
    assert len(record["test"]) == 6


def test_split_depends_on_split_seed_only(pet_root):
    first = datamodule(pet_root, split_seed=1).split_record()
    assert datamodule(pet_root, split_seed=1).split_record() == first
    # the training seed shuffles batches but never moves an image between splits
    assert all(datamodule(pet_root, split_seed=1, seed=s).split_record() == first for s in range(2, 6))
    others = [
        datamodule(pet_root, split_seed=s, val_fraction=0.25).split_record()["val"] for s in range(2, 6)
    ]
    assert any(val != others[0] for val in others[1:])


def test_a_last_training_batch_of_one_image_is_dropped(tmp_path):
    make_synthetic_dataset(tmp_path, 10, 2, min_size=32, max_size=32)
    module = datamodule(tmp_path, val_fraction=0.1, batch_size=4)  # 9 training images: 4 + 4 + 1
    sizes = [len(batch[0]) for batch in module.train_dataloader()]
    assert sizes == [4, 4]
    module = datamodule(tmp_path, val_fraction=0.2, batch_size=4)  # 8 images: nothing dropped
    assert [len(batch[0]) for batch in module.train_dataloader()] == [4, 4]


def test_subset_size_limits_each_split_deterministically(pet_root):
    record = datamodule(pet_root, subset_size=3, val_fraction=0.25).split_record()
    assert [len(record[s]) for s in ("train", "val", "test")] == [3, 3, 3]
    assert datamodule(pet_root, subset_size=3, val_fraction=0.25).split_record() == record
    full = datamodule(pet_root, val_fraction=0.25).split_record()
    assert set(record["train"]) <= set(full["train"])


def test_samples_are_resized_normalised_tensors(pet_root):
    split = datamodule(pet_root, image_size=40).splits["train"]
    for position in range(len(split)):
        pixels, labels, index = split[position]
        assert pixels.shape == (3, 40, 40) and pixels.dtype == torch.float32
        assert labels.shape == (40, 40) and labels.dtype == torch.int64
        assert index == position
        # nearest-neighbour resizing never invents labels between classes
        assert set(labels.unique().tolist()) <= {0, 1, 2}


def test_binary_mode_ignores_the_border():
    trimap = np.array([[1, 2, 3]], dtype=np.uint8)
    assert trimap_to_labels(trimap, "trimap").tolist() == [[0, 1, 2]]
    assert trimap_to_labels(trimap, "binary").tolist() == [[0, 1, IGNORE_INDEX]]


masks = arrays(np.uint8, st.tuples(st.integers(0, 6), st.integers(0, 6)), elements=st.integers(0, 255))


@given(masks, st.sampled_from(["trimap", "binary"]))
def test_trimap_labels_are_the_documented_mapping_or_a_refusal_naming_the_bad_values(trimap, mode):
    meaning = {1: 0, 2: 1, 3: 2 if mode == "trimap" else IGNORE_INDEX}
    bad = sorted(set(trimap.flatten().tolist()) - set(meaning))
    if bad:
        with pytest.raises(ValueError, match=re.escape(f"found {bad}")):
            trimap_to_labels(trimap, mode)
    else:
        expected = [[meaning[value] for value in row] for row in trimap.tolist()]
        assert trimap_to_labels(trimap, mode).tolist() == expected


@given(masks, st.integers(1, 8), st.integers(0, 255))
def test_index_labels_keep_classes_map_the_ignore_value_and_refuse_the_rest(mask, num_classes, ignore):
    def meaning(value):
        return IGNORE_INDEX if value == ignore else value if value < num_classes else None

    bad = sorted({value for value in mask.flatten().tolist() if meaning(value) is None})
    if bad:
        with pytest.raises(ValueError, match=re.escape(f"found {bad}")):
            index_to_labels(mask, num_classes, ignore)
    else:
        labels = index_to_labels(mask, num_classes, ignore)
        assert labels.dtype == np.uint8
        assert labels.tolist() == [[meaning(value) for value in row] for row in mask.tolist()]


def test_binary_mode_through_the_datamodule(pet_root):
    split = datamodule(pet_root, mask_mode="binary").splits["test"]
    values = set()
    for position in range(len(split)):
        values |= set(split[position][1].unique().tolist())
    assert values == {0, 1, IGNORE_INDEX}


def test_missing_dataset_says_what_to_do(tmp_path):
    module = tiny_datamodule(tmp_path)
    with pytest.raises(UserError, match="make-data"):
        module.setup()


def test_unreachable_download_says_what_to_do(tmp_path, unreachable_network):
    # torchvision's real download, made unreachable, must become one clear message
    module = tiny_datamodule(tmp_path)
    module.download = True
    with pytest.raises(UserError, match="download failed"):
        module.prepare_data()


def test_corrupt_image_names_the_file(tmp_path):
    base = make_synthetic_dataset(tmp_path, 4, 2, min_size=32, max_size=32)
    victim = sorted((base / "images").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:40])
    module = datamodule(tmp_path, subset_size=None)
    split = next(s for s in module.splits.values() if victim.stem in s.image_ids)
    with pytest.raises(UserError, match=victim.stem):
        split[split.image_ids.index(victim.stem)]


def test_trimap_with_unknown_values_names_the_file(tmp_path):
    base = make_synthetic_dataset(tmp_path, 4, 2, min_size=32, max_size=32)
    victim = sorted((base / "annotations" / "trimaps").glob("*.png"))[0]
    Image.fromarray(np.full((32, 32), 7, dtype=np.uint8)).save(victim)
    split = next(s for s in datamodule(tmp_path).splits.values() if victim.stem in s.image_ids)
    with pytest.raises(UserError, match=f"{victim.stem}.*1, 2 or 3"):
        split[split.image_ids.index(victim.stem)]
