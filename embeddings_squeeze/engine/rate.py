"""What each image costs to send through a squeezed model's bottleneck, on a split.

The quantizer says what it sends and how it codes it (``split_rate``, ``payload_coder``); this
adds what every type reports alike: real payload sizes, the same grid of embeddings sent as
float32 or float16 numbers, bits per input pixel, compression ratios, and the one-off size of what
the receiver holds (the bottleneck's decoder and, apart, the head). See the README's rate glossary.
"""

from __future__ import annotations

import math
import statistics

import torch

from embeddings_squeeze.models import SqueezedSegmentationModule
from embeddings_squeeze.models.quantizers.base import PayloadCoder
from embeddings_squeeze.utils.payload import HEADER, fingerprint
from embeddings_squeeze.utils.rate import float32_bytes

AMORTISED_OVER = 10_000  # images a receiver decodes with one copy of the bottleneck's decoder


def payload_coder(module: SqueezedSegmentationModule) -> PayloadCoder:
    """The payload coder of a squeezed module, keyed to its checkpoint's fingerprint and grid."""
    grid = module.backbone.grid_size(module.hparams.image_size)
    return module.bottleneck.payload_coder(fingerprint(module), grid)


class RateMeter:
    """Accumulates a split's rate statistics and real payload sizes, one image at a time."""

    def __init__(self, module: SqueezedSegmentationModule):
        self.module = module
        self.coder = payload_coder(module)
        self.split = module.bottleneck.split_rate()
        self.sizes: list[int] = []

    def update(self, sent: torch.Tensor, image_sizes: list[tuple[int, int]]) -> None:
        """Count (B, h, w, L) sent integers and encode each image's payload (for images of
        ``image_sizes``, (height, width) each) to measure it."""
        self.split.update(sent)
        self.sizes += [len(self.coder.encode(image, size)) for image, size in zip(sent.cpu(), image_sizes)]

    def report(self) -> dict:
        module = self.module
        image_size = module.hparams.image_size
        grid_h, grid_w = module.backbone.grid_size(image_size)
        positions, pixels = grid_h * grid_w, image_size * image_size
        float32_bits = positions * module.backbone.out_channels * 32
        fields = self.split.fields(positions)
        payload_mean = statistics.fmean(self.sizes)
        # bits per image of each size the type reports, and of the measured payloads
        sizes = {
            name: fields[f"{name}_bits_per_image"]
            for name in ("fixed", "coded")
            if f"{name}_bits_per_image" in fields
        }
        sizes["payload"] = 8 * payload_mean
        report = {
            "quantizer_type": module.hparams.quantizer_type,
            "grid": [grid_h, grid_w],
            "positions_per_image": positions,
            "input_pixels": pixels,
            "images": len(self.sizes),
            **fields,
            "payload_bytes_mean": payload_mean,
            "payload_bytes_median": statistics.median(self.sizes),
            "header_bytes": HEADER.size,
            **{f"{name}_bits_per_pixel": bits / pixels for name, bits in sizes.items()},
            "float32_bits_per_image": float32_bits,
            "float16_bits_per_image": float32_bits // 2,
            "decoder_bytes": module.bottleneck.decoder_bytes(),
            "amortised_bytes_per_image": payload_mean + module.bottleneck.decoder_bytes() / AMORTISED_OVER,
            "head_bytes": float32_bytes(module.backbone.head.state_dict().values()),
        }
        for name, bits in sizes.items():
            if bits > 0:
                report[f"compression_vs_float32_{name}"] = float32_bits / bits
                report[f"compression_vs_float16_{name}"] = float32_bits / 2 / bits
        return {
            key: (round(value, 6) if isinstance(value, float) and math.isfinite(value) else value)
            for key, value in report.items()
        }
