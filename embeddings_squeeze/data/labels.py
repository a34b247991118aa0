"""How Oxford-IIIT Pet trimaps become class labels.

Trimap pixel values are 1 = pet, 2 = background, 3 = border (the uncertain band around the
outline). ``trimap`` mode keeps all three as classes 0, 1, 2; ``binary`` mode keeps pet (0)
and background (1) and marks the border ``IGNORE_INDEX``, so it counts in neither the loss
nor the metrics.
"""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255
CLASS_NAMES = {
    "trimap": ("pet", "background", "border"),
    "binary": ("pet", "background"),
}
MASK_MODES = tuple(CLASS_NAMES)
# colour-blind-safe RGB colours, one per class in label order (figures and decoded mask PNGs)
CLASS_COLOURS = ((230, 159, 0), (86, 180, 233), (240, 228, 66))


def _lookup_table(mask_mode: str) -> np.ndarray:
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    table[1], table[2] = 0, 1
    if mask_mode == "trimap":
        table[3] = 2
    return table


_LOOKUP = {mode: _lookup_table(mode) for mode in MASK_MODES}


def class_names(mask_mode: str) -> tuple[str, ...]:
    """Class names, in label order, for a mask mode."""
    return CLASS_NAMES[mask_mode]


def trimap_to_labels(trimap: np.ndarray, mask_mode: str) -> np.ndarray:
    """Map trimap values (1..3) to labels; raises ValueError on any other value."""
    values = np.unique(trimap)
    bad = values[(values < 1) | (values > 3)]
    if bad.size:
        raise ValueError(f"trimap values must be 1, 2 or 3, found {bad.tolist()}")
    return _LOOKUP[mask_mode][trimap]
