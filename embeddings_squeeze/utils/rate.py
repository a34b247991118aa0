"""Rate accounting: what each image costs to send through the bottleneck, on the evaluated split.

- fixed-length: every grid position sends ``fixed_bits_per_vector`` bits, ceil(log2 alphabet size)
  per index level for every quantizer type;
- entropy: the empirical entropy of the split's own indices, a lower bound no coder with a fixed
  model reaches;
- coded: the cross-entropy of the split's indices under the coder's model (the training split's
  add-one-smoothed histogram), i.e. what the range coder achieves before framing;
- payload: the measured length of real encoded files (``utils/payload.py``), header and framing included;
- references: the same grid of embeddings sent as float32 or float16 numbers;
- receiver: the one-off size of what the receiver must hold: the bottleneck's decoder (codebooks
  and output projection) and, separately, the segmentation head.
Bits per pixel divide by the model input H x W.
"""

from __future__ import annotations

import math
import statistics

import torch

from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.bottleneck import count_codes, level_entropy_bits
from embeddings_squeeze.models.entropy_module import CODING_TABLES
from embeddings_squeeze.utils.payload import IndexCoder, SymbolCoder, coder_probabilities, fingerprint


def entropy_bits(counts: torch.Tensor) -> float:
    """Sum over index levels of the Shannon entropy (bits) of each level's (L, A) code counts."""
    return float(level_entropy_bits(counts).sum())


def coded_bits(counts: torch.Tensor, histogram: torch.Tensor) -> float:
    """Mean bits per vector of coding (L, A) ``counts`` with the coder's model built from ``histogram``."""
    vectors = counts[0].sum().clamp(min=1)
    return float(-(counts.double().cpu() * coder_probabilities(histogram).log2()).sum() / vectors)


def float32_bytes(parameters) -> int:
    """Bytes of these tensors sent once as float32 numbers."""
    return 4 * sum(tensor.numel() for tensor in parameters)


def coder_histogram(module) -> torch.Tensor:
    """The VQ module's code histogram, refused when the checkpoint was saved before counting."""
    histogram = module.bottleneck.code_histogram
    if histogram.sum() == 0:
        raise UserError(
            "this checkpoint has no code histogram (it was saved before training finished, e.g. "
            "interrupted.ckpt); use last.ckpt or best-epochNN.ckpt of a finished run"
        )
    return histogram.cpu()


def payload_coder(module) -> IndexCoder | SymbolCoder:
    """The payload coder of a squeezed module: for VQ its code histogram, for the entropy bottleneck
    its learned density; with the checkpoint's fingerprint and grid."""
    grid = module.backbone.grid_size(module.hparams.image_size)
    if module.kind == "eb":
        return SymbolCoder(module.bottleneck, fingerprint(module), grid)
    return IndexCoder(coder_histogram(module), fingerprint(module), grid)


def _rate_table(module, payload_bytes: list[int], bits_per_image: dict, fields: dict) -> dict:
    """What every squeezed model reports: sizes per image, references and one-off receiver costs.

    ``bits_per_image`` maps 'fixed', 'coded', 'payload' (those that apply) to bits per image.
    """
    image_size = module.hparams.image_size
    grid_h, grid_w = module.backbone.grid_size(image_size)
    positions = grid_h * grid_w
    pixels = image_size * image_size
    float32_bits = positions * module.backbone.out_channels * 32
    payload_mean = statistics.fmean(payload_bytes)
    report = {
        "quantizer_type": module.hparams.quantizer_type,
        "grid": [grid_h, grid_w],
        "positions_per_image": positions,
        "input_pixels": pixels,
        "images": len(payload_bytes),
        **fields,
        "payload_bytes_mean": payload_mean,
        "payload_bytes_median": statistics.median(payload_bytes),
        "payload_bits_per_pixel": 8 * payload_mean / pixels,
        "float32_bits_per_image": float32_bits,
        "float16_bits_per_image": float32_bits // 2,
        "head_bytes": float32_bytes(module.backbone.head.state_dict().values()),
    }
    for name, size in {**bits_per_image, "payload": 8 * payload_mean}.items():
        if size > 0:
            report[f"compression_vs_float32_{name}"] = float32_bits / size
            report[f"compression_vs_float16_{name}"] = float32_bits / 2 / size
    return {
        key: (round(value, 6) if isinstance(value, float) and math.isfinite(value) else value)
        for key, value in report.items()
    }


