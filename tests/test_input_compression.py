"""Images sent as JPEG or WebP are coded at the smaller of their own size and the model's input size."""

import io

import numpy as np
import torch
from PIL import Image

from embeddings_squeeze.data.transforms import ImageTransform
from embeddings_squeeze.utils.input_compression import coded_pixels, round_trip

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def pixels(height: int, width: int) -> np.ndarray:
    generator = np.random.default_rng(0)
    smooth = generator.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(smooth).resize((width, height), Image.BILINEAR))


def pillow_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def test_an_image_smaller_than_the_input_is_coded_at_its_own_size():
    native = pixels(40, 56)  # 2,240 pixels < 64 x 64
    transform = ImageTransform(64, MEAN, STD)
    assert coded_pixels(native, 64) is native
    restored, size, header = round_trip(native, transform, "JPEG", 50)
    data = pillow_jpeg(Image.fromarray(native), 50)
    assert size == len(data) and 0 < header < size
    assert torch.equal(restored, transform(Image.open(io.BytesIO(data))))  # resized after decoding
    upsampled = pillow_jpeg(Image.fromarray(native).resize((64, 64), Image.BILINEAR), 50)
    assert size < len(upsampled)  # what coding at the input size would have cost


def test_a_larger_image_is_resized_to_the_input_first():
    native = pixels(120, 90)
    coded = coded_pixels(native, 64)
    assert coded.shape == (64, 64, 3)
    assert np.array_equal(coded, np.asarray(Image.fromarray(native).resize((64, 64), Image.BILINEAR)))
    _, size, _ = round_trip(native, ImageTransform(64, MEAN, STD), "JPEG", 50)
    assert size == len(pillow_jpeg(Image.fromarray(coded), 50))
