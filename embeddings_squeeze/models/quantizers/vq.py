"""VQ: one EMA codebook of K vectors (vector-quantize-pytorch's ``VectorQuantize``).

Codebook health: the codebook starts from k-means on a pool of training vectors (``start``), and
a code is re-seeded only when its EMA usage per training step falls far below its fair share of
the step's vectors (``DEAD_CODE_SHARE``).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from embeddings_squeeze.config import QuantizerConfig, setting
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.quantizers import library
from embeddings_squeeze.models.quantizers.base import FitStart
from embeddings_squeeze.models.quantizers.indexed import IndexQuantizer, to_grid
from embeddings_squeeze.utils.rate import float32_bytes

# 'auto' dead-code rule: a code is dead when its EMA usage drops below this share of a uniform
# code's usage per step (vectors per step / K); a re-seeded code restarts at the uniform share, so
# an unused code survives about ln(1 / DEAD_CODE_SHARE) / (1 - decay) steps before it is replaced
DEAD_CODE_SHARE = 1 / 16
# k-means starts from this many training vectors per code (fewer only when the split is smaller)
KMEANS_VECTORS_PER_CODE = 10


def parse_dead_code_threshold(value: str | float) -> float | str:
    """'auto' or a number >= 0 (0 turns dead-code replacement off)."""
    if str(value) == "auto":
        return "auto"
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"--dead_code_threshold must be 'auto' or a number, got {value!r}") from None
    if number < 0:
        raise UserError(f"--dead_code_threshold must be 'auto' or at least 0, got {number}")
    return number


def dead_code_threshold(text: str) -> float | str:
    try:
        return parse_dead_code_threshold(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


@dataclass(frozen=True)
class CodebookSettings:
    """EMA codebooks (vq, rvq)."""

    commitment_weight: float = setting(0.25, "VQ commitment weight", type=float)
    decay: float = setting(0.99, "EMA decay of the codebook", type=float)
    kmeans_init: bool = setting(
        True,
        "start codebooks at random instead of k-means on pooled training vectors",
        flag="--no_kmeans_init",
        action="store_false",
    )
    dead_code_threshold: float | str = setting(
        "auto",
        "re-seed a code whose EMA usage per step drops below this; auto: 1/16 of a uniform code's usage "
        "(batch vectors / K); 0 turns it off",
        type=dead_code_threshold,
    )


class VectorQuantizer(IndexQuantizer):
    """One EMA codebook of ``num_vectors`` codes of ``bottleneck_dim`` values."""

    name = "vq"
    summary = "EMA codebook"
    Settings = CodebookSettings

    def __init__(self, in_channels: int, config: QuantizerConfig, input_pixels: int, levels: int = 1):
        super().__init__(in_channels, config, input_pixels, levels, alphabet_size=config.num_vectors)
        self.quantizer = self.build(config)
        for book in library.codebooks(self.quantizer):
            library.on_replace(book, self._count_replaced)

    def build(self, config: QuantizerConfig) -> nn.Module:
        """The library's quantizer; replacement stays off until ``start`` knows the vectors per step."""
        from vector_quantize_pytorch import (
            VectorQuantize,  # imported when built: it costs ~2 s, which --help need not pay
        )

        return VectorQuantize(dim=config.bottleneck_dim, **self.codebook_options(config))

    @staticmethod
    def codebook_options(config: QuantizerConfig) -> dict:
        settings = config.settings
        return dict(
            codebook_size=config.num_vectors,
            decay=settings.decay,
            commitment_weight=settings.commitment_weight,
            kmeans_init=settings.kmeans_init,
            threshold_ema_dead_code=0,
        )

    def layers(self) -> list[nn.Module]:
        """The library modules that quantize in turn (one per index level)."""
        return [self.quantizer]

    def quantize(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        height, width = latent.shape[-2:]
        quantized, indices, loss = self.quantizer(rearrange(latent, "b d h w -> b (h w) d"))
        quantized = rearrange(quantized, "b (h w) d -> b d h w", h=height, w=width)
        return quantized, to_grid(indices, height, width), loss.sum()

    def dequantize(self, sent: torch.Tensor) -> torch.Tensor:
        height, width = sent.shape[1:3]
        vectors = self.quantizer.get_output_from_indices(rearrange(sent[..., 0], "b h w -> b (h w)"))
        return rearrange(vectors, "b (h w) d -> b d h w", h=height, w=width)

    def distinct_codes(self) -> int:
        return sum(
            len(torch.unique(library.codes(book), dim=0)) for book in library.codebooks(self.quantizer)
        )

    def decoder_bytes(self) -> int:
        codebooks = [library.codes(book) for book in library.codebooks(self.quantizer)]
        return super().decoder_bytes() + float32_bytes(codebooks)

    def check_training_data(self, images: int, positions: int) -> None:
        vectors = images * positions
        if vectors < self.alphabet_size:  # k-means needs a training vector for every code
            largest = 2 ** max(1, int(math.log2(max(vectors // KMEANS_VECTORS_PER_CODE, 2))))
            raise UserError(
                f"the training split has {images} images x {positions} grid positions = {vectors} vectors, "
                f"fewer than the {self.alphabet_size} codes of --num_vectors {self.alphabet_size}; pass "
                f"--num_vectors {largest} or less (k-means then starts each code from about "
                f"{KMEANS_VECTORS_PER_CODE} training vectors), or train on more images"
            )

    def start(self, context: FitStart) -> None:
        """Size the dead-code rule to the step, share codebook updates across processes, and start
        fresh codebooks from k-means on training vectors only (resumed runs bring theirs)."""
        super().start(context)
        threshold = parse_dead_code_threshold(self.settings.dead_code_threshold)
        fair_share = context.vectors_per_step / self.alphabet_size
        value = DEAD_CODE_SHARE * fair_share if threshold == "auto" else threshold
        books = library.codebooks(self.quantizer)
        for book in books:
            library.set_dead_code_rule(book, value, reset_usage=max(value, fair_share))
            if context.world_size > 1:
                library.synchronize(book)
        if all(library.is_started(book) for book in books):
            return
        wanted = KMEANS_VECTORS_PER_CODE * self.alphabet_size
        vectors = context.training_vectors(wanted, self.latent)
        if len(torch.unique(vectors, dim=0)) < self.alphabet_size:
            raise UserError(
                f"the training split has {len(vectors)} feature vectors, too few distinct ones for a "
                f"codebook of {self.alphabet_size}; pass a smaller --num_vectors or use more training images"
            )
        self.initialize_codebooks(vectors, context.vectors_per_step)

    @torch.no_grad()
    def initialize_codebooks(self, vectors: torch.Tensor, vectors_per_step: int) -> None:
        """k-means start of every codebook from (N, D) training vectors, level after level, each on
        the residuals the previous levels leave."""
        was_training = self.training
        self.eval()
        residual = vectors.float()
        for layer, book in zip(self.layers(), library.codebooks(self.quantizer)):
            library.kmeans_start(book, residual, vectors_per_step / len(residual))
            quantized, _, _ = layer(residual.unsqueeze(0))
            residual = residual - quantized[0]
        self.train(was_training)
