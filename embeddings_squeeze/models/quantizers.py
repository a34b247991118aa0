"""One small adapter over vector-quantize-pytorch's quantizers: VQ, residual VQ, FSQ and LFQ.

Every quantizer takes (B, D, h, w) maps and returns the quantized map, integer indices of shape
(B, h, w, L) with one column per index level (L = ``num_quantizers`` for RVQ, 1 otherwise), and a
scalar loss. ``alphabet_size`` is the number of values one index level can take; those indices
are what a sender transmits.

Codebook health (VQ, RVQ): codebooks start from k-means on a pool of training vectors (see
``initialize_codebooks``), and a code is re-seeded only when its EMA usage per training step falls
far below its fair share of the step's vectors (see ``configure_dead_codes``).
"""

from __future__ import annotations

import math
from functools import partial

import torch
from einops import rearrange
from torch import distributed, nn
from vector_quantize_pytorch import FSQ, LFQ, ResidualVQ, VectorQuantize
from vector_quantize_pytorch.vector_quantize_pytorch import Codebook, sample_vectors_distributed

from embeddings_squeeze.config import CODEBOOK_QUANTIZERS, QuantizerConfig, parse_dead_code_threshold
from embeddings_squeeze.errors import UserError

QUANTIZER_TYPES = CODEBOOK_QUANTIZERS
# level choices recommended by the FSQ paper (Mentzer et al. 2023, table 1) for common sizes
FSQ_LEVELS = {
    2**8: [8, 6, 5],
    2**10: [8, 5, 5, 5],
    2**12: [7, 5, 5, 5, 5],
    2**14: [8, 8, 8, 6, 5],
    2**16: [8, 8, 8, 5, 5, 5],
}
# vector-quantize-pytorch's FSQ refuses a level of 2 unless its symmetry-preserving variant is on
MIN_FSQ_LEVEL = 3
# 'auto' dead-code rule: a code is dead when its EMA usage drops below this share of a uniform
# code's usage per step (vectors per step / K); a re-seeded code restarts at the uniform share, so
# an unused code survives about ln(1 / DEAD_CODE_SHARE) / (1 - decay) steps before it is replaced
DEAD_CODE_SHARE = 1 / 16
# k-means starts from this many training vectors per code (fewer only when the split is smaller)
KMEANS_VECTORS_PER_CODE = 10


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
    if any(level < MIN_FSQ_LEVEL for level in levels):
        raise UserError(
            f"every FSQ level must be at least {MIN_FSQ_LEVEL} (the FSQ implementation rejects a "
            f"level of 2), got {text!r}; try 3 instead of 2"
        )
    return levels


def fsq_levels_for(codebook_size: int) -> list[int]:
    """FSQ levels whose product is close to ``codebook_size`` (exact for the paper's sizes)."""
    if codebook_size in FSQ_LEVELS:
        return FSQ_LEVELS[codebook_size]
    dims = max(1, round(math.log(codebook_size) / math.log(6)))
    level = max(MIN_FSQ_LEVEL, round(codebook_size ** (1 / dims)))
    return [level] * dims


class CodeNorm(nn.BatchNorm1d):
    """Per-channel standardisation of (..., C) code inputs, without a learned scale.

    FSQ bounds each channel with tanh; without this, the projection grows during training until
    most inputs saturate the tanh (|z| > 2), their gradients vanish and the codes stop moving.
    """

    def __init__(self, channels: int):
        super().__init__(channels, affine=False)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return super().forward(codes.reshape(-1, codes.shape[-1])).reshape(codes.shape)


