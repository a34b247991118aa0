"""Writing files so that readers never see half of one."""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A private temporary path to write; renamed to ``path`` only when the block ends normally.

    Readers never see half a file or folder, and a process killed mid-write leaves the previous
    ``path`` whole; on an error the temporary path is removed. For a folder, the rename fails when
    ``path`` already exists (OSError).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial-{unique_suffix()}")
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)
        raise


def unique_suffix() -> str:
    """host-pid-random: unique among processes of every machine that shares a filesystem."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def shown(path: str | Path) -> str:
    """``path`` as a user reads it: relative to the working folder when inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def without_nan(data):
    """``data`` with every NaN float as None: JSON has no NaN, and a class absent from a split has no IoU."""
    if isinstance(data, dict):
        return {key: without_nan(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [without_nan(value) for value in data]
    return None if isinstance(data, float) and math.isnan(data) else data


def write_json(path: str | Path, data) -> None:
    """Write strict JSON atomically (see ``atomic_path``); NaN becomes null."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(without_nan(data), indent=2, default=str, allow_nan=False) + "\n")
