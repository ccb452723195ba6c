"""Writing command results: JSON files written atomically, or to standard output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from circuitlab.models.cache import atomic_file

__all__ = ["write_json"]


def write_json(data: Any, destination: str) -> None:
    """Write ``data`` as indented JSON to ``destination`` (``-`` for standard output)."""
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    if destination == "-":
        sys.stdout.write(text)
        return
    with atomic_file(Path(destination)) as tmp:
        tmp.write_text(text)
