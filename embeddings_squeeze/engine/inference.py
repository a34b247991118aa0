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

    Batches stay where the loader made them (the CPU); each caller moves what it runs. Every
    submodule gets its train/eval mode back afterwards: the feature cache runs the model just before
    fitting, and Lightning keeps the modes it finds, so a head left in eval mode would train with
    frozen BatchNorm statistics.
    """
    models = [models] if isinstance(models, nn.Module) else list(models)
    modes = [(module, module.training) for model in models for module in model.modules()]
    for model in models:
        model.to(device).eval()
    try:
        with torch.no_grad():
            yield from tqdm(loader, desc=desc, unit="batch")
    finally:
        for module, training in modes:
            module.training = training
