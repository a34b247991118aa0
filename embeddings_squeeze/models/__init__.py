"""Lightning modules for the baseline and the VQ model."""

from embeddings_squeeze.models.baseline_module import BaselineSegmentationModule
from embeddings_squeeze.models.entropy_module import EntropyBottleneckModule
from embeddings_squeeze.models.lightning_module import VQSegmentationModule
from embeddings_squeeze.models.segmentation_module import SegmentationModule

MODULES = {
    cls.kind: cls for cls in (BaselineSegmentationModule, VQSegmentationModule, EntropyBottleneckModule)
}

__all__ = [
    "MODULES",
    "BaselineSegmentationModule",
    "EntropyBottleneckModule",
    "SegmentationModule",
    "VQSegmentationModule",
]
