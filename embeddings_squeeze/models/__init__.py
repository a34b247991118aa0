"""Lightning modules for the baseline and the squeezed (VQ) model.

The modules load on first use (PEP 562): ``models/quantizers/``, whose settings are flags of
``squeeze`` and ``sweep``, is imported to build their parsers without the training stack.
"""

from importlib import import_module

BASELINE, SQUEEZED = "baseline", "squeezed"  # the kinds a checkpoint records
_MODULES = {
    "BaselineSegmentationModule": "embeddings_squeeze.models.baseline_module",
    "SegmentationModule": "embeddings_squeeze.models.segmentation_module",
    "SqueezedSegmentationModule": "embeddings_squeeze.models.lightning_module",
}

__all__ = ["BASELINE", "MODULES", "SQUEEZED", *_MODULES]


def __getattr__(name: str):
    if name in _MODULES:
        return getattr(import_module(_MODULES[name]), name)
    if name == "MODULES":  # checkpoint kind -> module class
        return {
            cls.kind: cls
            for cls in (__getattr__("BaselineSegmentationModule"), __getattr__("SqueezedSegmentationModule"))
        }
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
