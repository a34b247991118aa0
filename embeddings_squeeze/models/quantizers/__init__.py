"""Bottleneck types by their ``--quantizer_type`` name, and the settings each brings.

Built in: ``vq``, ``rvq``, ``fsq``, ``lfq`` (codebook indices), ``eb`` (a learned entropy
bottleneck) and ``none`` (no quantization: the same-capacity reference), one class per file of
this folder behind the contract of ``base.py``. Others come
from ``register_quantizer`` (code that calls the engine's functions) or the
``embeddings_squeeze.quantizers`` entry-point group (the command line), as the README's
*Extending* shows.

A ``QuantizerConfig`` holds the settings every type shares and, in ``settings``, an instance of
the chosen class's ``Settings``; checkpoints store both as one flat dict of plain values.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, fields, replace

from embeddings_squeeze.config import (
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    QuantizerConfig,
    RuntimeConfig,
    TrainingConfig,
    add_arguments,
    from_values,
)
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.quantizers.base import FitStart, NoSettings, Quantizer, Squeezed
from embeddings_squeeze.models.quantizers.continuous import ContinuousBottleneck, ContinuousSettings
from embeddings_squeeze.models.quantizers.eb import EntropyBottleneckQuantizer
from embeddings_squeeze.models.quantizers.fsq import FiniteScalarQuantizer
from embeddings_squeeze.models.quantizers.indexed import IndexQuantizer
from embeddings_squeeze.models.quantizers.lfq import LookupFreeQuantizer
from embeddings_squeeze.models.quantizers.rvq import ResidualQuantizer
from embeddings_squeeze.models.quantizers.vq import VectorQuantizer
from embeddings_squeeze.registry import Registry


def check_settings(cls: type, registered: dict[str, type]) -> None:
    """Refuse a type whose settings would collide in the flat namespace flags and checkpoints share:
    a name of a shared setting, or one another type defines with another default."""
    shared = (ModelConfig, DataConfig, OptimizerConfig, QuantizerConfig, TrainingConfig, RuntimeConfig)
    taken = {item.name for config in shared for item in fields(config)}
    for item in fields(cls.Settings):
        if item.name in taken:
            raise UserError(
                f"quantizer {cls.name!r}: its setting {item.name!r} is a shared setting's name; rename it"
            )
        for other in registered.values():
            same = next((f for f in fields(other.Settings) if f.name == item.name), None)
            if same is not None and same.default != item.default:
                raise UserError(
                    f"quantizer {cls.name!r}: its setting {item.name!r} has default {item.default!r}, but "
                    f"{other.name!r} defines it with {same.default!r}; rename it"
                )


QUANTIZERS = Registry(
    "--quantizer_type",
    "embeddings_squeeze.quantizers",
    (
        VectorQuantizer,
        ResidualQuantizer,
        FiniteScalarQuantizer,
        LookupFreeQuantizer,
        EntropyBottleneckQuantizer,
        ContinuousBottleneck,
    ),
    check=check_settings,
)
REFERENCE = ContinuousBottleneck.name  # the type of every continuous reference
register_quantizer = QUANTIZERS.register

__all__ = [
    "QUANTIZERS",
    "FitStart",
    "IndexQuantizer",
    "NoSettings",
    "Quantizer",
    "Squeezed",
    "add_quantizer_arguments",
    "build_quantizer",
    "quantizer_class",
    "quantizer_config",
    "quantizer_values",
    "REFERENCE",
    "reference_config",
    "register_quantizer",
    "resolved",
    "run_label",
]


def quantizer_class(name: str) -> type[Quantizer]:
    return QUANTIZERS.find(name)


def run_label(config: QuantizerConfig) -> str:
    """A squeezed model's name in runs and tables, e.g. vq_K64 or eb_lambda10."""
    return f"{config.quantizer_type}_{quantizer_class(config.quantizer_type).label(config)}"


def resolved(config: QuantizerConfig) -> QuantizerConfig:
    """``config`` with its type's settings: the defaults when unset, refused when of another type."""
    cls = quantizer_class(config.quantizer_type)
    if config.settings is None:
        return replace(config, settings=cls.Settings())
    if type(config.settings) is not cls.Settings:
        raise UserError(
            f"settings {type(config.settings).__name__} do not belong to --quantizer_type "
            f"{config.quantizer_type}, which takes {cls.Settings.__name__}"
        )
    return config


def reference_config(config: QuantizerConfig) -> QuantizerConfig:
    """The continuous reference of ``config``: its standardisation and projections, and the type's
    modules around its quantization (``code_modules``) where it has them, with the identity for the
    quantization itself; what ``config``'s difference from it is due to is the quantization alone."""
    config = resolved(config)
    cls = quantizer_class(config.quantizer_type)
    if cls.name == REFERENCE:
        return config
    channels = cls.code_channels(config)
    settings = ContinuousSettings(
        reference_for=None if channels is None else cls.name, code_channels=channels
    )
    return QuantizerConfig(REFERENCE, bottleneck_dim=config.bottleneck_dim, settings=settings)


def build_quantizer(in_channels: int, config: QuantizerConfig, input_pixels: int) -> Quantizer:
    """The bottleneck ``config`` describes, between ``in_channels`` features and the head."""
    config = resolved(config)
    return quantizer_class(config.quantizer_type)(in_channels, config, input_pixels)


def quantizer_values(config: QuantizerConfig) -> dict:
    """The flat plain values a checkpoint stores: shared settings and the type's own."""
    config = resolved(config)
    shared = {item.name: getattr(config, item.name) for item in fields(config) if item.name != "settings"}
    return {**shared, **asdict(config.settings)}


def quantizer_config(values: dict | argparse.Namespace) -> QuantizerConfig:
    """The config of flat values: parsed flags or a checkpoint's hyperparameters."""
    values = vars(values) if isinstance(values, argparse.Namespace) else values
    config = from_values(QuantizerConfig, values)
    settings = from_values(quantizer_class(config.quantizer_type).Settings, values)
    return replace(config, settings=settings)


def add_quantizer_arguments(
    parser: argparse.ArgumentParser, sweep: bool = False, defaults: dict | None = None
) -> None:
    """The shared quantizer flags, then each type's own, in a group per type.

    ``sweep``: several types may be given, and each sweep axis (``--num_vectors``, ``--lambdas``)
    takes a list; every other setting takes one value for the whole sweep.
    """
    QUANTIZERS.load_installed()  # installed plugins bring flags of their own
    classes = [QUANTIZERS.find(name) for name in QUANTIZERS]
    kinds = "; ".join(f"{cls.name}: {cls.summary}" for cls in classes)
    options = {"choices": list(QUANTIZERS), "help": f"the bottleneck type ({kinds})"}
    if sweep:
        options["nargs"] = "+"
        defaults = {"quantizer_type": [QuantizerConfig.quantizer_type], **(defaults or {})}
    add_arguments(parser, QuantizerConfig, defaults=defaults, title="quantization", sweep=sweep,
                  options={"quantizer_type": options})  # fmt: skip
    added = {item.name for item in fields(QuantizerConfig)}
    for cls in classes:
        own = tuple(item.name for item in fields(cls.Settings) if item.name not in added)
        if own:
            takers = [other.name for other in classes if set(own) <= {f.name for f in fields(other.Settings)}]
            title = f"{', '.join(takers)} only"
            add_arguments(parser, cls.Settings, only=own, defaults=defaults, title=title, sweep=sweep)
            added.update(own)
