"""Files circuitlab reads and writes: text input, output paths checked before any work,
and the permissions of what it writes.

- `read_text_file` reads a user's text file (task, spec, data, prompts) as UTF-8 and turns a
  missing file, an unreadable one or another encoding into one clear `InputError`.
- `check_output_file` and `check_output_folder` refuse an output path that cannot be written
  (a folder given as a file, a path under a regular file, a read-only or virtual file system)
  *before* a computation runs, by probing the nearest existing folder with a real temporary
  file; `output_errors` turns an OS error met while writing into an `OutputPathError` that
  names the path.
- `apply_umask` gives a file or folder made by `tempfile` (mode 0600 / 0700) the mode any other
  tool would give it under the user's umask, before it is renamed into place.
- `output_file` is where results, JSON files and figures are written: atomically, and under a
  ``torch.distributed`` group by rank 0 only (`circuitlab.distributed.is_writer`).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from circuitlab.errors import InputError, OutputPathError

__all__ = [
    "apply_umask",
    "check_output_file",
    "check_output_folder",
    "output_errors",
    "output_file",
    "read_records",
    "read_text_file",
]


def read_text_file(path: str | os.PathLike[str], what: str, *, encoding: str = "utf-8-sig") -> str:
    """The text of ``path`` (UTF-8, a leading byte-order mark dropped); ``what`` names the
    expected content (``"task file"``) in the errors.

    Args:
        path: the file to read.
        what: what the file holds, for error messages (``"task file"``).
        encoding: the text encoding (default: UTF-8, dropping a leading byte-order mark).
    """
    source = Path(path)
    if not source.exists():
        raise InputError(f"No {what} at {source}: the file does not exist.")
    if source.is_dir():
        raise InputError(f"{source} is a folder; expected a {what} (a file).")
    try:
        return source.read_text(encoding=encoding)
    except UnicodeDecodeError as error:
        raise InputError(
            f"{source} is not UTF-8 text: byte {error.start} (0x{error.object[error.start]:02x}) "
            f"cannot be decoded. Save the {what} as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)."
        ) from None
    except OSError as error:
        raise InputError(f"Cannot read the {what} {source}: {_reason(error)}.") from None


def read_records(source: Path, text: str) -> list[Any]:
    """The rows of a ``.csv`` (header row; dicts of strings), ``.json`` (a list) or JSON-lines
    file whose ``text`` was read with `read_text_file`; a clear error for invalid JSON.

    Args:
        source: the file's path (its suffix chooses the format; it names the file in errors).
        text: the file's content.
    """
    suffix = source.suffix.lower()
    try:
        if suffix == ".csv":
            return list(csv.DictReader(io.StringIO(text)))
        if suffix == ".json":
            data = json.loads(text)
            if not isinstance(data, list):
                raise InputError(f"{source} must hold a JSON list of objects.")
            return data
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise InputError(
            f"{source} is not valid JSON: {error.msg} (line {error.lineno})."
        ) from None


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: Path, *, recursive: bool = False) -> None:
    """Give ``path`` the default mode of a new file (0666) or folder (0777) under the umask;
    with ``recursive``, everything inside a folder too (some writers use private temp files).

    Args:
        path: the file or folder (symbolic links are left alone).
        recursive: also everything inside ``path`` when it is a folder.
    """
    mask = _current_umask()
    paths = [path, *path.rglob("*")] if recursive and path.is_dir() else [path]
    for item in paths:
        if not item.is_symlink():
            os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~mask)


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor."""
    current = path
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _probe_folder(folder: Path, target: Path, what: str) -> None:
    """Refuse ``target`` unless a file can really be created in ``folder``."""
    try:
        fd, name = tempfile.mkstemp(prefix=".circuitlab-probe.", dir=folder)
    except OSError as error:
        raise OutputPathError(
            f"Cannot write the {what} {target}: {folder} is not writable ({_reason(error)}). "
            f"Choose a path in a folder you can write to."
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def _check_parents(target: Path, what: str) -> None:
    """The nearest existing ancestor of ``target`` must be a writable folder."""
    existing = _nearest_existing(target.parent)
    if not existing.is_dir():
        raise OutputPathError(
            f"Cannot write the {what} {target}: {existing} is a file, so nothing can be created "
            f"under it. Choose another path."
        )
    _probe_folder(existing, target, what)


def check_output_file(path: str | os.PathLike[str], what: str = "output file") -> Path:
    """``path`` as a `Path` if a file can be written there (an existing file is replaced).

    Args:
        path: the output file (``~`` is expanded).
        what: what the file holds, for error messages.
    """
    target = Path(path).expanduser()
    if str(path).strip() == "":
        raise InputError(f"The {what} path is empty. Give a file name.")
    if target.is_dir():
        raise OutputPathError(
            f"Cannot write the {what} {target}: it is an existing folder. Give a file name, "
            f"e.g. {target / ('result' + (target.suffix or '.json'))}."
        )
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputPathError(f"Cannot write the {what} {target}: the file is read-only.")
    _check_parents(target, what)
    return target


def check_output_folder(
    path: str | os.PathLike[str],
    what: str = "output folder",
    *,
    must_be_empty: bool = False,
    overwrite_hint: str = "overwrite=True",
) -> Path:
    """``path`` as a `Path` if a folder can be created or written there.

    With ``must_be_empty``, an existing non-empty folder is refused; the error suggests
    ``overwrite_hint`` (the CLI passes its own flag).

    Args:
        path: the output folder (``~`` is expanded).
        what: what the folder holds, for error messages.
        must_be_empty: refuse an existing folder that is not empty.
        overwrite_hint: how to allow replacing a non-empty folder, named in that error.
    """
    target = Path(path).expanduser()
    if str(path).strip() == "":
        raise InputError(f"The {what} path is empty. Give a folder name.")
    if target.exists() and not target.is_dir():
        raise OutputPathError(
            f"Cannot use {target} as the {what}: it is an existing file, not a folder. Give a "
            f"folder path."
        )
    if must_be_empty and target.is_dir() and any(target.iterdir()):
        raise InputError(
            f"The {what} {target} already exists and is not empty. Pass {overwrite_hint} to "
            f"replace it, or choose another folder."
        )
    if target.is_dir():
        _probe_folder(target, target, what)
    else:
        _check_parents(target, what)
    return target


@contextlib.contextmanager
def output_errors(target: Path, what: str = "output") -> Iterator[None]:
    """Turn an OS error raised while writing ``target`` into an `OutputPathError` naming it.

    Args:
        target: the path being written, named in the error.
        what: what is written, for the error message.
    """
    try:
        yield
    except OutputPathError:
        raise
    except OSError as error:
        hint = {
            errno.ENOSPC: " The disk is full: free some space.",
            errno.EACCES: " Choose a path you can write to.",
            errno.EROFS: " The file system is read-only: choose another path.",
            errno.ENOTDIR: " A part of the path is a file, not a folder.",
            errno.EISDIR: " The path is an existing folder: give a file name.",
        }.get(error.errno or 0, "")
        raise OutputPathError(f"Cannot write the {what} {target}: {_reason(error)}.{hint}") from (
            None
        )


@contextlib.contextmanager
def output_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; renamed into place on success.

    The write is atomic (`circuitlab.models.cache.atomic_file`: readers see the old file or
    the new one). Under a ``torch.distributed`` group only rank 0 writes
    (`circuitlab.distributed.is_writer`): the other processes get a scratch path that is
    deleted afterwards, so every process runs the same code and ``path`` is written once.

    Args:
        path: the final path of the file (or folder) written.

    Example:
        >>> with output_file("scores.json") as tmp:
        ...     tmp.write_text("{}")
    """
    from circuitlab import distributed
    from circuitlab.models.cache import atomic_file

    target = Path(path)
    if distributed.is_writer():
        with atomic_file(target) as tmp:
            yield tmp
        return
    with tempfile.TemporaryDirectory(prefix="circuitlab-rank-") as scratch:
        yield Path(scratch) / (target.name or "output")
