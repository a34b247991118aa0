"""Epoch statistics of the quantizer types (torchmetrics Metrics, summed across processes).

Kept apart from the types' files, which ``squeeze`` and ``sweep`` import to list each type's flags:
importing torchmetrics costs seconds (4.4 s of an 8 s ``--help`` here), so a type's
``statistics()`` imports its class from here when a model is built.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from embeddings_squeeze.utils.rate import count_codes, usage_statistics


class NoStatistics(Metric):
    """For a type with nothing to log about an epoch."""

    def update(self, **record) -> None:
        pass

    def compute(self) -> dict[str, torch.Tensor]:
        return {}


class BitsStatistics(Metric):
    """Mean bits per image under the learned density over an epoch."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", default=torch.zeros((), dtype=torch.double), dist_reduce_fx="sum")
        self.add_state("images", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, bits: torch.Tensor) -> None:
        self.total += bits.detach().double().sum()
        self.images += len(bits)

    def compute(self) -> dict[str, torch.Tensor]:
        return {"bits_per_image": (self.total / self.images.clamp(min=1)).float()}


class CodebookStatistics(Metric):
    """Code counts over a whole epoch, per index level, and codes re-seeded per training step;
    summed across processes under DDP."""

    full_state_update = False

    def __init__(self, levels: int, alphabet_size: int, **kwargs):
        super().__init__(**kwargs)
        self.add_state(
            "counts", default=torch.zeros(levels, alphabet_size, dtype=torch.long), dist_reduce_fx="sum"
        )
        self.add_state("replaced", default=torch.zeros((), dtype=torch.double), dist_reduce_fx="sum")
        self.add_state("steps", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, sent: torch.Tensor, replaced: int | None = None) -> None:
        self.counts += count_codes(sent, self.counts.shape[1])
        if replaced is not None:
            self.replaced += replaced
            self.steps += 1

    def compute(self) -> dict[str, torch.Tensor]:
        stats = usage_statistics(self.counts)
        values = {name: stats[name].float() for name in ("perplexity", "code_usage", "dead_code_fraction")}
        if len(self.counts) > 1:
            for level, value in enumerate(stats["perplexity_per_level"]):
                values[f"perplexity_level{level}"] = value.float()
        if self.steps > 0:
            values["codes_replaced_per_step"] = (self.replaced / self.steps).float()
        return values
