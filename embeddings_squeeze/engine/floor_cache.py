"""A baseline's task floor on a cached split, kept beside the split's feature cache entry.

The floor (``utils/task_floor.py``: the baseline's own masks coded losslessly, image by image) depends
on the baseline's head and the split's features and mask sizes alone, so every comparison against the
same baseline on the same split reports the same floor: the first one measures it, later ones read it
(at Pet's size, 28 of the 77 s a profiled cached ``visualize`` took). It lives in ``<entry>.floors/``
beside the entry (whose own folder holds exactly what its build wrote), one JSON file per baseline,
named by a hash of the baseline checkpoint's weights and classes; a change to how the floor is
measured changes ``FLOOR_VERSION`` and with it every name.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from embeddings_squeeze.utils.files import write_json
from embeddings_squeeze.utils.hashing import hash_tensors

log = logging.getLogger(__name__)
FLOOR_VERSION = 1


def floor_file(entry: Path, baseline_checkpoint: dict, class_names: tuple[str, ...]) -> Path:
    """Where the floor of the baseline of ``baseline_checkpoint`` on the split of ``entry`` is kept."""
    digest = hash_tensors(hashlib.sha256(), baseline_checkpoint["state_dict"])
    digest.update(json.dumps([FLOOR_VERSION, list(class_names)]).encode())
    return entry.with_name(f"{entry.name}.floors") / f"{digest.hexdigest()[:24]}.json"


def read_floor(path: Path | None) -> dict | None:
    """The floor kept at ``path``, or None when there is none (or it cannot be read: it is measured again)."""
    if path is None or not path.is_file():
        return None
    try:
        floor = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("task floor %s unreadable; measuring it again", path)
        return None
    log.info("task floor of this baseline on this split read from %s", path)
    return floor


def keep_floor(path: Path | None, floor: dict) -> dict:
    """Keep a floor just measured (atomically: a comparison running beside this one reads a whole
    file); returns it."""
    if path is not None:
        path.parent.mkdir(exist_ok=True)
        write_json(path, floor)
    return floor
