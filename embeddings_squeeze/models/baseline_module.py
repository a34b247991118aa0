"""The baseline: frozen backbone and trainable head, with nothing in between."""

from embeddings_squeeze.models import BASELINE
from embeddings_squeeze.models.segmentation_module import SegmentationModule


class BaselineSegmentationModule(SegmentationModule):
    """A thin Lightning wrapper around a backbone; its head trains on uncompressed features."""

    kind = BASELINE
