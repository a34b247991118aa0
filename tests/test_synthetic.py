import hashlib

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import OxfordIIITPet

from embeddings_squeeze.data.synthetic import make_synthetic_dataset
from embeddings_squeeze.errors import UserError


def tree_digest(base):
    digest = hashlib.sha256()
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(base)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_layout_matches_oxford_pet(pet_root):
    base = pet_root / "oxford-iiit-pet"
    trainval = (base / "annotations" / "trainval.txt").read_text().splitlines()
    test = (base / "annotations" / "test.txt").read_text().splitlines()
    assert len(trainval) == 16 and len(test) == 6
    for line in trainval + test:
        image_id, class_id, species, breed_id = line.split()
        assert (base / "images" / f"{image_id}.jpg").is_file()
        assert (base / "annotations" / "trimaps" / f"{image_id}.png").is_file()
        assert 1 <= int(class_id) <= 37 and species in ("1", "2") and int(breed_id) >= 1
    assert not {line.split()[0] for line in trainval} & {line.split()[0] for line in test}


def test_real_loader_reads_it(pet_root):
    pets = OxfordIIITPet(pet_root, split="test", target_types="segmentation")
    assert len(pets) == 6
    for image, trimap in pets:
        assert image.mode == "RGB" and image.size == trimap.size
        values = set(np.unique(np.asarray(trimap)).tolist())
        assert values <= {1, 2, 3} and {1, 2} <= values


def test_odd_files_like_the_real_dataset(pet_root):
    modes = set()
    formats = set()
    for path in (pet_root / "oxford-iiit-pet" / "images").glob("*.jpg"):
        with Image.open(path) as image:
            modes.add(image.mode)
            formats.add(image.format)
    assert {"L", "RGB", "RGBA"} <= modes
    assert formats == {"JPEG", "PNG"}


def test_deterministic_per_seed(tmp_path):
    first = make_synthetic_dataset(tmp_path / "a", 5, 2, seed=7, min_size=32, max_size=48)
    again = make_synthetic_dataset(tmp_path / "b", 5, 2, seed=7, min_size=32, max_size=48)
    other = make_synthetic_dataset(tmp_path / "c", 5, 2, seed=8, min_size=32, max_size=48)
    assert tree_digest(first) == tree_digest(again)
    assert tree_digest(first) != tree_digest(other)


def test_refuses_to_overwrite(tmp_path):
    make_synthetic_dataset(tmp_path, 2, 1, min_size=32, max_size=32)
    with pytest.raises(UserError, match="already exists"):
        make_synthetic_dataset(tmp_path, 2, 1, min_size=32, max_size=32)
