"""The on-disk cache: where it lives, atomic writes, and verified entries.

Layout under the cache root (``~/.cache/circuitlab``, or ``$CIRCUITLAB_CACHE_DIR``):

    sources/<name>/<file>.gguf        verified GGUF files (sha256 from the registry)
    models/<name>/                    a Hugging Face folder: config, safetensors, tokenizer,
                                      and circuitlab-manifest.json with every file's size and sha256

An entry is written into a temporary sibling, verified, then renamed into place, so a reader
sees either nothing or a complete entry. An entry whose files disagree with its manifest is
treated as absent and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from circuitlab.errors import CacheError

__all__ = [
    "CACHE_ENV_VAR",
    "MANIFEST_NAME",
    "atomic_directory",
    "atomic_file",
    "cache_root",
    "file_sha256",
    "read_verified_manifest",
    "write_manifest",
]

CACHE_ENV_VAR = "CIRCUITLAB_CACHE_DIR"
"""Environment variable that moves the cache root."""
MANIFEST_NAME = "circuitlab-manifest.json"
_HASH_BLOCK = 1 << 24
_STALE_SECONDS = 6 * 3600


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``cache_dir``, ``$CIRCUITLAB_CACHE_DIR``, or ``~/.cache/circuitlab``."""
    if cache_dir is not None:
        root = Path(cache_dir)
    elif os.environ.get(CACHE_ENV_VAR):
        root = Path(os.environ[CACHE_ENV_VAR])
    else:
        root = Path.home() / ".cache" / "circuitlab"
    return root.expanduser()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 16 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _make_parent(path: Path) -> None:
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

    On an exception the temporary file is removed and ``target`` is left as it was.
    """
    _make_parent(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``target``; move it onto ``target`` on success.

    An existing ``target`` (a stale or corrupt entry) is replaced. If another process put a
    complete entry in place first, that one is kept and the temporary folder discarded.
    """
    _make_parent(target)
    _remove_stale_partials(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            if read_verified_manifest(target) is not None:
                return
            trash = Path(
                tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".stale", dir=target.parent)
            )
            os.replace(target, trash / target.name)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale_partials(target: Path) -> None:
    """Delete temporary folders that a killed run left next to ``target`` (older than 6 h)."""
    cutoff = time.time() - _STALE_SECONDS
    for leftover in target.parent.glob(f".{target.name}.*.partial"):
        with contextlib.suppress(OSError):
            if leftover.is_dir() and leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)


def write_manifest(folder: Path, metadata: dict[str, object]) -> None:
    """Record size and sha256 of every file in ``folder`` (written last, atomically)."""
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
