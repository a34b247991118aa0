"""The naive alternative: compress the input image (JPEG, WebP) and run the uncompressed model remotely.

Each test image is taken at the model's input size (as the data pipeline resizes it), encoded at
a given quality with each codec at its best practical setting (JPEG with optimised Huffman tables,
WebP at its slowest method), measured in bytes and decoded; ``engine/evaluation.py`` segments it
with the baseline model. ``header_bytes`` is the fixed part of each file (container and tables), so
readers can compare bodies as well as totals.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import torch
from PIL import Image, features
from torchvision.transforms import functional as TF

from embeddings_squeeze.data.segmentation import denormalize

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


def round_trip(pixels: torch.Tensor, mean, std, codec: str, quality: int) -> tuple[torch.Tensor, int, int]:
    """Normalised (3, S, S) image -> (decoded normalised image, encoded bytes, header bytes)."""
    rgb = denormalize(pixels, mean, std)
    data = encode_image(rgb.permute(1, 2, 0).numpy(), codec, quality)
    with Image.open(io.BytesIO(data)) as decoded:
        array = np.array(decoded.convert("RGB"))  # a writable copy for torch
    restored = TF.normalize(TF.to_tensor(array), list(mean), list(std))
    return restored, len(data), header_bytes(data, codec)
