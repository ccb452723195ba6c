"""Writing a result folder atomically: staged next to the target, moved into place when done."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from circuitlab.errors import InputError

__all__ = ["check_writable_folder", "staged_folder"]


def check_writable_folder(target: Path, *, overwrite: bool) -> None:
    """Refuse an existing file, or a non-empty folder unless ``overwrite``."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise InputError(
            f"{target} already exists and is not empty. Pass overwrite=True to replace it, or "
            f"choose another folder."
        )


def _sibling(target: Path, suffix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent))


@contextlib.contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``target``; on success it replaces ``target``.

    On an exception (or an interrupt) the temporary folder is removed and ``target`` is left as
    it was; an existing ``target`` is removed only after the new one is in place.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    )
    try:
        yield staging
        if target.exists():
            trash = Path(
                tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent)
            )
            os.replace(target, trash / target.name)
            os.replace(staging, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
