"""Defaults and value rules shared by the command line and the modules, kept free of heavy imports."""

from __future__ import annotations

from embeddings_squeeze.errors import UserError

# the train/val split and --subset_size samples come from this seed unless --split_seed says otherwise
DEFAULT_SPLIT_SEED = 42


def parse_dead_code_threshold(value: str | float) -> float | str:
    """'auto' or a number >= 0 (0 turns dead-code replacement off)."""
    if str(value) == "auto":
        return "auto"
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"--dead_code_threshold must be 'auto' or a number, got {value!r}") from None
    if number < 0:
        raise UserError(f"--dead_code_threshold must be 'auto' or at least 0, got {number}")
    return number
