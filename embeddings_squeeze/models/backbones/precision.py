"""The arithmetic the frozen backbone runs in (``--feature_precision``), and what ``auto`` picks.

The backbone's forward pass runs under ``torch.autocast`` in the chosen precision; its features
are then rounded to float16 and handed on as float32 (``FEATURE_DTYPE``), so the head, the quantizer
and the metrics stay float32 whatever the backbone ran in. ``auto`` resolves once, where a run starts,
and checkpoints store the resolved name: a model is evaluated and encoded with the features it was
trained on, on any machine. The receiver (decode) never runs the backbone.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from embeddings_squeeze.errors import UserError

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BF16_MATRIX_FLAGS = ("amx_bf16", "avx512_bf16")  # CPU flags of bf16 matrix arithmetic in hardware


@functools.cache  # read once per process: features() asks for every image
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where it does not)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name as Linux lists it (empty where it does not)."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return ""
    return next((line.partition(":")[2].strip() for line in lines if line.startswith("model name")), "")


def resolve(requested: str, device: torch.device, flags: frozenset[str] | None = None) -> str:
    """The precision ``requested`` means on ``device``: ``auto`` is bfloat16 on CUDA devices with bf16
    tensor cores (compute capability 8.0, Ampere, or later; older ones only emulate it) and on CPUs
    with bf16 matrix arithmetic (``flags``, default: this CPU's), else float32."""
    if requested != "auto":
        if requested not in PRECISIONS:
            raise UserError(f"--feature_precision {requested!r}: choose auto, {', '.join(PRECISIONS)}")
        return requested
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.get_device_capability(device) >= (8, 0) else "float32"
    flags = cpu_flags() if flags is None else flags
    return "bfloat16" if any(flag in flags for flag in BF16_MATRIX_FLAGS) else "float32"


def autocast(precision: str, device: torch.device):
    """The context the frozen encoder runs in: autocast to ``precision`` (float32: none)."""
    resolved = resolve(precision, device)
    return torch.autocast(device.type, dtype=PRECISIONS[resolved], enabled=resolved != "float32")
