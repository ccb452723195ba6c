"""Execute a tutorial cell by cell and keep what it printed and drew, for its docs page.

A tutorial is a script in ``tutorials/`` that takes an output folder as its first argument.
Cells are separated by lines that are exactly ``# %%``. Each cell runs in one shared namespace,
as ``__main__``, with ``sys.argv = [script, "out"]`` and the working directory set to a scratch
folder, so the paths it prints are short and the same on every machine. For each cell the
record keeps its source, what it printed to standard output, and the files it wrote into
``out/``: figures (PNG, SVG, JPEG, GIF) and HTML views are copied next to the record, anything
else (exported checkpoints, JSON) is only named.

Records live in ``.cache/docs-tutorials/<tutorial>/record.json`` at the repository root, keyed
by a hash of the tutorial, of every file of the ``circuitlab`` package that will be imported,
of this runner and of the versions of the libraries that shape the numbers. The test suite
(``tests/test_tutorials.py``) writes them; the docs build (``docs/hooks/tutorials.py``) reads a
record whose key matches and runs the tutorial itself otherwise. To refresh records by hand:

    python docs/hooks/run_tutorial.py tutorials/01_load_and_predict.py [...]

This module imports nothing from circuitlab, so that hashing a record never loads a model.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
"""The repository root (this file is ``docs/hooks/run_tutorial.py``)."""

TUTORIALS = REPO / "tutorials"
CACHE = REPO / ".cache" / "docs-tutorials"
CELL_MARKER = "# %%"
EMBEDDED_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".gif", ".html")
VERSIONED_LIBRARIES = ("torch", "transformers", "transformer-lens", "peft", "numpy")
RECORD_FORMAT = 1


@dataclass
class Cell:
    """One executed cell of a tutorial.

    Attributes:
        source: The cell's code exactly as in the script (its leading comment included).
        first_line: The line of the script the cell starts on (1-based).
        output: What the cell printed to standard output.
        files: Figures and HTML views the cell wrote, copied next to the record (names).
        other_files: Other files or folders the cell wrote into the output folder (names).
        seconds: Wall time of the cell.
    """

    source: str
    first_line: int
    output: str = ""
    files: list[str] = field(default_factory=list)
    other_files: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Record:
    """What one execution of a tutorial printed and drew, cell by cell.

    Attributes:
        tutorial: The script's path relative to the repository root.
        key: The hash that says which sources and library versions produced the record.
        docstring: The script's module docstring.
        cells: The executed cells, in order.
        seconds: Wall time of the whole execution.
        versions: Versions of the libraries in `VERSIONED_LIBRARIES`, and of Python.
        format: Version of the record layout.
    """

    tutorial: str
    key: str
    docstring: str
    cells: list[Cell]
    seconds: float
    versions: dict[str, str]
    format: int = RECORD_FORMAT

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """Rebuild a record from its JSON form.

        Args:
            data: The parsed ``record.json``.

        Returns:
            The record.
        """
        cells = [Cell(**cell) for cell in data["cells"]]
        return cls(**{**data, "cells": cells})


def split_cells(source: str) -> tuple[str, list[Cell]]:
    """Split a tutorial's source into its docstring and its cells.

    The module docstring is not part of any cell (the page shows it as the introduction).
    Cells are separated by ``# %%`` lines; blank lines around a cell are dropped.

    Args:
        source: The script's text.

    Returns:
        The docstring (empty if the script has none) and the cells, not yet executed.

    Example:
        >>> doc, cells = split_cells('\"\"\"Doc.\"\"\"\\nx = 1\\n# %%\\nprint(x)\\n')
        >>> doc, [cell.source for cell in cells], [cell.first_line for cell in cells]
        ('Doc.', ['x = 1', 'print(x)'], [2, 4])
    """
    tree = ast.parse(source)
    docstring = ast.get_docstring(tree) or ""
    lines = source.splitlines()
    start = 0
    if docstring:
        start = tree.body[0].end_lineno or 0
    chunks: list[tuple[int, list[str]]] = [(start, [])]
    for number in range(start, len(lines)):
        if lines[number].rstrip() == CELL_MARKER:
            chunks.append((number + 1, []))
        else:
            chunks[-1][1].append(lines[number])
    cells = []
    for offset, chunk in chunks:
        while chunk and not chunk[0].strip():
            chunk.pop(0)
            offset += 1
        while chunk and not chunk[-1].strip():
            chunk.pop()
        if chunk:
            cells.append(Cell(source="\n".join(chunk), first_line=offset + 1))
    return docstring, cells


def _package_files() -> tuple[Path, list[Path]]:
    spec = importlib.util.find_spec("circuitlab")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("circuitlab is not importable here: install it (pip install -e .)")
    root = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )
    return root, files


def _versions() -> dict[str, str]:
    versions = {"python": ".".join(map(str, sys.version_info[:3]))}
    for name in VERSIONED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def tutorial_key(script: Path) -> str:
    """The key a record of ``script`` must carry to be current.

    Args:
        script: Path of the tutorial.

    Returns:
        A SHA-256 hex digest of the tutorial, the circuitlab package files, this runner and
        the library versions.
    """
    digest = hashlib.sha256(f"record format {RECORD_FORMAT}\n".encode())
    digest.update(json.dumps(_versions(), sort_keys=True).encode())
    named = [("tutorial", Path(script)), ("runner", Path(__file__))]
    root, files = _package_files()
    named += [(path.relative_to(root).as_posix(), path) for path in files]
    for name, path in named:
        digest.update(f"\0{name}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def record_folder(script: Path, cache: Path = CACHE) -> Path:
    """The folder that holds the record of ``script`` and its figures.

    Args:
        script: Path of the tutorial.
        cache: Root of the record cache.

    Returns:
        ``cache / <script stem>``.
    """
    return Path(cache) / Path(script).stem


def load_record(
    script: Path, cache: Path = CACHE, *, current_only: bool = True
) -> tuple[Record | None, str]:
    """The stored record of ``script``, if it matches the current sources.

    Args:
        script: Path of the tutorial.
        cache: Root of the record cache.
        current_only: Refuse a record whose key differs from the current one. Pass False only
            right after running the tutorial, when sources that changed during the run would
            otherwise make the fresh record look stale.

    Returns:
        ``(record, "current")`` when the stored key matches, else ``(None, reason)`` with the
        reason ``"missing"`` or ``"stale"`` (made from other sources or library versions).
    """
    path = record_folder(script, cache) / "record.json"
    if not path.is_file():
        return None, "missing"
    try:
        record = Record.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError):
        return None, "stale"
    if record.format != RECORD_FORMAT or (current_only and record.key != tutorial_key(script)):
        return None, "stale"
    return record, "current"


def _snapshot(folder: Path) -> dict[str, tuple[tuple[str, int, int], ...]]:
    """Every top-level entry of ``folder`` with the (path, mtime, size) of the files in it."""
    entries = {}
    for entry in sorted(folder.iterdir()):
        files = [entry] if entry.is_file() else sorted(p for p in entry.rglob("*") if p.is_file())
        entries[entry.name] = tuple(
            (str(p.relative_to(folder)), p.stat().st_mtime_ns, p.stat().st_size) for p in files
        )
    return entries


@contextlib.contextmanager
def _as_script(script: Path, work: Path) -> Iterator[None]:
    old_argv, old_cwd = sys.argv, Path.cwd()
    sys.argv = [str(script), "out"]
    os.chdir(work)
    try:
        yield
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close("all")


def execute(script: Path, work: Path, figures: Path) -> Record:
    """Run a tutorial cell by cell, capturing standard output and the files each cell writes.

    Args:
        script: Path of the tutorial.
        work: An empty scratch folder: the working directory of the run, whose ``out/`` the
            tutorial writes into.
        figures: Folder the figures and HTML views are copied into.

    Returns:
        The record of the run.

    Raises:
        Exception: Whatever the tutorial raises, unchanged (the cells before it ran).
    """
    script = Path(script).resolve()
    docstring, cells = split_cells(script.read_text(encoding="utf-8"))
    out = Path(work) / "out"
    out.mkdir(parents=True, exist_ok=True)
    Path(figures).mkdir(parents=True, exist_ok=True)
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "__file__": str(script),
        "__doc__": docstring,
        "__builtins__": builtins,
    }
    started = time.perf_counter()
    with _as_script(script, Path(work)):
        for cell in cells:
            code = compile("\n" * (cell.first_line - 1) + cell.source, str(script), "exec")
            before = _snapshot(out)
            printed = io.StringIO()
            cell_start = time.perf_counter()
            with contextlib.redirect_stdout(printed):
                exec(code, namespace)  # running the tutorial is the point
            cell.seconds = round(time.perf_counter() - cell_start, 2)
            cell.output = printed.getvalue()
            sys.stdout.write(cell.output)  # still visible to whoever runs the tutorial
            after = _snapshot(out)
            for name, files in after.items():
                if before.get(name) == files:
                    continue
                if (out / name).is_file() and name.lower().endswith(EMBEDDED_SUFFIXES):
                    shutil.copy2(out / name, Path(figures) / name)
                    cell.files.append(name)
                else:
                    cell.other_files.append(name + ("/" if (out / name).is_dir() else ""))
    name = script.relative_to(REPO).as_posix() if script.is_relative_to(REPO) else str(script)
    return Record(
        tutorial=name,
        key="",
        docstring=docstring,
        cells=cells,
        seconds=round(time.perf_counter() - started, 2),
        versions=_versions(),
    )


def run_tutorial(script: Path, cache: Path = CACHE, work: Path | None = None) -> Record:
    """Execute a tutorial and store its record in the cache, replacing any older one.

    The key is computed before the run, so a record is never attributed to sources that
    changed while it ran. Nothing is stored if the tutorial fails.

    Args:
        script: Path of the tutorial.
        cache: Root of the record cache.
        work: Scratch folder for the run (default: a temporary folder, removed afterwards).

    Returns:
        The stored record.
    """
    key = tutorial_key(script)
    folder = record_folder(script, cache)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        with contextlib.ExitStack() as stack:
            if work is None:
                work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            record = execute(script, Path(work), staging)
        record.key = key
        (staging / "record.json").write_text(
            json.dumps(asdict(record), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record


def main(argv: list[str] | None = None) -> int:
    """Refresh the records of the tutorials named on the command line (default: all).

    Args:
        argv: Tutorial paths (default: ``sys.argv[1:]``).

    Returns:
        The exit code, 0.
    """
    names = sys.argv[1:] if argv is None else argv
    scripts = [Path(name) for name in names] or sorted(TUTORIALS.glob("*.py"))
    for script in scripts:
        record = run_tutorial(script)
        print(f"{script}: {len(record.cells)} cells, {record.seconds:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
