"""The naive alternative: compress the input image (JPEG, WebP) and run the uncompressed model remotely.

Each test image is coded at the smaller of its own size and the model's input size (a sender never
upsamples before coding: that would pay for pixels the image does not have; a larger image is resized
to the input first, as the data pipeline resizes it), encoded at a given quality with each codec at
its best practical setting (JPEG with optimised Huffman tables, WebP at its slowest method), measured
in bytes and decoded; the receiver resizes it to the input as the pipeline does, and
``engine/evaluation.py`` segments it with the baseline model. ``header_bytes`` is the fixed part of
each file (container and tables), so readers can compare bodies as well as totals.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import torch
from PIL import Image, features
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from embeddings_squeeze.data.transforms import ImageTransform

BEST_SETTINGS = {"JPEG": {"optimize": True}, "WEBP": {"method": 6}}
WEBP_FRAME_HEADER = 10  # a lossy key frame's tag, start code and dimensions, before the coded data


def codecs() -> list[str]:
    """Image codecs Pillow supports here: JPEG always, WebP when built with it."""
    return ["JPEG", "WEBP"] if features.check("webp") else ["JPEG"]


def encode_image(rgb: np.ndarray, codec: str, quality: int) -> bytes:
    """(H, W, 3) uint8 pixels -> a ``codec`` file at ``quality``, at the codec's best setting."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=codec, quality=quality, **BEST_SETTINGS[codec])
    return buffer.getvalue()


def header_bytes(data: bytes, codec: str) -> int:
    """The fixed part of a JPEG or WebP file: everything but its entropy-coded image data."""
    if codec == "JPEG":
        position = 2  # SOI; then marker segments, each with its length, up to and including SOS
        while data[position + 1] != 0xDA:
            position += 2 + struct.unpack(">H", data[position + 2 : position + 4])[0]
        return position + 2 + struct.unpack(">H", data[position + 2 : position + 4])[0] + 2  # + EOI
    position, header = 12, 12  # RIFF container; then chunks: 8 bytes each of name and length
    while position < len(data):
        name, length = (
            data[position : position + 4],
            struct.unpack("<I", data[position + 4 : position + 8])[0],
        )
        coded = name == b"VP8 "
        header += 8 + (WEBP_FRAME_HEADER if coded else length + length % 2)
        position += 8 + length + length % 2
    return header


def coded_pixels(native: np.ndarray, image_size: int) -> np.ndarray:
    """(H, W, 3) uint8 pixels as the sender codes them: as they are when they hold no more pixels than
    the model's square input, else resized to it (bilinear, as the data pipeline resizes)."""
    if native.shape[0] * native.shape[1] <= image_size**2:
        return native
    square = TF.resize(Image.fromarray(native), [image_size, image_size], InterpolationMode.BILINEAR,
                       antialias=True)  # fmt: skip
    return np.asarray(square)


def round_trip(
    native: np.ndarray, transform: ImageTransform, codec: str, quality: int
) -> tuple[torch.Tensor, int, int]:
    """An image's (H, W, 3) uint8 pixels -> (the decoded image as the model's normalised (3, S, S)
    input, encoded bytes, header bytes)."""
    data = encode_image(coded_pixels(native, transform.image_size), codec, quality)
    with Image.open(io.BytesIO(data)) as decoded:
        restored = transform(decoded)
    return restored, len(data), header_bytes(data, codec)
