"""Compact per-image payloads: a 6-byte header, then the coded integers a quantizer sends.

Layout (big-endian):

    format version u8 | checkpoint tag u8 | check u32 | range-coded indices (32-bit words)

The grid size and the number of index levels are not sent: the receiver's checkpoint fixes them.
The tag is the first byte of the checkpoint's 8-byte fingerprint, so a payload from another
checkpoint is named as such 255 times in 256. The check is CRC-32 over the whole fingerprint and
the decoded indices: a payload from another checkpoint or a damaged one decodes to a wrong mask
only if the tag and all 32 check bits match by chance (2^-40 for another checkpoint, 2^-32 for
random damage; CRC-32 catches every error burst of up to 32 bits).

Codebook indices are range-coded here (``IndexCoder``, with ``constriction``): each index level
under the training split's code histogram, add-one smoothed so that codes never seen in training
stay encodable. Other quantizers frame their own bodies with ``frame``/``unframe``/``verify``.
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
from embeddings_squeeze.utils.hashing import hash_tensors

VERSION = 2
HEADER = struct.Struct(">BBI")


def fingerprint(module) -> bytes:
    """8 bytes that change whenever the decoder side (codebook, histogram, settings, classes) changes."""
    settings = {**dict(module.hparams), **module.classes.as_values()}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    return hash_tensors(digest, module.bottleneck.state_dict()).digest()[:8]


def coder_probabilities(histogram: torch.Tensor) -> torch.Tensor:
    """(L, A) training code counts -> the coder's (L, A) probabilities, add-one smoothed.

    The one definition of the coder's model: payloads are coded with it, and the rate table's
    coded bits are the cross-entropy under it.
    """
    smoothed = histogram.double().cpu() + 1
    return smoothed / smoothed.sum(dim=-1, keepdim=True)


def frame(body: bytes, key: bytes, symbols: np.ndarray) -> bytes:
    """Header + ``body``; ``symbols`` are what the receiver must recover exactly."""
    return HEADER.pack(VERSION, key[0], _check(key, symbols)) + body


def unframe(payload: bytes, key: bytes, name: str) -> tuple[bytes, int]:
    """Payload -> (body, check), refusing another format or another checkpoint's payload."""
    if len(payload) < HEADER.size:
        raise UserError(f"{name} is too short to be an embeddings_squeeze payload")
    version, tag, check = HEADER.unpack_from(payload)
    if version != VERSION:
        raise UserError(
            f"{name} is not an embeddings_squeeze payload of format version {VERSION} (it starts with "
            f"{version}); encode the image again with this release"
        )
    if tag != key[0]:
        raise UserError(
            f"{name} was encoded with another checkpoint; decode it with the checkpoint that made it"
        )
    return payload[HEADER.size :], check


def verify(check: int, key: bytes, symbols: np.ndarray, name: str) -> None:
    if _check(key, symbols) != check:
        raise UserError(
            f"{name} is corrupt or from another checkpoint (check mismatch); encode the image again "
            "with the checkpoint you decode with"
        )


def _check(key: bytes, symbols: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(symbols, dtype=np.int64).tobytes(), zlib.crc32(key))


class IndexCoder:
    """Range-codes one image's (h, w, L) indices under the training histogram of a checkpoint."""

    def __init__(self, histogram: torch.Tensor, key: bytes, grid: tuple[int, int]):
        self.levels = histogram.shape[0]
        self.key = key
        self.grid = tuple(grid)
        probabilities = coder_probabilities(histogram).numpy()
        self.models = [constriction.stream.model.Categorical(level, perfect=False) for level in probabilities]

    def encode(self, indices: torch.Tensor) -> bytes:
        """(h, w, L) indices of one image -> payload bytes."""
        if tuple(indices.shape) != (*self.grid, self.levels):
            raise ValueError(f"indices of shape {tuple(indices.shape)}, the checkpoint sends {self.grid}")
        symbols = indices.cpu().numpy().reshape(-1, self.levels).astype(np.int32)
        encoder = constriction.stream.queue.RangeEncoder()
        for level, model in enumerate(self.models):
            encoder.encode(symbols[:, level], model)
        return frame(encoder.get_compressed().astype(">u4").tobytes(), self.key, symbols)

    def decode(self, payload: bytes, name: str = "payload") -> torch.Tensor:
        """Payload bytes -> (h, w, L) indices; a clear error for anything but an intact payload of
        this checkpoint."""
        body, check = unframe(payload, self.key, name)
        if len(body) % 4 or not body:
            raise UserError(f"{name} is truncated or corrupt; encode the image again")
        words = np.frombuffer(body, dtype=">u4").astype(np.uint32)
        decoder = constriction.stream.queue.RangeDecoder(words)
        count = self.grid[0] * self.grid[1]
        try:
            symbols = np.stack([decoder.decode(model, count) for model in self.models], axis=-1)
        except (ValueError, RuntimeError):
            raise UserError(
                f"{name} is truncated or corrupt (the range decoder failed); encode the image again"
            ) from None
        verify(check, self.key, symbols, name)
        return torch.from_numpy(symbols.astype(np.int64)).reshape(*self.grid, self.levels)
