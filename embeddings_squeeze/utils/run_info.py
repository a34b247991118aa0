"""The package versions a run directory records."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

PACKAGES = (
    "embeddings_squeeze",
    "torch",
    "torchvision",
    "lightning",
    "vector-quantize-pytorch",
    "torchmetrics",
    "timm",
    "compressai",
)


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
