"""Writing command results as JSON, atomically, or to standard output.

A command's ``--json`` file is the result's own document (`circuitlab.results.Result.to_document`,
loadable with the result class's ``load``) plus a ``run`` entry with facts about the run
(seconds, and what the command printed beside the result).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from circuitlab.files import output_file
from circuitlab.json_files import write_json_atomic
from circuitlab.results import Result

__all__ = ["save_figure", "write_json", "write_result_json"]


def write_json(data: Any, destination: str) -> None:
    """Write ``data`` as indented JSON to ``destination`` (``-`` for standard output)."""
    if destination == "-":
        sys.stdout.write(json.dumps(data, indent=1) + "\n")
        return
    write_json_atomic(data, destination)


def write_result_json(result: Result, destination: str, **run: Any) -> None:
    """Write ``result``'s document with ``run`` facts to ``destination`` (``-``: stdout)."""
    write_json({**result.to_document(), "run": run}, destination)


def save_figure(figure: Any, path: str) -> None:
    """Write a matplotlib figure atomically, in the format its extension names."""
    destination = Path(path)
    with output_file(destination) as tmp:
        figure.savefig(tmp, dpi=150, format=destination.suffix.lstrip(".") or "png")
    print(f"wrote {destination}")
