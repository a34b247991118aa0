"""Compact per-image payloads: a small versioned header, then range-coded codebook indices.

Layout (big-endian):

    magic "ESQZ" | version u8 | checkpoint fingerprint 8 bytes | grid h u16 | grid w u16 |
    levels u8 | CRC-32 of the indices u32 | range-coded indices (32-bit words)

The range coder (``constriction``) models each index level with the training split's code
histogram, add-one smoothed so that codes never seen in training stay encodable. The CRC
catches corrupted or truncated payloads, which must never decode to a wrong mask.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib

import constriction
import numpy as np
import torch

from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.backbones.base import hash_tensors

MAGIC = b"ESQZ"
VERSION = 1
HEADER = struct.Struct(">4sB8sHHBI")


def fingerprint(module) -> bytes:
    """8 bytes that change whenever the decoder side (codebook, histogram, settings) changes."""
    digest = hashlib.sha256(json.dumps(dict(module.hparams), sort_keys=True, default=str).encode())
    return hash_tensors(digest, module.bottleneck.state_dict()).digest()[:8]


def coder_probabilities(histogram: torch.Tensor) -> torch.Tensor:
    """(L, A) training code counts -> the coder's (L, A) probabilities, add-one smoothed.

    The one definition of the coder's model: payloads are coded with it, and the rate table's
    coded bits are the cross-entropy under it.
    """
    smoothed = histogram.double().cpu() + 1
    return smoothed / smoothed.sum(dim=-1, keepdim=True)


def _models(histogram: torch.Tensor) -> list:
    probabilities = coder_probabilities(histogram).numpy()
    return [constriction.stream.model.Categorical(level, perfect=False) for level in probabilities]


def _crc(indices: np.ndarray) -> int:
    return zlib.crc32(indices.astype(np.int64).tobytes())


def encode_indices(indices: torch.Tensor, histogram: torch.Tensor, key: bytes) -> bytes:
    """(h, w, L) indices of one image -> payload bytes."""
    height, width, levels = indices.shape
    symbols = indices.cpu().numpy().reshape(-1, levels)
    encoder = constriction.stream.queue.RangeEncoder()
    for level, model in enumerate(_models(histogram)):
        encoder.encode(symbols[:, level].astype(np.int32), model)
    header = HEADER.pack(MAGIC, VERSION, key, height, width, levels, _crc(symbols))
    return header + encoder.get_compressed().astype(">u4").tobytes()


def decode_indices(
    payload: bytes, histogram: torch.Tensor, key: bytes, name: str = "payload"
) -> torch.Tensor:
    """Payload bytes -> (h, w, L) indices; a clear error for anything but an intact payload of ``key``."""
    if len(payload) < HEADER.size or payload[:4] != MAGIC:
        raise UserError(f"{name} is not an embeddings_squeeze payload")
    magic, version, payload_key, height, width, levels, crc = HEADER.unpack_from(payload)
    if version != VERSION:
        raise UserError(f"{name} has payload format version {version}; this release reads version {VERSION}")
    if payload_key != key:
        raise UserError(
            f"{name} was encoded with another checkpoint; decode it with the checkpoint that made it"
        )
    if levels != histogram.shape[0]:
        raise UserError(f"{name} is corrupt: {levels} index levels, the checkpoint has {histogram.shape[0]}")
    body = payload[HEADER.size :]
    if len(body) % 4:
        raise UserError(f"{name} is truncated or corrupt; encode the image again")
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(body, dtype=">u4").astype(np.uint32))
    try:
        symbols = np.stack([decoder.decode(model, height * width) for model in _models(histogram)], axis=-1)
    except (ValueError, RuntimeError):
        raise UserError(
            f"{name} is truncated or corrupt (the range decoder failed); encode the image again"
        ) from None
    if _crc(symbols) != crc:
        raise UserError(f"{name} is truncated or corrupt (checksum mismatch); encode the image again")
    return torch.from_numpy(symbols.astype(np.int64)).reshape(height, width, levels)
