"""The on-disk cache: where it lives, atomic writes, and verified entries.

Layout under the cache root (``~/.cache/circuitlab``, or ``$CIRCUITLAB_CACHE_DIR``):

    sources/<name>/<file>.gguf        verified GGUF files (sha256 from the registry)
    models/<name>/                    a Hugging Face folder: config, safetensors, tokenizer,
                                      and circuitlab-manifest.json with every file's size and sha256
    models/.<name>.lock, sources/<name>/.<file>.gguf.lock
                                      held while an entry is built: a second process waits

An entry is written into a temporary sibling, verified, then renamed into place, so a reader
sees either nothing or a complete entry. An entry whose files disagree with its manifest is
treated as absent and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from circuitlab.errors import CacheError
from circuitlab.files import apply_umask, output_errors
from circuitlab.output_folder import exclusive_lock, staged_folder

__all__ = [
    "CACHE_ENV_VAR",
    "MANIFEST_NAME",
    "atomic_directory",
    "atomic_file",
    "cache_root",
    "entry_lock",
    "file_sha256",
    "read_verified_manifest",
    "write_manifest",
]

CACHE_ENV_VAR = "CIRCUITLAB_CACHE_DIR"
"""Environment variable that moves the cache root."""
MANIFEST_NAME = "circuitlab-manifest.json"
"""File in each cache entry recording every other file's size and sha256 (`write_manifest`)."""
_HASH_BLOCK = 1 << 24


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``cache_dir``, ``$CIRCUITLAB_CACHE_DIR``, or ``~/.cache/circuitlab``.

    Args:
        cache_dir: an explicit cache root (default: the environment variable, then the home
            folder's).
    """
    if cache_dir is not None:
        root = Path(cache_dir)
    elif os.environ.get(CACHE_ENV_VAR):
        root = Path(os.environ[CACHE_ENV_VAR])
    else:
        root = Path.home() / ".cache" / "circuitlab"
    return root.expanduser()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 16 MiB blocks.

    Args:
        path: the file.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _make_parent(path: Path) -> None:
    """Create ``path``'s folder; an `OutputPathError` naming the folder if that fails."""
    with output_errors(path.parent, "folder"):
        path.parent.mkdir(parents=True, exist_ok=True)


def _make_cache_folder(path: Path) -> None:
    """Create the cache folder of entry ``path``; a `CacheError` with the fix if that fails."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CacheError(
            f"Cannot create the cache folder {path.parent} ({error.strerror}). Pass another "
            f"cache_dir= or set ${CACHE_ENV_VAR} to a writable folder."
        ) from error


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    On an exception the temporary file is removed and ``target`` is left as it was. The file
    gets the user's umask (not ``mkstemp``'s private 0600); an OS error while creating or
    renaming it is an `OutputPathError` naming ``target``.

    Args:
        target: the file to write.
    """
    target = Path(target)
    _make_parent(target)
    with output_errors(target, "file"):
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".partial", dir=target.parent
        )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with output_errors(target, "file"):
            if tmp.exists():
                apply_umask(tmp)
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``target``; move it onto ``target`` on success.

    An existing ``target`` (a stale or corrupt entry) is replaced. If another process put a
    complete entry in place first, that one is kept and the temporary folder discarded.
    Temporary folders of ``target`` that a killed build left are removed first (`staged_folder`
    removes only those no live process owns).

    Args:
        target: the cache entry's folder.
    """
    _make_cache_folder(target)
    with staged_folder(
        target, keep_existing=lambda entry: read_verified_manifest(entry) is not None
    ) as tmp:
        yield tmp


@contextlib.contextmanager
def entry_lock(target: Path) -> Iterator[None]:
    """Hold the lock of cache entry ``target``: a second process building it waits here.

    The lock is the file ``.<name>.lock`` next to the entry; it dies with its holder, so a
    killed build never blocks the next one.

    Args:
        target: the cache entry (a file or folder) being built.
    """
    _make_cache_folder(target)
    lock = target.parent / f".{target.name}.lock"
    try:
        lock.touch()
    except OSError as error:
        raise CacheError(
            f"Cannot create the lock file {lock} ({error.strerror or error}). Pass another "
            f"cache_dir= or set ${CACHE_ENV_VAR} to a writable folder."
        ) from error
    with exclusive_lock(
        lock,
        waiting_message=f"Another process is writing the cache entry {target}; waiting for it "
        f"to finish, then using its result (lock file {lock}).",
    ):
        yield


def write_manifest(folder: Path, metadata: dict[str, object]) -> None:
    """Record size and sha256 of every file in ``folder`` (written last, atomically).

    Args:
        folder: the entry's folder.
        metadata: further keys of the manifest (e.g. the source and the converter's version).
    """
    files = {
        path.name: {"size": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name != MANIFEST_NAME
    }
    with atomic_file(folder / MANIFEST_NAME) as tmp:
        tmp.write_text(json.dumps({"files": files, **metadata}, indent=2, sort_keys=True))


def read_verified_manifest(folder: Path, *, check_hashes: bool = True) -> dict[str, object] | None:
    """The manifest of a complete, intact entry, or ``None`` if anything is missing or differs.

    Args:
        folder: the entry's folder.
        check_hashes: also compare every file's sha256 (sizes are always compared).
    """
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
        files = manifest["files"]
        for name, facts in files.items():
            path = folder / name
            if path.stat().st_size != facts["size"]:
                return None
            if check_hashes and file_sha256(path) != facts["sha256"]:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return manifest
