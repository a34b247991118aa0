"""Synthetic pets written in the exact Oxford-IIIT Pet on-disk layout.

The real loader (``torchvision.datasets.OxfordIIITPet``) reads the result unchanged, so the
whole pipeline can run offline and in tests:

    <root>/oxford-iiit-pet/images/<Breed>_<n>.jpg
    <root>/oxford-iiit-pet/annotations/trimaps/<Breed>_<n>.png   (1 pet, 2 background, 3 border)
    <root>/oxford-iiit-pet/annotations/{trainval,test}.txt       ("<id> <class> <species> <breed>")

Like the real dataset, a few "JPEGs" are grayscale or are RGBA PNGs with a .jpg name.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from embeddings_squeeze.errors import UserError

# (name, Oxford class id, species 1=cat 2=dog, breed id within species), as in the real list files
BREEDS = (
    ("Abyssinian", 1, 1, 1),
    ("Bengal", 6, 1, 2),
    ("Persian", 24, 1, 8),
    ("beagle", 5, 2, 4),
    ("boxer", 9, 2, 5),
    ("pug", 26, 2, 18),
)
FUR_COLOURS = np.array(
    [[196, 140, 84], [120, 82, 50], [60, 45, 38], [225, 215, 200], [150, 150, 150], [230, 160, 70]]
)
SPLIT_CODES = {"trainval": 0, "test": 1}


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid upsampled bicubically."""
    coarse = (rng.random((cells, cells)) * 255).astype(np.uint8)
    smooth = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(smooth, dtype=np.float32) / 255.0


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A textured scene background as (H, W, 3) float32 in [0, 255]."""
    base, accent = rng.integers(20, 235, size=(2, 3)).astype(np.float32)
    style = rng.integers(4)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if style == 0:  # stripes (wallpaper, wood)
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(6, 24)
        weight = 0.5 + 0.5 * np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
    elif style == 1:  # tiles
        tile = int(rng.integers(8, 32))
        weight = ((xx // tile + yy // tile) % 2).astype(np.float32)
    elif style == 2:  # vertical gradient (sky, wall)
        weight = yy / max(height - 1, 1)
    else:  # blotchy (grass, carpet)
        weight = smooth_noise(rng, height, width, int(rng.integers(3, 9)))
    weight = weight[..., None]
    image = base * (1 - weight) + accent * weight
    return image + rng.normal(0, 10, size=(height, width, 3))


def pet_silhouette(rng: np.random.Generator, height: int, width: int, species: int) -> Image.Image:
    """Draw a cat (pointed ears) or dog (floppy ears) silhouette as a binary 'L' image."""
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    scale = rng.uniform(0.3, 0.6) * min(width, height)
    cx = rng.uniform(0.35, 0.65) * width
    cy = rng.uniform(0.45, 0.65) * height
    facing = 1 if rng.random() < 0.5 else -1
    body_w, body_h = scale * rng.uniform(0.8, 1.1), scale * rng.uniform(0.45, 0.6)
    draw.ellipse([cx - body_w / 2, cy - body_h / 2, cx + body_w / 2, cy + body_h / 2], fill=255)
    for offset in (-0.3, -0.1, 0.15, 0.35):  # legs
        lx = cx + offset * body_w
        draw.rectangle([lx - scale * 0.06, cy, lx + scale * 0.06, cy + body_h * 0.9], fill=255)
    tail_x = cx - facing * body_w / 2
    tail_end = (tail_x - facing * scale * 0.35, cy - scale * rng.uniform(0.1, 0.4))
    draw.line([(tail_x, cy), tail_end], fill=255, width=max(2, int(scale * 0.07)))
    head_r = scale * rng.uniform(0.22, 0.3)
    hx, hy = cx + facing * body_w * 0.45, cy - body_h * 0.55
    draw.ellipse([hx - head_r, hy - head_r, hx + head_r, hy + head_r], fill=255)
    for side in (-1, 1):
        ex = hx + side * head_r * 0.55
        if species == 1:  # cat: upright triangles
            draw.polygon(
                [
                    (ex - head_r * 0.35, hy - head_r * 0.6),
                    (ex + head_r * 0.35, hy - head_r * 0.6),
                    (ex, hy - head_r * 1.5),
                ],
                fill=255,
            )
        else:  # dog: drooping ellipses beside the head
            draw.ellipse(
                [ex - head_r * 0.3, hy - head_r * 0.4, ex + head_r * 0.3, hy + head_r * 0.8], fill=255
            )
    return mask


def _trimap(mask: Image.Image, border: int) -> np.ndarray:
    """Oxford trimap values: 1 pet, 2 background, 3 the band around the outline."""
    size = 2 * border + 1
    grown = np.asarray(mask.filter(ImageFilter.MaxFilter(size))) > 0
    shrunk = np.asarray(mask.filter(ImageFilter.MinFilter(size))) > 0
    trimap = np.full(grown.shape, 2, dtype=np.uint8)
    trimap[shrunk] = 1
    trimap[grown & ~shrunk] = 3
    return trimap


def make_sample(
    rng: np.random.Generator, species: int, min_size: int, max_size: int
) -> tuple[Image.Image, Image.Image]:
    """One RGB pet image and its trimap, both of the same random size."""
    width, height = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    background = textured_background(rng, height, width)
    fur = FUR_COLOURS[rng.integers(len(FUR_COLOURS))].astype(np.float32)
    pattern = smooth_noise(rng, height, width, int(rng.integers(4, 12)))[..., None]
    pet = fur * (0.75 + 0.5 * pattern) + rng.normal(0, 6, size=(height, width, 3))
    mask = pet_silhouette(rng, height, width, species)
    alpha = np.asarray(mask.filter(ImageFilter.GaussianBlur(1)), dtype=np.float32)[..., None] / 255
    image = np.clip(background * (1 - alpha) + pet * alpha, 0, 255).astype(np.uint8)
    border = max(1, round(min(width, height) / 64))
    return Image.fromarray(image), Image.fromarray(_trimap(mask, border))


def _save_image(image: Image.Image, path: Path, index: int) -> None:
    """Save as JPEG, reproducing the real dataset's odd files every few images."""
    if index % 11 == 3:
        image.convert("L").save(path, format="JPEG", quality=90)
    elif index % 11 == 7:
        image.convert("RGBA").save(path, format="PNG")  # PNG bytes behind a .jpg name
    else:
        image.save(path, format="JPEG", quality=90)


