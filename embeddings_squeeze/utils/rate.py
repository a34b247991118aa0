"""Rate arithmetic on plain tensors: code counts, their entropy, their cost under the coder's model.

- fixed-length: ceil(log2 alphabet size) bits per index level and grid position;
- entropy: the empirical entropy of a split's own indices (what an ideal coder that knew this
  split's statistics in advance would spend; see the README's rate glossary);
- coded: the cross-entropy of a split's indices under the coder's model (the training split's
  add-one-smoothed histogram), i.e. what the range coder spends before framing.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from embeddings_squeeze.utils.payload import coder_probabilities


def count_codes(indices: torch.Tensor, alphabet_size: int) -> torch.Tensor:
    """(..., L) indices -> (L, alphabet_size) counts per index level."""
    flat = indices.reshape(-1, indices.shape[-1])
    return torch.stack([torch.bincount(column, minlength=alphabet_size) for column in flat.unbind(dim=1)])


def level_entropy_bits(counts: torch.Tensor) -> torch.Tensor:
    """(L, A) code counts -> (L,) Shannon entropy in bits of each level's empirical distribution."""
    probabilities = counts.double() / counts.sum(dim=-1, keepdim=True).clamp(min=1)
    return -(probabilities * probabilities.clamp(min=1e-300).log2()).sum(dim=-1)


def entropy_bits(counts: torch.Tensor) -> float:
    """Sum over index levels of the Shannon entropy (bits) of each level's (L, A) code counts."""
    return float(level_entropy_bits(counts).sum())


def coded_bits(counts: torch.Tensor, histogram: torch.Tensor) -> float:
    """Mean bits per vector of coding (L, A) ``counts`` with the coder's model built from ``histogram``."""
    vectors = counts[0].sum().clamp(min=1)
    return float(-(counts.double().cpu() * coder_probabilities(histogram).log2()).sum() / vectors)


def usage_statistics(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """(L, A) counts -> perplexity, fraction of codes used and dead-code fraction, averaged over levels.

    A dead code is one never chosen in the counted period.
    """
    entropy = level_entropy_bits(counts)
    used = (counts > 0).double().mean(dim=-1)
    return {
        "perplexity": (2**entropy).mean(),
        "code_usage": used.mean(),
        "dead_code_fraction": 1 - used.mean(),
        "perplexity_per_level": 2**entropy,
        "code_usage_per_level": used,
    }


def float32_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of these tensors sent once as float32 numbers."""
    return 4 * sum(tensor.numel() for tensor in tensors)
