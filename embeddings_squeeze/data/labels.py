"""How masks become class labels, and the classes every dataset describes itself with.

Inside the package a label map holds 0..N-1 for N classes and ``IGNORE_INDEX`` for pixels that
count in neither the loss nor the metrics (a dataset's own "ignore" value is mapped to it).

Oxford-IIIT Pet trimap values are 1 = pet, 2 = background, 3 = border (the uncertain band around
the outline). ``trimap`` mode keeps all three as classes 0, 1, 2; ``binary`` mode keeps pet (0)
and background (1) and marks the border ``IGNORE_INDEX``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255
MAX_CLASSES = IGNORE_INDEX  # labels 0..254; 255 is the ignored value
PET_CLASS_NAMES = {
    "trimap": ("pet", "background", "border"),
    "binary": ("pet", "background"),
}
MASK_MODES = tuple(PET_CLASS_NAMES)
VOC_CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip
# colour-blind-safe RGB colours for the pet classes, in label order
PET_COLOURS = ((230, 159, 0), (86, 180, 233), (240, 228, 66))
IGNORE_COLOUR = (224, 224, 192)  # ignored pixels in figures and decoded masks: VOC's boundary colour


def label_palette(count: int) -> tuple[tuple[int, int, int], ...]:
    """The Pascal VOC colour map: label i's RGB from the bits of i, spread over the channels' high bits.

    VOC's masks are drawn in it, and any number of classes (up to 256) gets distinct colours.
    """
    colours = []
    for label in range(count):
        rgb, value = [0, 0, 0], label
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        colours.append(tuple(rgb))
    return tuple(colours)


@dataclass(frozen=True)
class ClassSet:
    """A dataset's classes: names and RGB colours in label order (figures, legends, decoded masks)."""

    names: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...]

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(str(name) for name in self.names))
        object.__setattr__(self, "colours", tuple(tuple(int(v) for v in colour) for colour in self.colours))
        if len(self.colours) != len(self.names):
            raise ValueError(f"{len(self.names)} class names but {len(self.colours)} colours")

    def __len__(self) -> int:
        return len(self.names)

    def as_values(self) -> dict:
        """Plain values, as checkpoints store them."""
        return {"class_names": list(self.names), "class_colours": [list(colour) for colour in self.colours]}

    @classmethod
    def from_values(cls, values: dict) -> ClassSet:
        return cls(values["class_names"], values["class_colours"])

    def palette(self) -> list[int]:
        """A flat 768-value PNG palette: label i in its class colour, ``IGNORE_INDEX`` in IGNORE_COLOUR."""
        colours = [*self.colours, *[(0, 0, 0)] * (IGNORE_INDEX - len(self.colours)), IGNORE_COLOUR]
        return [value for colour in colours for value in colour]


def pet_classes(mask_mode: str) -> ClassSet:
    names = PET_CLASS_NAMES[mask_mode]
    return ClassSet(names, PET_COLOURS[: len(names)])


def _lookup_table(mask_mode: str) -> np.ndarray:
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    table[1], table[2] = 0, 1
    if mask_mode == "trimap":
        table[3] = 2
    return table


_LOOKUP = {mode: _lookup_table(mode) for mode in MASK_MODES}


def trimap_to_labels(trimap: np.ndarray, mask_mode: str) -> np.ndarray:
    """Map trimap values (1..3) to labels; raises ValueError on any other value."""
    if trimap.size and (trimap.min() < 1 or trimap.max() > 3):  # two reductions: 12x np.unique's speed
        values = np.unique(trimap)
        raise ValueError(
            f"trimap values must be 1, 2 or 3, found {values[(values < 1) | (values > 3)].tolist()}"
        )
    return _LOOKUP[mask_mode][trimap]


def index_to_labels(mask: np.ndarray, num_classes: int, ignore_value: int) -> np.ndarray:
    """A uint8 label map of values 0..num_classes-1 and ``ignore_value`` -> labels; ValueError on others."""
    table = np.full(256, -1, dtype=np.int16)  # -1: a value the dataset does not define
    table[:num_classes] = np.arange(num_classes)
    table[ignore_value] = IGNORE_INDEX
    labels = table[mask]
    undefined = labels < 0
    if undefined.any():
        raise ValueError(
            f"mask values must be class labels 0..{num_classes - 1} or the ignore value {ignore_value}, "
            f"found {np.unique(mask[undefined]).tolist()}"
        )
    return labels.astype(np.uint8)
