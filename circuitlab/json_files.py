"""Result files as JSON: written atomically, read back with clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from circuitlab.errors import InputError
from circuitlab.files import output_file, read_text_file

__all__ = ["read_json", "write_json_atomic"]


def write_json_atomic(data: Any, path: str | os.PathLike[str], *, indent: int = 1) -> Path:
    """Write ``data`` as JSON to ``path`` (a temporary file renamed into place; under a
    ``torch.distributed`` group by rank 0 only); returns it."""
    target = Path(path)
    with output_file(target) as tmp:
        tmp.write_text(json.dumps(data, indent=indent) + "\n", encoding="utf-8")
    return target


def read_json(path: str | os.PathLike[str], what: str) -> Any:
    """The JSON content of ``path``; ``what`` names the expected content in the errors."""
    source = Path(path)
    text = read_text_file(source, f"{what} file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{source} is not valid JSON ({error}); expected {what}.") from error
