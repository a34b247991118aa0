"""Rate accounting: what each image costs to send through the bottleneck.

- fixed-length: every grid position sends ``fixed_bits_per_vector`` bits (ceil(log2 K) per level
  for VQ/RVQ, sum(log2 level) for FSQ, log2 K for LFQ);
- entropy: the empirical entropy of the indices under the training split's code histogram, the
  rate an ideal entropy coder would reach with that model;
- payload: the measured length of real encoded files (``utils/payload.py``), header included;
- references: the same grid of embeddings sent as float32 or float16 numbers;
- decoder cost: the one-off size of what the receiver must hold (codebooks and output projection).
Bits per pixel divide by the model input H x W.
"""

from __future__ import annotations

import math
import statistics

import torch
from tqdm import tqdm

from embeddings_squeeze.models.bottleneck import count_codes
from embeddings_squeeze.utils.payload import encode_indices, fingerprint


def entropy_bits(histogram: torch.Tensor) -> float:
    """Sum over index levels of the Shannon entropy (bits) of each level's code distribution."""
    probabilities = histogram.double() / histogram.sum(dim=-1, keepdim=True).clamp(min=1)
    return float(-(probabilities * probabilities.clamp(min=1e-300).log2()).sum())


def cross_entropy_bits(counts: torch.Tensor, histogram: torch.Tensor) -> float:
    """Mean bits per vector of coding ``counts`` with the add-one-smoothed training histogram."""
    model = (histogram.double() + 1) / (histogram.double() + 1).sum(dim=-1, keepdim=True)
    vectors = counts[0].sum().clamp(min=1)
    return float(-(counts.double() * model.log2()).sum() / vectors)


def decoder_bytes(module) -> int:
    """Bytes (float32) the receiver holds once: the codebooks and the output projection."""
    bottleneck = module.bottleneck
    return 4 * (
        bottleneck.quantizer.decoder_parameter_count()
        + sum(p.numel() for p in bottleneck.project_out.parameters())
    )


def rate_report(
    module, split_counts: torch.Tensor | None = None, payload_bytes: list[int] | None = None
) -> dict:
    """The rate table for a VQ module at its own input size.

    ``split_counts`` (L, A) are the evaluated split's code counts (for the cross-entropy the coder
    achieves on that split); ``payload_bytes`` are real payload sizes measured one image at a time.
    """
    image_size = module.hparams.image_size
    grid_h, grid_w = module.backbone.grid_size(image_size)
    positions = grid_h * grid_w
    pixels = image_size * image_size
    quantizer = module.bottleneck.quantizer
    fixed_vector = quantizer.fixed_bits_per_vector
    histogram = module.bottleneck.code_histogram
    # a checkpoint saved before the training split was counted has no code statistics
    entropy_vector = entropy_bits(histogram) if histogram.sum() > 0 else float("nan")
    float32_bits = positions * module.backbone.out_channels * 32
    report = {
        "quantizer_type": quantizer.quantizer_type,
        "index_levels": quantizer.levels,
        "alphabet_size": quantizer.alphabet_size,
        "grid": [grid_h, grid_w],
        "positions_per_image": positions,
        "input_pixels": pixels,
        "fixed_bits_per_vector": fixed_vector,
        "fixed_bits_per_image": fixed_vector * positions,
        "fixed_bits_per_pixel": fixed_vector * positions / pixels,
        "entropy_bits_per_vector": entropy_vector,
        "entropy_bits_per_image": entropy_vector * positions,
        "float32_bits_per_image": float32_bits,
        "float16_bits_per_image": float32_bits // 2,
        "compression_vs_float32_fixed": float32_bits / (fixed_vector * positions),
        "compression_vs_float16_fixed": float32_bits / 2 / (fixed_vector * positions),
        "decoder_bytes": decoder_bytes(module),
    }
    if entropy_vector > 0:
        report["compression_vs_float32_entropy"] = float32_bits / (entropy_vector * positions)
    if split_counts is not None and split_counts.sum() > 0:
        report["code_usage_on_split"] = (split_counts > 0).double().mean().item()
        if histogram.sum() > 0:
            report["coded_bits_per_vector_on_split"] = cross_entropy_bits(split_counts, histogram)
    if payload_bytes:
        mean = statistics.fmean(payload_bytes)
        report.update(
            payload_images=len(payload_bytes),
            payload_bytes_mean=mean,
            payload_bytes_median=statistics.median(payload_bytes),
            payload_bits_per_pixel=8 * mean / pixels,
            compression_vs_float32_payload=float32_bits / (8 * mean),
            compression_vs_float16_payload=float32_bits / 2 / (8 * mean),
        )
    return {
        key: (round(value, 6) if isinstance(value, float) and math.isfinite(value) else value)
        for key, value in report.items()
    }


class RateMeter:
    """Accumulates a split's code counts and real payload sizes, one image at a time."""

    def __init__(self, module):
        quantizer = module.bottleneck.quantizer
        self.module = module
        self.counts = torch.zeros(quantizer.levels, quantizer.alphabet_size, dtype=torch.long)
        self.histogram = module.bottleneck.code_histogram.cpu()
        self.key = fingerprint(module)
        self.sizes: list[int] = []

    def update(self, indices: torch.Tensor) -> None:
        """Count (B, h, w, L) indices and encode each image's payload to measure it."""
        indices = indices.cpu()
        self.counts += count_codes(indices, self.counts.shape[1])
        self.sizes += [
            len(encode_indices(image_indices, self.histogram, self.key)) for image_indices in indices
        ]

    def report(self) -> dict:
        return rate_report(self.module, self.counts, self.sizes)


@torch.no_grad()
def evaluate_rate(module, dataloader) -> dict:
    """Run ``module`` over ``dataloader`` in eval mode; rate table with real payload sizes."""
    module.eval()
    meter = RateMeter(module)
    for batch in tqdm(dataloader, desc="measuring payload sizes", unit="batch"):
        _, indices, _ = module.bottleneck(module.features_of(batch[0].to(module.device)))
        meter.update(indices)
    return meter.report()
