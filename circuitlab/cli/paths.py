"""A command's output paths, checked before it runs (and before torch is even imported).

Every output option (files such as ``--json``, ``--plot``, ``--csv``, ``--save``; folders such
as ``--out``, ``--export`` and export's ``OUTPUT``) must name a place that can be written, and
a figure's extension must be one matplotlib writes, so a bad path fails in a second instead of
after the whole computation.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from circuitlab.errors import InputError
from circuitlab.files import check_output_file, check_output_folder

__all__ = ["FIGURE_FORMATS", "OUTPUT_FILES", "OUTPUT_FOLDERS", "check_figure_path", "check_outputs"]

OUTPUT_FILES = {
    "json": "--json file",
    "plot": "--plot figure",
    "csv": "--csv table",
    "save": "--save result file",
    "checkpoint": "--checkpoint file",
    "html": "--html page",
}
"""Options naming a file a command writes (``-`` means standard output for ``--json``)."""

OUTPUT_FOLDERS = {
    "out": ("--out folder", False),
    "output": ("OUTPUT folder", True),
    "export": ("--export folder", True),
    "checkpoint_dir": ("--checkpoint-dir folder", False),
    "adapters": ("--adapters folder", False),
}
"""Options naming a folder a command writes, and whether it must be new or empty (unless
``--overwrite``)."""

FIGURE_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg", "webp", "eps", "ps", "tif", "tiff")
"""Figure file extensions ``--plot`` accepts (formats matplotlib writes without extras)."""


def check_figure_path(path: str) -> None:
    """Refuse a figure path whose extension matplotlib cannot write."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FIGURE_FORMATS:
        raise InputError(
            f"Cannot write a figure as {path!r}: "
            f"{'the name has no extension' if not suffix else f'.{suffix} is not a figure format'}"
            f". Use one of .{', .'.join(FIGURE_FORMATS)} (e.g. heads.png)."
        )


def check_outputs(args: argparse.Namespace) -> None:
    """Check every output path of a parsed command before it runs (see the module docstring)."""
    for dest, what in OUTPUT_FILES.items():
        value = getattr(args, dest, None)
        if value is None or (dest == "json" and value == "-"):
            continue
        check_output_file(value, what)
        if dest == "plot":
            check_figure_path(value)
    for dest, (what, must_be_new) in OUTPUT_FOLDERS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        overwrite = bool(getattr(args, "overwrite", False))
        check_output_folder(
            value, what, must_be_empty=must_be_new and not overwrite, overwrite_hint="--overwrite"
        )
