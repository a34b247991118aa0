"""Pascal VOC and image-folder datasets: layouts, classes, splits, ignored pixels and clear errors."""

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import tiny_datamodule, tiny_model
from PIL import Image
from torchvision.datasets import VOCSegmentation

from embeddings_squeeze.data.labels import IGNORE_INDEX, VOC_CLASS_NAMES, ClassSet, label_palette
from embeddings_squeeze.data.synthetic_scenes import FOLDER_CLASSES, make_synthetic_folder
from embeddings_squeeze.errors import UserError


def datamodule(root, dataset, **data):
    module = tiny_datamodule(root, tiny_model(dataset=dataset, image_size=32), **data)
    module.setup()
    return module


def copy_of(root, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(root, target)
    return target


def test_voc_palette_is_the_standard_one():
    palette = label_palette(256)
    # VOC's own colours: aeroplane, person, tvmonitor, and the boundary value 255
    assert palette[1] == (128, 0, 0) and palette[15] == (192, 128, 128) and palette[20] == (0, 64, 128)
    assert palette[255] == (224, 224, 192)
    assert len(set(palette[:21])) == 21


def test_voc_splits_official_val_is_test_and_val_is_carved_from_train(voc_root):
    module = datamodule(voc_root, "voc", val_fraction=0.25)
    record = module.split_record()
    lists = voc_root / "VOCdevkit/VOC2012/ImageSets/Segmentation"
    train_ids = lists.joinpath("train.txt").read_text().split()
    assert sorted(record["test"]) == sorted(lists.joinpath("val.txt").read_text().split())
    assert sorted(record["train"] + record["val"]) == sorted(train_ids)
    assert len(record["val"]) == 3 and not set(record["train"]) & set(record["val"])
    assert datamodule(voc_root, "voc", val_fraction=0.25).split_record() == record  # seeded
    assert module.classes.names == VOC_CLASS_NAMES and module.hparams.mask_mode is None


def test_voc_labels_are_torchvisions_masks_with_boundaries_ignored(voc_root):
    module = datamodule(voc_root, "voc")
    split = module.splits["test"]
    reference = VOCSegmentation(voc_root, year="2012", image_set="val")
    seen = set()
    for position in range(len(split)):
        _, labels, _ = split[position]
        _, mask = reference[reference.images.index(str(split.image_paths[position]))]
        resized = np.asarray(mask.resize((32, 32), Image.Resampling.NEAREST))
        assert torch.equal(labels, torch.from_numpy(resized.astype(np.int64)))
        seen |= set(labels.unique().tolist())
    assert IGNORE_INDEX in seen and len(seen - {0, IGNORE_INDEX}) >= 2  # several objects, 255 borders


def test_folder_reads_classes_colours_and_splits(folder_root):
    module = datamodule(folder_root, "folder")
    described = json.loads((folder_root / "classes.json").read_text())
    assert module.classes == ClassSet(described["names"], described["colours"])
    assert module.classes.names == FOLDER_CLASSES
    lists = json.loads((folder_root / "splits.json").read_text())
    record = module.split_record()
    assert sorted(record["test"]) == sorted(lists["test"])
    assert sorted(record["train"] + record["val"]) == sorted(lists["train"])


def test_folder_without_splits_holds_out_test_and_val_by_the_split_seed(folder_root, tmp_path):
    root = copy_of(folder_root, tmp_path)
    (root / "splits.json").unlink()
    record = datamodule(root, "folder", val_fraction=0.25).split_record()
    everything = sorted(p.stem for p in (root / "images").iterdir())
    assert sorted(record["train"] + record["val"] + record["test"]) == everything
    assert len(record["test"]) == 4 and len(record["val"]) == 3
    assert datamodule(root, "folder", val_fraction=0.25, split_seed=7).split_record() != record


def test_folder_ignore_value_of_its_own_is_ignored(tmp_path):
    root = tmp_path / "mine"
    make_synthetic_folder(root, n_train=3, n_test=1, min_size=32, max_size=32)
    for mask_path in (root / "masks").iterdir():  # relabel the boundary band 254 and say so
        mask = np.asarray(Image.open(mask_path)).copy()
        mask[mask == 255] = 254
        Image.fromarray(mask).save(mask_path)
    described = json.loads((root / "classes.json").read_text())
    (root / "classes.json").write_text(json.dumps({**described, "ignore_index": 254}))
    split = datamodule(root, "folder").splits["train"]
    labels = torch.cat([split[i][1].flatten() for i in range(len(split))])
    assert IGNORE_INDEX in labels.tolist() and 254 not in labels.tolist()


@pytest.mark.parametrize(
    "damage,message",
    [
        ("no_mask", r"images/2007_000000.jpg has no mask: expected .*masks/2007_000000.png"),
        (
            "bad_label",
            r"2007_000000.*mask values must be class labels 0..4 or the ignore value 255, found \[9\]",
        ),
        ("size", r"2007_000000.*the image is 48x48 but its mask 40x48"),
        ("rgb_mask", r"2007_000000.*the mask is a RGB image, not a single-channel label map"),
        ("classes", r"classes.json must give a non-empty list of class names"),
        ("splits", r"splits.json: the test list names 'ghost', which has no image in images/"),
    ],
)
def test_folder_mistakes_name_the_file(tmp_path, damage, message):
    root = tmp_path / "mine"
    make_synthetic_folder(root, n_train=3, n_test=1, min_size=48, max_size=48)
    mask_path = root / "masks" / "2007_000000.png"
    if damage == "no_mask":
        mask_path.unlink()
    elif damage == "bad_label":
        Image.fromarray(np.full((48, 48), 9, dtype=np.uint8)).save(mask_path)
    elif damage == "size":
        Image.fromarray(np.zeros((48, 40), dtype=np.uint8)).save(mask_path)
    elif damage == "rgb_mask":
        Image.new("RGB", (48, 48)).save(mask_path)
    elif damage == "classes":
        (root / "classes.json").write_text(json.dumps({"colours": []}))
    else:
        (root / "splits.json").write_text(json.dumps({"train": ["2007_000000"], "test": ["ghost"]}))
    with pytest.raises(UserError, match=message):
        module = datamodule(root, "folder", subset_size=None)
        for split in module.splits.values():
            for position in range(len(split)):
                split[position]


def test_mask_mode_only_where_it_applies(voc_root):
    with pytest.raises(UserError, match="--mask_mode applies to --dataset pet, not to --dataset voc"):
        tiny_datamodule(voc_root, tiny_model(dataset="voc", mask_mode="binary"))


def test_unknown_dataset(tmp_path):
    with pytest.raises(UserError, match="unknown --dataset 'nope'; choose pet, voc, folder"):
        tiny_datamodule(tmp_path, tiny_model(dataset="nope"))


def test_missing_voc_and_folder_say_what_to_do(tmp_path):
    with pytest.raises(UserError, match="make-data --dataset voc"):
        datamodule(tmp_path, "voc")
    with pytest.raises(UserError, match="needs images/, masks/ and classes.json"):
        datamodule(tmp_path, "folder")
