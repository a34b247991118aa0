"""A baseline's pass over a cached split, kept beside the split's feature cache entry.

What a comparison needs of its baseline, the task floor (``utils/task_floor.py``: the baseline's own
masks coded losslessly) and each image's statistics (at the mask's own size, and its counts at the
input size), depends on the baseline's head and the split's features and masks alone: every
comparison against the same baseline on the same split reads what the first one measured, and runs
only the squeezed model (at Pet's size, a cached ``visualize`` spent 28 of its 77 s on the floor
and 9 of the 41 s left on the baseline's predictions and statistics).

It lives in ``<entry>.baselines/`` beside the entry (whose own folder holds exactly what its build
wrote), one ``.npz`` file per baseline (read without pickle), named by a hash of what it depends on
beyond the entry (``BaselineStore.beside``): an edit to the package's code behind the numbers or
another version of a library they come from gives another name, and a change to the file's layout
changes ``KEPT_VERSION``. Statistics are kept for the package's own
metrics only: a metric of your own may change between runs under the same name, so its statistics
are always computed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from PIL import features

from embeddings_squeeze.utils.comparison import Comparison
from embeddings_squeeze.utils.files import atomic_path
from embeddings_squeeze.utils.hashing import hash_tensors

log = logging.getLogger(__name__)
KEPT_VERSION = 2  # 1 kept the floor alone, as JSON in <entry>.floors/ (which can be deleted)
# the code a kept pass's numbers come from: an edit to any of it measures every pass again
SOURCES = (
    "utils/metrics.py", "utils/iou.py", "utils/task_floor.py", "utils/mask_coding.py",
    "engine/evaluation.py", "models/backbones/base.py", "models/segmentation_module.py",
    "models/baseline_module.py", "models/quantizers/standardize.py", "utils/payload.py",
)  # fmt: skip
FLOOR_ROWS = ("mask_png", "mask_webp", "mask_context")  # what a comparison's floor reports


@dataclass(frozen=True)
class KeptBaseline:
    """A baseline's pass over a split as a comparison reads it: the task floor and, where kept for the
    metrics asked for, each image's statistics by ``statistics_key`` (N, ...) and counts at the input
    size (N, C, C), in the split's order."""

    floor: dict
    statistics: dict[str, torch.Tensor] | None = None
    input_confusion: torch.Tensor | None = None

    def image(self, position: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The ``position``-th image's statistics and counts at the input size."""
        return {key: kept[position] for key, kept in self.statistics.items()}, self.input_confusion[position]


@dataclass(frozen=True)
class BaselineStore:
    """Where a baseline's pass over the cached split of ``image_ids`` is kept (``path``), and for which
    statistics (``specs``, by statistics key: the metric computing them and its settings; None where a
    metric is not the package's own, and only the floor is kept)."""

    path: Path
    image_ids: tuple[str, ...]
    specs: dict[str, str] | None

    @classmethod
    def beside(cls, entry: Path, baseline_checkpoint: dict, datamodule, split: str, device, metrics):
        """The store of the baseline of ``baseline_checkpoint`` on ``split`` of ``datamodule``, served
        from the cache ``entry`` and scored by ``metrics`` on ``device``: its name hashes what the pass
        depends on beyond the entry: the baseline's weights and classes, the device its predictions
        are computed on, the versions of the libraries the numbers come from (the coders' among them:
        Pillow's PNG, libwebp, constriction) and the package's code that computes them
        (``SOURCES``)."""
        digest = hash_tensors(hashlib.sha256(), baseline_checkpoint["state_dict"])
        device = torch.device(device)
        hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        libraries = ("torch", "torchvision", "numpy", "constriction", "pillow")
        versions = [*map(version, libraries), features.version("webp")]
        digest.update(json.dumps([KEPT_VERSION, list(datamodule.classes.names), hardware, versions]).encode())
        package = Path(__file__).resolve().parents[1]
        for source in SOURCES:
            digest.update((package / source).read_bytes())
        path = entry.with_name(f"{entry.name}.baselines") / f"{digest.hexdigest()[:24]}.npz"
        return cls(path, tuple(datamodule.files[split].image_ids), statistics_specs(metrics))

    def read(self) -> KeptBaseline | None:
        """The pass kept here, with its statistics where they were kept for these metrics and images;
        None where there is none (or an unreadable or incomplete one, which is measured again)."""
        if not self.path.is_file():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as kept:
                floor = json.loads(str(kept["floor"]))
                if not all(isinstance(floor[row]["bytes_mean"], float) for row in FLOOR_ROWS):
                    raise ValueError("a row without its mean bytes")
                statistics = self._statistics(kept)
        except (OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError, TypeError):
            log.warning("kept baseline pass %s unreadable or incomplete; measuring it again", self.path)
            return None
        log.info("task floor of this baseline on this split read from %s", self.path)
        if statistics is None:
            return KeptBaseline(floor)
        log.info("the baseline's scores on this split read from there too: only the squeezed model runs")
        return KeptBaseline(floor, *statistics)

    def _statistics(self, kept) -> tuple | None:
        """The kept per-image statistics of ``specs`` and counts at the input size; None where they
        were not kept for these metrics on these images."""
        specs = self.specs
        if (
            specs is None
            or "specs" not in kept.files
            or json.loads(str(kept["image_ids"])) != list(self.image_ids)
        ):
            return None
        stored = json.loads(str(kept["specs"]))
        if any(stored.get(key) != spec for key, spec in specs.items()):
            return None
        statistics = {key: torch.from_numpy(kept[f"statistics_{key}"]) for key in specs}
        counts = torch.from_numpy(kept["input_confusion"])
        if any(len(tensor) != len(self.image_ids) for tensor in (counts, *statistics.values())):
            raise ValueError("statistics not of every image")
        return statistics, counts

    def settle(self, kept: KeptBaseline | None, comparison: Comparison) -> dict:
        """The floor a comparison reports: the kept one, else the one it measured. What it measured
        (the floor, the baseline's statistics) is kept here for the next comparison (atomically: one
        running beside it reads a whole file). A pass that cannot be kept is measured again next
        time: said, not fatal."""
        floor = comparison.task_floor if kept is None else kept.floor
        known = kept is not None and (kept.statistics is not None or self.specs is None)
        if known or not comparison.total_images:
            return floor  # nothing new to keep
        arrays = {"floor": json.dumps(floor), "image_ids": json.dumps(list(self.image_ids))}
        if self.specs is not None:
            statistics = comparison.scores["baseline"].statistics
            arrays.update({f"statistics_{key}": torch.stack(statistics[key]).numpy() for key in self.specs})
            arrays["specs"] = json.dumps(self.specs)
            arrays["input_confusion"] = comparison.stacked("baseline", input_size=True).numpy()
        try:
            with atomic_path(self.path) as temporary, open(temporary, "wb") as file:
                np.savez(file, **arrays)
        except OSError as error:
            log.warning(
                "baseline pass not kept in %s (%s); the next comparison measures it again", self.path, error
            )
        return floor


def statistics_specs(metrics) -> dict[str, str] | None:
    """What each statistics key's numbers depend on: the first metric of that key (the one that
    computes them, ``image_statistics``) and its settings; None where one of those is not the
    package's own."""
    specs = {}
    for metric in metrics:
        if metric.statistics_key in specs:
            continue
        if not type(metric).__module__.startswith("embeddings_squeeze."):
            return None
        specs[metric.statistics_key] = json.dumps([type(metric).__qualname__, vars(metric)])
    return specs
