"""Checks that an output path can be written, made before hours of work rather than after them."""

from __future__ import annotations

import os
from pathlib import Path


class OutputPathError(ValueError):
    """An output path that cannot be written."""


def check_output_path(path: Path, option: str, directory: bool = False) -> None:
    """Refuse `path` unless it (or the nearest existing folder above it) can be written.

    `directory=True` for outputs written as a directory (a model bundle), else a file.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != directory:
        kind = "a directory" if path.is_dir() else "a file"
        raise OutputPathError(f"{option} {path} is {kind}: choose another path")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"{option} {path}: {existing} is not a directory: choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{option} {path}: {existing} is not writable: choose another path")
