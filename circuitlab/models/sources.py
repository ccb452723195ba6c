"""Obtain the verified GGUF file of a registry model, offline when possible.

Order of search: the cache's ``sources/`` copy; the wheel's package installed in this Python
(found without importing it); otherwise ``python -m pip download --no-deps`` of the pinned
wheels into a temporary folder (their declared dependencies would compile llama.cpp, so they
are never installed). Chunks are concatenated in order and the result checked against the
registry's sha256 before it is renamed into the cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import zipfile
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

from circuitlab.errors import CacheError, OfflineError
from circuitlab.models.cache import atomic_file, cache_root, entry_lock, file_sha256
from circuitlab.models.registry import GgufChunk, ModelSpec

__all__ = ["cached_gguf_path", "fetch_gguf"]

_COPY_BLOCK = 1 << 24


def cached_gguf_path(spec: ModelSpec, cache_dir: str | Path | None = None) -> Path:
    """Where the verified GGUF of ``spec`` lives in the cache (it may not exist yet).

    Args:
        spec: the registry entry.
        cache_dir: cache root (default ``$CIRCUITLAB_CACHE_DIR`` or ``~/.cache/circuitlab``).
    """
    return cache_root(cache_dir) / "sources" / spec.name / spec.gguf_filename


def fetch_gguf(spec: ModelSpec, cache_dir: str | Path | None = None) -> Path:
    """Return the path of the verified GGUF of ``spec``, fetching and assembling it if needed.

    Args:
        spec: the registry entry.
        cache_dir: cache root (default ``$CIRCUITLAB_CACHE_DIR`` or ``~/.cache/circuitlab``).

    Raises:
        OfflineError: the wheels are neither installed nor downloadable.
        CacheError: the assembled file does not match the registry's sha256.
    """
    target = cached_gguf_path(spec, cache_dir)
    if _is_verified(spec, target):
        return target
    with entry_lock(target):  # another process fetching this file: wait, then reuse it
        if not _is_verified(spec, target):
            _assemble(spec, target)
    return target


def _is_verified(spec: ModelSpec, target: Path) -> bool:
    return target.is_file() and file_sha256(target) == spec.gguf_sha256


def _assemble(spec: ModelSpec, target: Path) -> None:
    """Concatenate the chunks of ``spec`` into ``target`` (atomically), checking the sha256."""
    with tempfile.TemporaryDirectory(prefix="circuitlab-wheels-") as download_dir:
        with ExitStack() as stack:
            streams = [
                stack.enter_context(_ChunkStream(chunk, Path(download_dir)))
                for chunk in spec.chunks
            ]
            digest = hashlib.sha256()
            with atomic_file(target) as tmp:
                with tmp.open("wb") as out:
                    for stream in streams:
                        while block := stream.read(_COPY_BLOCK):
                            digest.update(block)
                            out.write(block)
                if digest.hexdigest() != spec.gguf_sha256:
                    raise CacheError(
                        f"The GGUF assembled for {spec.name!r} has sha256 {digest.hexdigest()}, "
                        f"expected {spec.gguf_sha256}. The wheels "
                        f"({', '.join(c.requirement for c in spec.chunks)}) may be damaged: "
                        f"reinstall them or delete {target.parent} and retry."
                    )


def _installed_member(chunk: GgufChunk) -> Path | None:
    """The chunk's file inside an installed copy of its package, found without importing it."""
    try:
        module_spec = importlib.util.find_spec(chunk.module)
    except (ImportError, ValueError):
        return None
    if module_spec is None or not module_spec.submodule_search_locations:
        return None
    package_dir = Path(next(iter(module_spec.submodule_search_locations)))
    candidate = package_dir.parent / chunk.member
    return candidate if candidate.is_file() else None


class _ChunkStream:
    """Context manager opening one chunk: the installed file or a member of a fetched wheel."""

    def __init__(self, chunk: GgufChunk, download_dir: Path) -> None:
        self.chunk = chunk
        self.download_dir = download_dir
        self._stack = ExitStack()

    def __enter__(self) -> BinaryIO:
        installed = _installed_member(self.chunk)
        if installed is not None:
            return self._stack.enter_context(installed.open("rb"))
        wheel = _download_wheel(self.chunk.requirement, self.download_dir)
        archive = self._stack.enter_context(zipfile.ZipFile(wheel))
        try:
            return self._stack.enter_context(archive.open(self.chunk.member))
        except KeyError:
            raise CacheError(
                f"The wheel {wheel.name} has no member {self.chunk.member!r}; the registry entry "
                f"does not match the published package {self.chunk.requirement}."
            ) from None

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()


def _download_wheel(requirement: str, download_dir: Path) -> Path:
    """``pip download --no-deps`` one pinned wheel; return its path."""
    target = download_dir / requirement.replace("==", "-")
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(target),
        requirement,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:
        raise OfflineError(_offline_message(requirement, str(error))) from error
    wheels = sorted(target.glob("*.whl")) if target.is_dir() else []
    if result.returncode != 0 or not wheels:
        detail = _last_error_line(result.stderr) or f"pip exited with code {result.returncode}"
        shutil.rmtree(target, ignore_errors=True)
        raise OfflineError(_offline_message(requirement, detail))
    return wheels[0]


def _last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or [""])[-1]


def _offline_message(requirement: str, detail: str) -> str:
    return (
        f"Could not fetch the model wheel {requirement} from the package registry ({detail}). "
        f"Connect to the package registry and retry, or install it without its dependencies "
        f"(`python -m pip install --no-deps {requirement}`), or load a local Hugging Face "
        f"folder instead with circuitlab.load('/path/to/model')."
    )
