"""Compact per-image payloads: a 10-byte header, then the coded integers a quantizer sends.

Layout (big-endian):

    version u8 (high bit: fixed-length body) | checkpoint tag u8 | check u32 | height u16 | width u16 | body

The height and width are the image's own size: the receiver's mask is drawn at that size. The grid
size and the number of index levels are not sent: the receiver's checkpoint fixes them. The tag is
the first byte of the checkpoint's 8-byte fingerprint, so a payload from another checkpoint is
named as such 255 times in 256. The check is CRC-32 over the whole fingerprint, the size and the
decoded integers: a payload from another checkpoint or a damaged one decodes to a wrong mask only
if the tag and all 32 check bits match by chance (2^-40 for another checkpoint, 2^-32 for random
damage; CRC-32 catches every error burst of up to 32 bits).

Codebook indices are coded here (``IndexCoder``): range-coded with ``constriction``, each index level
under the training split's code histogram, add-one smoothed so that codes never seen in training
stay encodable; or, when that is shorter (an image whose codes are unlikely under the histogram),
as a fixed-length code of ceil(log2 alphabet) bits per index, flagged in the version byte. So no
payload is longer than the fixed-length code plus the header. Other quantizers frame their own
bodies with ``frame``/``unframe``/``verify``; one whose coder can run long on unlikely values escapes
to ``raw_symbols`` (flagged the same way), so its payload too is capped by a fixed-length code.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from dataclasses import dataclass

import constriction
import numpy as np
import torch

from embeddings_squeeze.errors import UserError
from embeddings_squeeze.utils.hashing import hash_tensors

VERSION = 3
FIXED_LENGTH = 0x80  # set in the version byte: the body is a fixed-length code
HEADER = struct.Struct(">BBIHH")
MAX_SIDE = 2**16 - 1
RAW = struct.Struct(">iB")  # a raw body's smallest value and bits per value


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


@dataclass(frozen=True)
class Framed:
    """A payload's parts, its header read and checked against the receiver's checkpoint."""

    body: bytes
    check: int
    size: tuple[int, int]  # (height, width) of the image
    fixed: bool  # the body is a fixed-length code


def frame(body: bytes, key: bytes, symbols: np.ndarray, size: tuple[int, int], fixed: bool = False) -> bytes:
    """Header + ``body``; ``symbols`` are what the receiver must recover exactly, ``size`` the image's
    (height, width)."""
    height, width = size
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise UserError(f"an image of {width}x{height} pixels cannot be sent; sides up to {MAX_SIDE} fit")
    version = VERSION | (FIXED_LENGTH if fixed else 0)
    return HEADER.pack(version, key[0], _check(key, symbols, size), height, width) + body


def unframe(payload: bytes, key: bytes, name: str) -> Framed:
    """Payload -> its parts, refusing another format or another checkpoint's payload."""
    if len(payload) < HEADER.size:
        raise UserError(
            f"{name} is too short to be an embeddings_squeeze payload; pass a .esq file from encode"
        )
    version, tag, check, height, width = HEADER.unpack_from(payload)
    if version & ~FIXED_LENGTH in range(1, VERSION):
        raise UserError(
            f"{name} was written by an earlier release of embeddings_squeeze (payload format "
            f"{version & ~FIXED_LENGTH}); encode the image again with this release"
        )
    if version & ~FIXED_LENGTH != VERSION:
        raise UserError(f"{name} is not an embeddings_squeeze payload; pass a .esq file written by encode")
    if tag != key[0]:
        raise UserError(
            f"{name} was encoded with another checkpoint; decode it with the checkpoint that made it"
        )
    return Framed(payload[HEADER.size :], check, (height, width), bool(version & FIXED_LENGTH))


def verify(framed: Framed, key: bytes, symbols: np.ndarray, name: str) -> None:
    if _check(key, symbols, framed.size) != framed.check:
        raise UserError(
            f"{name} is corrupt or from another checkpoint (check mismatch); encode the image again "
            "with the checkpoint you decode with"
        )


