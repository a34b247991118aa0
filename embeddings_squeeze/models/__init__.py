"""Lightning modules for the baseline and the squeezed (VQ) model."""

from embeddings_squeeze.models.baseline_module import BaselineSegmentationModule
from embeddings_squeeze.models.lightning_module import VQSegmentationModule
from embeddings_squeeze.models.segmentation_module import SegmentationModule

MODULES = {cls.kind: cls for cls in (BaselineSegmentationModule, VQSegmentationModule)}
BASELINE, SQUEEZED = BaselineSegmentationModule.kind, VQSegmentationModule.kind  # checkpoint kinds

__all__ = [
    "BASELINE",
    "MODULES",
    "SQUEEZED",
    "BaselineSegmentationModule",
    "SegmentationModule",
    "VQSegmentationModule",
]