def make_synthetic_dataset(
    root: str | Path,
    n_trainval: int = 96,
    n_test: int = 32,
    seed: int = 0,
    min_size: int = 160,
    max_size: int = 320,
) -> Path:
    """Write a synthetic Oxford-IIIT Pet tree under ``root`` and return its base folder.

    Args:
        root: folder that will hold ``oxford-iiit-pet/`` (what ``--data_path`` points at).
        n_trainval: images in the trainval list.
        n_test: images in the test list.
        seed: the same seed writes byte-identical files.
        min_size: smallest image side in pixels.
        max_size: largest image side in pixels.
    """
    base = Path(root) / "oxford-iiit-pet"
    check_request(base, n_trainval, n_test, min_size, max_size)
    images, trimaps = base / "images", base / "annotations" / "trimaps"
    images.mkdir(parents=True, exist_ok=True)
    trimaps.mkdir(parents=True, exist_ok=True)
    breed_counters = [0] * len(BREEDS)
    for split, count in (("trainval", n_trainval), ("test", n_test)):
        lines = []
        for i in range(count):
            rng = np.random.default_rng((seed, SPLIT_CODES[split], i))
            breed = int(rng.integers(len(BREEDS)))
            name, class_id, species, breed_id = BREEDS[breed]
            breed_counters[breed] += 1
            image_id = f"{name}_{breed_counters[breed]}"
            image, trimap = make_sample(rng, species, min_size, max_size)
            _save_image(image, images / f"{image_id}.jpg", i)
            trimap.save(trimaps / f"{image_id}.png")
            lines.append(f"{image_id} {class_id} {species} {breed_id}\n")
        (base / "annotations" / f"{split}.txt").write_text("".join(lines))
    return base


def check_request(base: Path, first: int, second: int, min_size: int, max_size: int) -> None:
    """Refuse a synthetic tree that would be empty, mis-sized, or written over existing files."""
    if first < 1 or second < 1:
        raise UserError(f"need at least one image per split, got {first} and {second}")
    if not 16 <= min_size <= max_size:
        raise UserError(f"image sizes must satisfy 16 <= min_size <= max_size, got {min_size}, {max_size}")
    if base.exists() and any(base.iterdir()):
        raise UserError(f"{base} already exists and is not empty; choose another --root or delete it first")