def _check(key: bytes, symbols: np.ndarray, size: tuple[int, int]) -> int:
    checked = struct.pack(">HH", *size) + np.ascontiguousarray(symbols, dtype=np.int64).tobytes()
    return zlib.crc32(checked, zlib.crc32(key))


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Non-negative integers below 2**bits -> ``bits`` bits each, most significant first, padded to bytes."""
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint64)
    return np.packbits((values.astype(np.uint64)[:, None] >> shifts) & 1).tobytes()


def unpack_bits(body: bytes, count: int, bits: int) -> np.ndarray:
    """``pack_bits``'s inverse for ``count`` values."""
    flat = np.unpackbits(np.frombuffer(body, dtype=np.uint8))[: count * bits].astype(np.int64)
    return flat.reshape(count, bits) @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))


def raw_symbols(symbols: np.ndarray) -> bytes:
    """Integers as a raw body: the smallest (i32) and the bits per value (u8), then every value minus the
    smallest in that many bits: the escape of coders whose output can exceed a fixed-length code."""
    flat = symbols.reshape(-1).astype(np.int64)
    low = int(flat.min())
    bits = max(1, (int(flat.max()) - low).bit_length())
    return RAW.pack(low, bits) + pack_bits(flat - low, bits)


def read_raw_symbols(body: bytes, count: int, name: str) -> np.ndarray:
    """``raw_symbols``'s inverse for ``count`` values; a clear error for a damaged body."""
    if len(body) < RAW.size:
        raise UserError(f"{name} is truncated or corrupt; encode the image again")
    low, bits = RAW.unpack_from(body)
    if not 1 <= bits <= 33 or len(body) != RAW.size + math.ceil(count * bits / 8):
        raise UserError(f"{name} is truncated or corrupt; encode the image again")
    return unpack_bits(body[RAW.size :], count, bits) + low


class IndexCoder:
    """Codes one image's (h, w, L) indices: range-coded under the training histogram of a
    checkpoint, or as a fixed-length code when that is shorter."""

    def __init__(self, histogram: torch.Tensor, key: bytes, grid: tuple[int, int]):
        self.levels, alphabet = histogram.shape
        self.key = key
        self.grid = tuple(grid)
        self.bits = max(1, math.ceil(math.log2(alphabet)))  # per index in a fixed-length code
        probabilities = coder_probabilities(histogram).numpy()
        self.models = [constriction.stream.model.Categorical(level, perfect=False) for level in probabilities]

    def encode(self, indices: torch.Tensor, size: tuple[int, int]) -> bytes:
        """(h, w, L) indices of one image of ``size`` (height, width) -> payload bytes."""
        if tuple(indices.shape) != (*self.grid, self.levels):
            raise ValueError(f"indices of shape {tuple(indices.shape)}, the checkpoint sends {self.grid}")
        symbols = indices.cpu().numpy().reshape(-1, self.levels).astype(np.int32)
        encoder = constriction.stream.queue.RangeEncoder()
        for level, model in enumerate(self.models):
            encoder.encode(symbols[:, level], model)
        coded = encoder.get_compressed().astype(">u4").tobytes()
        fixed = pack_bits(symbols.T.reshape(-1), self.bits)  # level after level, as coded
        if len(fixed) < len(coded):
            return frame(fixed, self.key, symbols, size, fixed=True)
        return frame(coded, self.key, symbols, size)

    def decode(self, payload: bytes, name: str = "payload") -> tuple[torch.Tensor, tuple[int, int]]:
        """Payload bytes -> ((h, w, L) indices, the image's (height, width)); a clear error for
        anything but an intact payload of this checkpoint."""
        framed = unframe(payload, self.key, name)
        count = self.grid[0] * self.grid[1]
        if framed.fixed:
            if len(framed.body) != math.ceil(count * self.levels * self.bits / 8):
                raise UserError(f"{name} is truncated or corrupt; encode the image again")
            symbols = unpack_bits(framed.body, count * self.levels, self.bits).reshape(self.levels, count).T
        else:
            symbols = self._range_decode(framed.body, count, name)
        verify(framed, self.key, symbols, name)
        indices = torch.from_numpy(symbols.astype(np.int64)).reshape(*self.grid, self.levels)
        return indices, framed.size

    def _range_decode(self, body: bytes, count: int, name: str) -> np.ndarray:
        if len(body) % 4 or not body:
            raise UserError(f"{name} is truncated or corrupt; encode the image again")
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(body, dtype=">u4").astype(np.uint32))
        try:
            return np.stack([decoder.decode(model, count) for model in self.models], axis=-1)
        except (ValueError, RuntimeError):
            raise UserError(
                f"{name} is truncated or corrupt (the range decoder failed); encode the image again"
            ) from None
