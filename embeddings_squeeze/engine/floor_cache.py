"""A baseline's task floor on a cached split, kept beside the split's feature cache entry.

The floor (``utils/task_floor.py``: the baseline's own masks coded losslessly, image by image) depends
on the baseline's head and the split's features and mask sizes alone, so every comparison against the
same baseline on the same split reports the same floor: the first one measures it, later ones read it
(at Pet's size, 28 of the 77 s a profiled cached ``visualize`` took). It lives in ``<entry>.floors/``
beside the entry (whose own folder holds exactly what its build wrote), one JSON file per baseline,
named by a hash of what the floor depends on beyond the entry (``floor_file``); a change to how the
floor is measured changes ``FLOOR_VERSION`` and with it every name.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import PIL
import torch
from PIL import features

from embeddings_squeeze.utils.files import write_json
from embeddings_squeeze.utils.hashing import hash_tensors

log = logging.getLogger(__name__)
FLOOR_VERSION = 1
FLOOR_ROWS = ("mask_png", "mask_webp", "mask_context")  # what a comparison's floor reports


def floor_file(entry: Path, baseline_checkpoint: dict, class_names: tuple[str, ...], device) -> Path:
    """Where the floor of the baseline of ``baseline_checkpoint`` on the split of ``entry`` is kept: its
    name hashes what the floor's bytes depend on beyond the entry, the baseline's weights and classes,
    the device its predictions are computed on, and the coders' versions (Pillow's PNG, libwebp's)."""
    digest = hash_tensors(hashlib.sha256(), baseline_checkpoint["state_dict"])
    coders = [PIL.__version__, features.version("webp")]
    digest.update(json.dumps([FLOOR_VERSION, list(class_names), torch.device(device).type, coders]).encode())
    return entry.with_name(f"{entry.name}.floors") / f"{digest.hexdigest()[:24]}.json"


def read_floor(path: Path | None) -> dict | None:
    """The floor kept at ``path``, or None where there is none (or an unreadable or incomplete one, which
    is measured again and replaced)."""
    if path is None or not path.is_file():
        return None
    try:
        floor = json.loads(path.read_text())
        if not all(isinstance(floor[row]["bytes_mean"], float) for row in FLOOR_ROWS):
            raise ValueError("a row without its mean bytes")
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("task floor %s unreadable or incomplete; measuring it again", path)
        return None
    log.info("task floor of this baseline on this split read from %s", path)
    return floor


def settled_floor(path: Path | None, known: dict | None, measured: dict) -> dict:
    """The floor a comparison reports: the one read before it (``known``), else the one it measured,
    then kept at ``path`` for the next (atomically: a comparison running beside it reads a whole file).
    A floor that cannot be kept is measured again next time: said, not fatal."""
    if known is not None:
        return known
    if path is not None:
        try:
            path.parent.mkdir(exist_ok=True)
            write_json(path, measured)
        except OSError as error:
            log.warning("task floor not kept in %s (%s); the next comparison measures it again", path, error)
    return measured
