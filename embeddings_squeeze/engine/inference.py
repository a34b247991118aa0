"""The one evaluation loop: models on a device, in eval mode, without gradients, with a progress bar."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn
from tqdm import tqdm


def evaluation_batches(
    models: nn.Module | Iterable[nn.Module], loader: Iterable, device: torch.device, desc: str
) -> Iterator:
    """Yield ``loader``'s batches with ``models`` moved to ``device`` and in eval mode, under no_grad.

    Batches stay where the loader made them (the CPU); each caller moves what it runs.
    """
    for model in [models] if isinstance(models, nn.Module) else models:
        model.to(device).eval()
    with torch.no_grad():
        yield from tqdm(loader, desc=desc, unit="batch")
