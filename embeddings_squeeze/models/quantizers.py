"""One small adapter over vector-quantize-pytorch's quantizers: VQ, residual VQ, FSQ and LFQ.

Every quantizer takes (B, D, h, w) maps and returns the quantized map, integer indices of shape
(B, h, w, L) with one column per index level (L = ``num_quantizers`` for RVQ, 1 otherwise), and a
scalar loss. ``alphabet_size`` is the number of values one index level can take; those indices
are what a sender transmits.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import distributed, nn
from vector_quantize_pytorch import FSQ, LFQ, ResidualVQ, VectorQuantize
from vector_quantize_pytorch.vector_quantize_pytorch import Codebook, sample_vectors_distributed

from embeddings_squeeze.errors import UserError

QUANTIZER_TYPES = ("vq", "rvq", "fsq", "lfq")
# level choices recommended by the FSQ paper (Mentzer et al. 2023, table 1) for common sizes
FSQ_LEVELS = {
    2**8: [8, 6, 5],
    2**10: [8, 5, 5, 5],
    2**12: [7, 5, 5, 5, 5],
    2**14: [8, 8, 8, 6, 5],
    2**16: [8, 8, 8, 5, 5, 5],
}


def parse_levels(text: str | None) -> list[int] | None:
    """'8,5,5' -> [8, 5, 5]; None or '' -> None."""
    if not text:
        return None
    try:
        levels = [int(part) for part in str(text).split(",")]
    except ValueError:
        raise UserError(
            f"--fsq_levels must be comma-separated integers such as 8,5,5, got {text!r}"
        ) from None
    if any(level < 2 for level in levels):
        raise UserError(f"every FSQ level must be at least 2, got {text!r}")
    return levels


def fsq_levels_for(codebook_size: int) -> list[int]:
    """FSQ levels whose product is close to ``codebook_size`` (exact for the paper's sizes)."""
    if codebook_size in FSQ_LEVELS:
        return FSQ_LEVELS[codebook_size]
    dims = max(1, round(math.log(codebook_size) / math.log(6)))
    level = max(2, round(codebook_size ** (1 / dims)))
    return [level] * dims


class Quantizer(nn.Module):
    """A quantizer of any supported type behind one (B, D, h, w) interface.

    Args:
        quantizer_type: 'vq', 'rvq', 'fsq' or 'lfq'.
        dim: size of the vectors being quantized.
        codebook_size: K, codes per level (VQ, RVQ, LFQ; a power of two for LFQ); for FSQ it only
            chooses the levels when ``fsq_levels`` is not given.
        num_quantizers: residual levels (RVQ only).
        fsq_levels: FSQ levels, e.g. [8, 5, 5] (FSQ only).
        commitment_weight: commitment loss weight (VQ, RVQ).
        decay: EMA decay of the codebooks (VQ, RVQ).
        kmeans_init: initialise VQ/RVQ codebooks by k-means on the first training batch.
        dead_code_threshold: replace VQ/RVQ codes whose EMA usage falls below this (0: never).
    """

    def __init__(
        self,
        quantizer_type: str = "vq",
        dim: int = 64,
        codebook_size: int = 512,
        num_quantizers: int = 1,
        fsq_levels: list[int] | None = None,
        commitment_weight: float = 0.25,
        decay: float = 0.99,
        kmeans_init: bool = True,
        dead_code_threshold: float = 2.0,
    ):
        super().__init__()
        if quantizer_type not in QUANTIZER_TYPES:
            raise UserError(
                f"unknown --quantizer_type {quantizer_type!r}; choose one of {', '.join(QUANTIZER_TYPES)}"
            )
        self.quantizer_type = quantizer_type
        self.levels = num_quantizers if quantizer_type == "rvq" else 1
        self.norm = nn.Identity()
        codebook = dict(
            codebook_size=codebook_size,
            decay=decay,
            commitment_weight=commitment_weight,
            kmeans_init=kmeans_init,
            threshold_ema_dead_code=dead_code_threshold,
        )
        if quantizer_type == "vq":
            self.quantizer = VectorQuantize(dim=dim, **codebook)
            self.alphabet_size = codebook_size
        elif quantizer_type == "rvq":
            self.quantizer = ResidualVQ(dim=dim, num_quantizers=num_quantizers, **codebook)
            self.alphabet_size = codebook_size
        elif quantizer_type == "fsq":
            self.fsq_levels = fsq_levels or fsq_levels_for(codebook_size)
            self.quantizer = FSQ(levels=self.fsq_levels, dim=dim)
            self.alphabet_size = math.prod(self.fsq_levels)
        else:
            if codebook_size < 2 or codebook_size & (codebook_size - 1):
                raise UserError(f"LFQ needs --num_vectors to be a power of two, got {codebook_size}")
            # sign quantization collapses on features of one sign (post-ReLU maps): centre them first
            self.norm = nn.LayerNorm(dim)
            self.quantizer = LFQ(dim=dim, codebook_size=codebook_size, entropy_loss_weight=0.1)
            self.alphabet_size = codebook_size

    @property
    def fixed_bits_per_vector(self) -> float:
        """Bits of a fixed-length code for one grid position."""
        if self.quantizer_type == "fsq":
            return sum(math.log2(level) for level in self.fsq_levels)
        return math.ceil(math.log2(self.alphabet_size)) * self.levels

    def decoder_parameter_count(self) -> int:
        """Numbers the receiver needs to turn indices back into vectors."""
        if self.quantizer_type == "vq":
            return self.quantizer.codebook.numel()
        if self.quantizer_type == "rvq":
            return sum(layer.codebook.numel() for layer in self.quantizer.layers)
        # FSQ and LFQ codes are implicit: only their output projection is learned
        return sum(p.numel() for p in self.quantizer.project_out.parameters())

    def synchronize_across_processes(self) -> None:
        """Make VQ/RVQ codebook updates identical on every DDP process.

        vector-quantize-pytorch decides at construction whether to all-reduce its EMA statistics,
        but Lightning builds the model before the process group exists; switch it on afterwards.
        """
        for codebook in self.modules():
            if isinstance(codebook, Codebook):
                codebook.use_ddp = True
                codebook.all_reduce_fn = distributed.all_reduce
                codebook.kmeans_all_reduce_fn = distributed.all_reduce
                codebook.sample_fn = codebook.replace_sample_fn = sample_vectors_distributed

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, D, h, w) -> quantized (B, D, h, w), indices (B, h, w, L), scalar loss."""
        height, width = latent.shape[-2:]
        sequence = self.norm(rearrange(latent, "b d h w -> b (h w) d"))
        if self.quantizer_type == "fsq":
            quantized, indices = self.quantizer(sequence)
            loss = sequence.new_zeros(())
        else:
            quantized, indices, loss = self.quantizer(sequence)
        if indices.ndim == 2:  # (b, n) -> (b, n, 1): one index level
            indices = indices.unsqueeze(-1)
        quantized = rearrange(quantized, "b (h w) d -> b d h w", h=height, w=width)
        indices = rearrange(indices.long(), "b (h w) l -> b h w l", h=height, w=width)
        return quantized, indices, loss.sum()

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, h, w, L) -> the quantized (B, D, h, w) map the receiver reconstructs."""
        height, width = indices.shape[1:3]
        flat = rearrange(indices, "b h w l -> b (h w) l")
        if self.quantizer_type == "rvq":
            vectors = self.quantizer.get_output_from_indices(flat)
        elif self.quantizer_type == "vq":
            vectors = self.quantizer.get_output_from_indices(flat[..., 0])
        else:
            vectors = self.quantizer.indices_to_codes(flat[..., 0])
        return rearrange(vectors, "b (h w) d -> b d h w", h=height, w=width)
