"""The one place that relies on vector-quantize-pytorch's internals, for its EMA codebooks.

The library offers no public hook for four things the tool needs, so they are done here and
checked by ``tests/test_library_internals.py``, which fails when a release changes them (and
``pyproject.toml`` admits only the release range it was run against):

- a dead-code rule sized to the training step: ``threshold_ema_dead_code`` is a constructor
  argument, but the usage a re-seeded code restarts at (``reset_cluster_size``) is not passed on;
- counting the codes re-seeded at each step (``Codebook.replace``);
- a k-means start from a pool of training vectors larger than one batch, with its cluster sizes
  in the unit of the EMA usage per step (``init_embed_``, ``cluster_size``, ``embed_avg``);
- codebook synchronisation across processes switched on after construction: the library decides at
  construction (``sync_codebook``), before Lightning has created the process group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import distributed, nn

if TYPE_CHECKING:
    from vector_quantize_pytorch.vector_quantize_pytorch import Codebook


def _internals():
    """The library's module of codebooks, imported when first needed: --help need not pay for it."""
    from vector_quantize_pytorch import vector_quantize_pytorch

    return vector_quantize_pytorch


def codebooks(module: nn.Module) -> list[Codebook]:
    """The EMA codebooks inside a library quantizer, in level order."""
    return [child for child in module.modules() if isinstance(child, _internals().Codebook)]


def set_dead_code_rule(book: Codebook, threshold: float, reset_usage: float) -> None:
    """Re-seed a code whose EMA usage per step drops below ``threshold`` (0: never); a re-seeded
    code restarts at ``reset_usage``."""
    book.threshold_ema_dead_code = threshold
    book.has_dead_code_replacement = threshold > 0
    book.reset_cluster_size = reset_usage


class CountingReplace:
    """A codebook's ``replace`` that first calls ``counted(n)`` with the number of codes it re-seeds.

    An object rather than a closure: the module holding it pickles (``--strategy ddp_spawn``) and
    deep-copies (Lightning's weight averaging) with it, the copy counting into the copy's counter.
    """

    def __init__(self, book: Codebook, counted: Callable[[int], None]):
        self.book, self.counted = book, counted

    def __call__(self, batch_samples, batch_mask, seq_mask=None):
        # as the library does, at most as many codes as there are vectors are replaced at once
        samples = batch_samples.shape[-2]
        self.counted(int(batch_mask.sum(dim=-1).clamp(max=samples).sum()))
        type(self.book).replace(self.book, batch_samples, batch_mask, seq_mask)


def on_replace(book: Codebook, counted: Callable[[int], None]) -> None:
    """Call ``counted(n)`` with the number of codes each re-seeding replaces."""
    book.replace = CountingReplace(book, counted)


def is_started(book: Codebook) -> bool:
    """False until a k-means start (or the library's first training batch) has set the codes."""
    return bool(book.initted)


@torch.no_grad()
def kmeans_start(book: Codebook, vectors: torch.Tensor, usage_scale: float) -> None:
    """Set the codes by k-means on (N, D) ``vectors``; cluster sizes are scaled by ``usage_scale``
    (vectors per training step / N), the unit of the EMA usage the dead-code rule compares."""
    book.init_embed_(vectors.unsqueeze(0))  # (1, N, D): one codebook head
    book.cluster_size.mul_(usage_scale)
    book.embed_avg.copy_(book.embed * book.cluster_size.unsqueeze(-1))


def codes(book: Codebook) -> torch.Tensor:
    """(K, D) the code vectors of a single-head codebook."""
    return book.embed[0]


def synchronize(book: Codebook) -> None:
    """All-reduce the codebook's EMA statistics, k-means and re-seeding samples across processes."""
    book.use_ddp = True
    book.all_reduce_fn = distributed.all_reduce
    book.kmeans_all_reduce_fn = distributed.all_reduce
    book.sample_fn = book.replace_sample_fn = _internals().sample_vectors_distributed
