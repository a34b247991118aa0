"""The baseline: frozen backbone and trainable head, with nothing in between but the standardisation
every model applies to the frozen features."""

import torch

from embeddings_squeeze.models import BASELINE
from embeddings_squeeze.models.quantizers.standardize import FeatureStandardizer
from embeddings_squeeze.models.segmentation_module import SegmentationModule


class BaselineSegmentationModule(SegmentationModule):
    """A thin Lightning wrapper around a backbone; its head trains on uncompressed features,
    standardised with training statistics as every squeezed model's bottleneck sees them (so the
    baseline is not slower to converge than the models it is compared with)."""

    kind = BASELINE

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.standardizer = FeatureStandardizer(self.backbone.out_channels)

    def squeeze(self, features: torch.Tensor):
        return self.standardizer(features), features.new_zeros(()), None

    def on_fit_start(self) -> None:
        self.standardizer.start(self.fit_start())
