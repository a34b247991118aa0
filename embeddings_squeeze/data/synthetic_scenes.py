"""Synthetic multi-object scenes in the Pascal VOC 2012 layout and in the image-folder layout.

Each image holds two or three objects of different classes on a textured background; a class
has its own shape and colour, so a head can learn it. Like VOC's, masks mark a band along every
boundary between two labels with 255 (ignored).

VOC (read by ``torchvision.datasets.VOCSegmentation``)::

    <root>/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    <root>/VOCdevkit/VOC2012/SegmentationClass/<id>.png      palette PNG, indices = labels, 255 border
    <root>/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt

Folder (``--dataset folder``)::

    <root>/images/<id>.jpg, <root>/masks/<id>.png (greyscale labels, 255 border),
    <root>/classes.json, <root>/splits.json
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from embeddings_squeeze.data.labels import IGNORE_INDEX, VOC_CLASS_NAMES, label_palette
from embeddings_squeeze.data.synthetic import check_request, pet_silhouette, smooth_noise, textured_background

FOLDER_CLASSES = ("background", "disc", "box", "pyramid", "animal")
FOLDER_COLOURS = ((40, 40, 40), (213, 94, 0), (0, 114, 178), (0, 158, 115), (204, 121, 167))
SPLIT_CODES = {"train": 0, "val": 1}


def _shape_mask(rng: np.random.Generator, height: int, width: int, label: int) -> Image.Image:
    """A binary 'L' silhouette whose shape depends on the class: disc, box, triangle or animal."""
    kind = label % 4
    if kind == 3:
        return pet_silhouette(rng, height, width, species=1 + label % 2)
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    side = rng.uniform(0.25, 0.5) * min(width, height)
    cx, cy = rng.uniform(side / 2, width - side / 2), rng.uniform(side / 2, height - side / 2)
    box = [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]
    if kind == 0:
        draw.ellipse(box, fill=255)
    elif kind == 1:
        draw.rectangle(box, fill=255)
    else:
        draw.polygon([(box[0], box[3]), (box[2], box[3]), (cx, box[1])], fill=255)
    return mask


def _class_colour(label: int) -> np.ndarray:
    """A fixed, class-specific surface colour (not the palette colour, which is for masks)."""
    return np.random.default_rng((7, label)).integers(30, 226, size=3).astype(np.float32)


def make_scene(
    rng: np.random.Generator, num_classes: int, min_size: int, max_size: int
) -> tuple[Image.Image, np.ndarray]:
    """One RGB image and its (H, W) uint8 labels: 0 background, objects 1.., 255 along boundaries."""
    width, height = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    image = textured_background(rng, height, width)
    labels = np.zeros((height, width), dtype=np.uint8)
    count = int(rng.integers(2, 4))
    for label in rng.choice(np.arange(1, num_classes), size=min(count, num_classes - 1), replace=False):
        shape = _shape_mask(rng, height, width, int(label))
        pattern = smooth_noise(rng, height, width, int(rng.integers(4, 12)))[..., None]
        surface = _class_colour(int(label)) * (0.8 + 0.4 * pattern) + rng.normal(
            0, 6, size=(height, width, 3)
        )
        alpha = np.asarray(shape.filter(ImageFilter.GaussianBlur(1)), dtype=np.float32)[..., None] / 255
        image = image * (1 - alpha) + surface * alpha
        labels[np.asarray(shape) > 127] = label
    border = 2 * max(1, round(min(width, height) / 64)) + 1
    plain = Image.fromarray(labels)
    edges = np.asarray(plain.filter(ImageFilter.MaxFilter(border))) != np.asarray(
        plain.filter(ImageFilter.MinFilter(border))
    )
    labels[edges] = IGNORE_INDEX
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)), labels


def _scenes(split: str, count: int, seed: int, num_classes: int, min_size: int, max_size: int):
    for i in range(count):
        rng = np.random.default_rng((seed, SPLIT_CODES[split], i))
        yield f"{2007 + SPLIT_CODES[split]}_{i:06d}", *make_scene(rng, num_classes, min_size, max_size)


def make_synthetic_voc(
    root: str | Path,
    n_train: int = 96,
    n_val: int = 32,
    seed: int = 0,
    min_size: int = 160,
    max_size: int = 320,
) -> Path:
    """Write a synthetic Pascal VOC 2012 segmentation tree under ``root``; returns VOCdevkit/VOC2012."""
    base = Path(root) / "VOCdevkit" / "VOC2012"
    check_request(base, n_train, n_val, min_size, max_size)
    folders = {name: base / name for name in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    palette = [value for colour in label_palette(256) for value in colour]
    lists = {}
    for split, count in (("train", n_train), ("val", n_val)):
        lists[split] = []
        for image_id, image, labels in _scenes(split, count, seed, len(VOC_CLASS_NAMES), min_size, max_size):
            image.save(folders["JPEGImages"] / f"{image_id}.jpg", quality=90)
            mask = Image.fromarray(labels, mode="P")
            mask.putpalette(palette)
            mask.save(folders["SegmentationClass"] / f"{image_id}.png")
            lists[split].append(image_id)
    lists["trainval"] = lists["train"] + lists["val"]
    for split, ids in lists.items():
        (folders["ImageSets/Segmentation"] / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return base


def make_synthetic_folder(
    root: str | Path,
    n_train: int = 96,
    n_test: int = 32,
    seed: int = 0,
    min_size: int = 160,
    max_size: int = 320,
) -> Path:
    """Write a synthetic ``--dataset folder`` tree (with classes.json and splits.json) at ``root``."""
    base = Path(root)
    check_request(base, n_train, n_test, min_size, max_size)
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "masks").mkdir(exist_ok=True)
    splits = {}
    for split, name, count in (("train", "train", n_train), ("val", "test", n_test)):
        splits[name] = []
        for image_id, image, labels in _scenes(split, count, seed, len(FOLDER_CLASSES), min_size, max_size):
            image.save(base / "images" / f"{image_id}.jpg", quality=90)
            Image.fromarray(labels, mode="L").save(base / "masks" / f"{image_id}.png")
            splits[name].append(image_id)
    classes = {
        "names": list(FOLDER_CLASSES),
        "colours": [list(c) for c in FOLDER_COLOURS],
        "ignore_index": 255,
    }
    (base / "classes.json").write_text(json.dumps(classes, indent=1))
    (base / "splits.json").write_text(json.dumps(splits, indent=1))
    return base
