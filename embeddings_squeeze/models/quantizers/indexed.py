"""What every quantizer that sends codebook indices shares: alphabet, fixed-length bits, the code
histogram that is the entropy coder's model, the range-coded payload, usage statistics and rates.

Indices are (B, h, w, L) integers, one column per index level (L > 1 for residual VQ), each below
``alphabet_size``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from einops import rearrange
from lightning_utilities.core.rank_zero import rank_zero_only

from embeddings_squeeze.config import QuantizerConfig
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.quantizers.base import Quantizer
from embeddings_squeeze.utils.payload import IndexCoder
from embeddings_squeeze.utils.rate import coded_bits, count_codes, entropy_bits

if TYPE_CHECKING:
    from torchmetrics import Metric

log = logging.getLogger(__name__)
LOW_USAGE = 0.10  # warn when fewer codes than this share are used in a validation epoch


def to_grid(indices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A library's (b, n) or (b, n, l) indices -> (b, h, w, l) int64."""
    if indices.ndim == 2:  # one index level
        indices = indices.unsqueeze(-1)
    return rearrange(indices.long(), "b (h w) l -> b h w l", h=height, w=width)


class IndexQuantizer(Quantizer):
    """A quantizer whose sent integers are codebook indices.

    ``code_histogram`` (L, alphabet_size) counts the training split's indices after training: the
    probability model of the range coder and of the coded rate. ``replacement_history`` holds the
    mean codes re-seeded per training step of each epoch (empty for implicit codebooks).
    """

    sweep_axis = "num_vectors"

    def __init__(
        self, in_channels: int, config: QuantizerConfig, input_pixels: int, levels: int, alphabet_size: int
    ):
        super().__init__(in_channels, config, input_pixels)
        self.levels, self.alphabet_size = levels, alphabet_size
        self.register_buffer("code_histogram", torch.zeros(levels, alphabet_size, dtype=torch.long))
        self.replacement_history: list[float] = []
        self._replaced = 0  # codes re-seeded since the last forward pass

    @classmethod
    def label(cls, config: QuantizerConfig) -> str:
        return f"K{config.num_vectors}"

    @property
    def fixed_bits_per_vector(self) -> int:
        """Bits of a fixed-length code for one grid position: whole bits per index level.

        One rule for every type: ceil(log2(alphabet size)) per level, since a fixed-length code
        cannot send a fraction of a bit (FSQ's 8 x 6 x 5 = 240 codes cost 8 bits, not 7.9).
        """
        return math.ceil(math.log2(self.alphabet_size)) * self.levels

    def distinct_codes(self) -> int:
        """Distinct code vectors per level, summed; implicit codebooks are distinct by design."""
        return self.alphabet_size * self.levels

    def _count_replaced(self, count: int) -> None:
        self._replaced += count

    def record(self, sent: torch.Tensor, loss: torch.Tensor) -> dict:
        replaced, self._replaced = self._replaced, 0
        return {"sent": sent, "replaced": replaced if self.training else None}

    def step_logs(self, record: dict) -> dict[str, float]:
        return {} if record["replaced"] is None else {"codes_replaced": float(record["replaced"])}

    def statistics(self) -> Metric:
        from embeddings_squeeze.models.quantizers.statistics import CodebookStatistics  # see statistics.py

        return CodebookStatistics(self.levels, self.alphabet_size)

    def end_epoch(self, stage: str, values: dict[str, torch.Tensor], epoch: int) -> None:
        if stage == "train" and "codes_replaced_per_step" in values:
            self.replacement_history.append(float(values["codes_replaced_per_step"]))
        if stage == "val":
            self._report_usage(values, epoch)

    @rank_zero_only
    def _report_usage(self, values: dict[str, torch.Tensor], epoch: int) -> None:
        usage = float(values["code_usage"])
        low = " (low: try a smaller --num_vectors)" if usage < LOW_USAGE else ""
        log.info("epoch %d: %.1f%% of %d codes used, perplexity %.1f%s", epoch, 100 * usage,
                 self.alphabet_size, float(values["perplexity"]), low)  # fmt: skip

    def prepare_coder(self, sent_batches: Iterable[torch.Tensor]) -> None:
        histogram = torch.zeros_like(self.code_histogram)
        for sent in sent_batches:
            histogram += count_codes(sent, self.alphabet_size).to(histogram.device)
        self.code_histogram.copy_(histogram)

    def coder_histogram(self) -> torch.Tensor:
        """The training split's code counts, refused when the checkpoint was saved before counting."""
        if self.code_histogram.sum() == 0:
            raise UserError(
                "this checkpoint has no code histogram (it was saved before training finished, e.g. "
                "interrupted.ckpt); use last.ckpt or best-epochNN.ckpt of a finished run"
            )
        return self.code_histogram.cpu()

    def payload_coder(self, key: bytes, grid: tuple[int, int]) -> IndexCoder:
        return IndexCoder(self.coder_histogram(), key, grid)

    def split_rate(self) -> IndexRate:
        return IndexRate(self)

    def decoder_bytes(self) -> int:
        # and the coder's model: the training histogram, a 32-bit count per code and level
        return super().decoder_bytes() + 4 * self.code_histogram.numel()

    def training_record(self) -> dict:
        return {"codes_replaced_per_step": list(self.replacement_history)}

    def restore_training_record(self, record: dict) -> None:
        self.replacement_history = list(record.get("codes_replaced_per_step", []))


class IndexRate:
    """A split's index counts, and the rate columns they give (see the README's rate glossary)."""

    def __init__(self, quantizer: IndexQuantizer):
        self.quantizer = quantizer
        self.counts = torch.zeros(quantizer.levels, quantizer.alphabet_size, dtype=torch.long)

    def update(self, sent: torch.Tensor) -> None:
        self.counts += count_codes(sent.cpu(), self.quantizer.alphabet_size)

    def fields(self, positions: int) -> dict:
        quantizer = self.quantizer
        fixed = quantizer.fixed_bits_per_vector
        entropy = entropy_bits(self.counts)
        coded = coded_bits(self.counts, quantizer.coder_histogram())
        history = quantizer.replacement_history
        return {
            "coding": f"{quantizer.alphabet_size} codes per level",
            "index_levels": quantizer.levels,
            "alphabet_size": quantizer.alphabet_size,
            "distinct_codes": quantizer.distinct_codes(),
            "code_usage_on_split": float((self.counts > 0).double().mean()),
            "fixed_bits_per_vector": fixed,
            "fixed_bits_per_image": fixed * positions,
            "entropy_bits_per_vector": entropy,
            "entropy_bits_per_image": entropy * positions,
            "coded_bits_per_vector": coded,
            "coded_bits_per_image": coded * positions,
            # mean codes re-seeded per training step, over the epochs after the first
            "codes_replaced_per_step_after_epoch1": (
                sum(history[1:]) / len(history[1:]) if len(history) > 1 else None
            ),
        }