def rate_report(module, split_counts: torch.Tensor, payload_bytes: list[int]) -> dict:
    """The rate table of a VQ module at its own input size, on a split.

    ``split_counts`` (L, A) are the evaluated split's code counts; ``payload_bytes`` are real
    payload sizes measured one image at a time.
    """
    grid_h, grid_w = module.backbone.grid_size(module.hparams.image_size)
    positions = grid_h * grid_w
    quantizer = module.bottleneck.quantizer
    fixed_vector = quantizer.fixed_bits_per_vector
    entropy_vector = entropy_bits(split_counts)
    coded_vector = coded_bits(split_counts, coder_histogram(module))
    history = module.codes_replaced_history
    fields = {
        "index_levels": quantizer.levels,
        "alphabet_size": quantizer.alphabet_size,
        "distinct_codes": quantizer.distinct_codes(),
        "code_usage_on_split": float((split_counts > 0).double().mean()),
        "fixed_bits_per_vector": fixed_vector,
        "fixed_bits_per_image": fixed_vector * positions,
        "fixed_bits_per_pixel": fixed_vector * positions / module.hparams.image_size**2,
        "entropy_bits_per_vector": entropy_vector,
        "entropy_bits_per_image": entropy_vector * positions,
        "coded_bits_per_vector": coded_vector,
        "coded_bits_per_image": coded_vector * positions,
        "decoder_bytes": 4 * quantizer.decoder_parameter_count()
        + float32_bytes(module.bottleneck.project_out.parameters()),
        # mean codes re-seeded per training step, over the epochs after the first
        "codes_replaced_per_step_after_epoch1": statistics.fmean(history[1:]) if len(history) > 1 else None,
    }
    bits = {"fixed": fixed_vector * positions, "coded": coded_vector * positions}
    return _rate_table(module, payload_bytes, bits, fields)


def entropy_model_report(module, bits: list[float], payload_bytes: list[int]) -> dict:
    """The rate table of an entropy-bottleneck module on a split: ``bits`` per image under its learned
    density (what its coder spends before table rounding and framing), and real payload sizes."""
    coded = statistics.fmean(bits)
    layer = module.bottleneck
    fields = {
        "channels": module.hparams.bottleneck_dim,
        "coded_bits_per_image": coded,
        "coded_bits_per_vector": coded / math.prod(module.backbone.grid_size(module.hparams.image_size)),
        # the density's parameters (float32) and its coding tables (int32), and the projection back
        "decoder_bytes": float32_bytes(layer.entropy_bottleneck.parameters())
        + 4 * sum(getattr(layer.entropy_bottleneck, name).numel() for name in CODING_TABLES)
        + float32_bytes(layer.project_out.parameters()),
    }
    return _rate_table(module, payload_bytes, {"coded": coded}, fields)


class RateMeter:
    """Accumulates a split's rate statistics and real payload sizes, one image at a time."""

    def __init__(self, module):
        self.module = module
        self.coder = payload_coder(module)
        self.sizes: list[int] = []
        self.bits: list[float] = []
        if module.kind != "eb":
            quantizer = module.bottleneck.quantizer
            self.counts = torch.zeros(quantizer.levels, quantizer.alphabet_size, dtype=torch.long)

    def update(self, indices: torch.Tensor) -> None:
        """Count (B, h, w, L) indices (or entropy-bottleneck symbols) and encode each image's payload
        to measure it."""
        if self.module.kind == "eb":
            self.bits += self.module.bottleneck.bits(indices.to(self.module.device)).tolist()
        else:
            self.counts += count_codes(indices.cpu(), self.counts.shape[1])
        self.sizes += [len(self.coder.encode(image_indices)) for image_indices in indices.cpu()]

    def report(self) -> dict:
        if self.module.kind == "eb":
            return entropy_model_report(self.module, self.bits, self.sizes)
        return rate_report(self.module, self.counts, self.sizes)