class Quantizer(nn.Module):
    """A quantizer of any supported type behind one (B, D, h, w) interface.

    Args:
        config: the quantizer settings (see ``QuantizerConfig``): for VQ, RVQ and LFQ
            ``num_vectors`` is K, codes per level (a power of two for LFQ); for FSQ it only chooses
            the levels when ``fsq_levels`` is not given.
        dim: size of the vectors being quantized.
    """

    def __init__(self, config: QuantizerConfig, dim: int):
        super().__init__()
        quantizer_type, codebook_size = config.quantizer_type, config.num_vectors
        if quantizer_type not in QUANTIZER_TYPES:
            raise UserError(
                f"unknown --quantizer_type {quantizer_type!r}; choose one of {', '.join(QUANTIZER_TYPES)}"
            )
        self.config = config
        self.quantizer_type = quantizer_type
        self.levels = config.num_quantizers if quantizer_type == "rvq" else 1
        self.norm = nn.Identity()
        self.codes_replaced = 0  # since the last read_codes_replaced()
        # replacement stays off until configure_dead_codes() knows the vectors per step
        codebook = dict(
            codebook_size=codebook_size,
            decay=config.decay,
            commitment_weight=config.commitment_weight,
            kmeans_init=config.kmeans_init,
            threshold_ema_dead_code=0,
        )
        if quantizer_type == "vq":
            self.quantizer = VectorQuantize(dim=dim, **codebook)
            self.alphabet_size = codebook_size
        elif quantizer_type == "rvq":
            self.quantizer = ResidualVQ(dim=dim, num_quantizers=config.num_quantizers, **codebook)
            self.alphabet_size = codebook_size
        elif quantizer_type == "fsq":
            self.fsq_levels = parse_levels(config.fsq_levels) or fsq_levels_for(codebook_size)
            self.quantizer = FSQ(levels=self.fsq_levels, dim=dim)
            # standardise what reaches FSQ's tanh bound (see CodeNorm)
            self.quantizer.project_in = nn.Sequential(
                self.quantizer.project_in, CodeNorm(len(self.fsq_levels))
            )
            self.alphabet_size = math.prod(self.fsq_levels)
        else:
            if codebook_size < 2 or codebook_size & (codebook_size - 1):
                raise UserError(f"LFQ needs --num_vectors to be a power of two, got {codebook_size}")
            # sign quantization collapses on features of one sign (post-ReLU maps): centre them first
            self.norm = nn.LayerNorm(dim)
            # the library's default entropy weight (0.1) outweighs the segmentation loss here and
            # collapses the head onto the majority class; 0.01 keeps it a regulariser
            self.quantizer = LFQ(
                dim=dim, codebook_size=codebook_size, entropy_loss_weight=config.entropy_loss_weight
            )
            self.alphabet_size = codebook_size
        for book in self.codebooks():
            book.replace = partial(self._counted_replace, book.replace)

    def codebooks(self) -> list[Codebook]:
        """The learned codebooks (VQ: one, RVQ: one per level, FSQ/LFQ: none), in level order."""
        return [module for module in self.modules() if isinstance(module, Codebook)]

    @property
    def fixed_bits_per_vector(self) -> int:
        """Bits of a fixed-length code for one grid position: whole bits per index level.

        One rule for every type: ceil(log2(alphabet size)) per level, since a fixed-length code
        cannot send a fraction of a bit (FSQ's 8 x 6 x 5 = 240 codes cost 8 bits, not 7.9).
        """
        return math.ceil(math.log2(self.alphabet_size)) * self.levels

    def decoder_parameter_count(self) -> int:
        """Numbers the receiver needs to turn indices back into vectors."""
        if self.codebooks():
            return sum(book.embed.numel() for book in self.codebooks())
        # FSQ and LFQ codes are implicit: only their output projection is learned
        return sum(p.numel() for p in self.quantizer.project_out.parameters())

    def distinct_codes(self) -> int:
        """Distinct code vectors per level, summed (implicit FSQ/LFQ codes are distinct by design)."""
        if not self.codebooks():
            return self.alphabet_size
        return sum(len(torch.unique(book.embed[0], dim=0)) for book in self.codebooks())

    def configure_dead_codes(self, vectors_per_step: int) -> None:
        """Set the VQ/RVQ dead-code rule for training steps of ``vectors_per_step`` vectors.

        ``dead_code_threshold`` 'auto' scales with the step and the codebook (see
        ``DEAD_CODE_SHARE``); a number is the EMA usage per step below which a code is replaced (0:
        never). A replaced code restarts at the uniform usage vectors_per_step / K, so it is not
        replaced again at once.
        """
        threshold = parse_dead_code_threshold(self.config.dead_code_threshold)
        fair_share = vectors_per_step / self.alphabet_size
        value = DEAD_CODE_SHARE * fair_share if threshold == "auto" else threshold
        for book in self.codebooks():
            book.threshold_ema_dead_code = value
            book.has_dead_code_replacement = value > 0
            book.reset_cluster_size = max(value, fair_share)

    def _counted_replace(self, replace, batch_samples, batch_mask, seq_mask=None) -> None:
        # as the library does, at most as many codes as there are vectors are replaced at once
        samples = batch_samples.shape[-2]
        self.codes_replaced += int(batch_mask.sum(dim=-1).clamp(max=samples).sum())
        replace(batch_samples, batch_mask, seq_mask)

    def read_codes_replaced(self) -> int:
        """Codes re-seeded since the last call (all levels)."""
        count, self.codes_replaced = self.codes_replaced, 0
        return count

    @torch.no_grad()
    def initialize_codebooks(self, vectors: torch.Tensor, vectors_per_step: int) -> None:
        """k-means start of every VQ/RVQ codebook from (N, D) training vectors.

        RVQ levels are initialised in order, each on the residuals the previous levels leave. The
        k-means cluster sizes are rescaled to usage per step of ``vectors_per_step`` vectors, the
        unit of the EMA usage that the dead-code rule compares against.
        """
        was_training = self.training
        self.eval()
        residual = vectors.float()
        layers = self.quantizer.layers if self.quantizer_type == "rvq" else [self.quantizer]
        for layer, book in zip(layers, self.codebooks()):
            book.init_embed_(residual.unsqueeze(0))  # (1, N, D): one codebook head
            book.cluster_size.mul_(vectors_per_step / len(residual))
            book.embed_avg.copy_(book.embed * book.cluster_size.unsqueeze(-1))
            quantized, _, _ = layer(residual.unsqueeze(0))
            residual = residual - quantized[0]
        self.train(was_training)

    @property
    def needs_initialization(self) -> bool:
        return any(not book.initted for book in self.codebooks())

    def synchronize_across_processes(self) -> None:
        """Make VQ/RVQ codebook updates identical on every DDP process.

        vector-quantize-pytorch decides at construction whether to all-reduce its EMA statistics,
        but Lightning builds the model before the process group exists; switch it on afterwards.
        """
        for codebook in self.codebooks():
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
