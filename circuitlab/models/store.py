"""Build and reuse the safetensors cache entry of a registry model."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from circuitlab.errors import CacheError
from circuitlab.models.cache import (
    atomic_directory,
    cache_root,
    entry_lock,
    read_verified_manifest,
    write_manifest,
)
from circuitlab.models.registry import ModelSpec
from circuitlab.models.sources import fetch_gguf

__all__ = ["cached_model_dir", "ensure_cached_model", "is_cached", "load_cached_model"]

T = TypeVar("T")

logger = logging.getLogger(__name__)
_FORMAT_VERSION = 1


def cached_model_dir(spec: ModelSpec, cache_dir: str | Path | None = None) -> Path:
    """Folder of the safetensors entry of ``spec`` (it may not exist yet).

    Args:
        spec: the registry entry.
        cache_dir: cache root (default ``$CIRCUITLAB_CACHE_DIR`` or ``~/.cache/circuitlab``).
    """
    return cache_root(cache_dir) / "models" / spec.name


def is_cached(spec: ModelSpec, cache_dir: str | Path | None = None) -> bool:
    """Whether a complete entry exists (sizes checked; hashes are checked on load).

    Args:
        spec: the registry entry.
        cache_dir: cache root (default ``$CIRCUITLAB_CACHE_DIR`` or ``~/.cache/circuitlab``).
    """
    return read_verified_manifest(cached_model_dir(spec, cache_dir), check_hashes=False) is not None


def ensure_cached_model(
    spec: ModelSpec, cache_dir: str | Path | None = None, *, progress: bool = False
) -> Path:
    """Return a verified Hugging Face folder for ``spec``, building it from the GGUF if needed.

    The first call dequantizes the GGUF with ``transformers`` (~20-60 s) and writes float32
    safetensors plus the tokenizer atomically; later calls only verify the entry (sizes and
    sha256 of every file). A corrupt or partial entry is rebuilt, never used. Processes that
    need the same missing entry build it once: the others wait for the first (a lock per
    entry) and then use its result.

    Args:
        spec: the registry entry.
        cache_dir: cache root (default ``$CIRCUITLAB_CACHE_DIR`` or ``~/.cache/circuitlab``).
        progress: show a progress bar over the build stages.
    """
    folder = cached_model_dir(spec, cache_dir)
    if read_verified_manifest(folder) is not None:
        return folder
    with entry_lock(folder):  # another process building this entry: wait, then reuse it
        if read_verified_manifest(folder) is not None:
            return folder
        _build_entry(spec, folder, cache_dir, progress=progress)
    return folder


def _build_entry(
    spec: ModelSpec, folder: Path, cache_dir: str | Path | None, *, progress: bool
) -> None:
    """Convert the GGUF of ``spec`` into the verified entry ``folder`` (atomically)."""
    if folder.exists():
        logger.warning("Cache entry %s is incomplete or corrupt; rebuilding it.", folder)
    stages = tqdm(total=4, desc=f"building {spec.name}", unit="stage", disable=not progress)
    with stages:
        stages.set_postfix_str("fetching GGUF")
        gguf = fetch_gguf(spec, cache_dir)
        stages.update()
        with atomic_directory(folder) as tmp:
            stages.set_postfix_str("dequantizing")
            _convert_gguf(spec, gguf, tmp)
            stages.update()
            stages.set_postfix_str("hashing")
            write_manifest(
                tmp,
                {"name": spec.name, "gguf_sha256": spec.gguf_sha256, "format": _FORMAT_VERSION},
            )
            stages.update()
            stages.set_postfix_str("verifying")
            if read_verified_manifest(tmp) is None:
                raise CacheError(
                    f"The new cache entry for {spec.name!r} failed verification before it was "
                    f"moved into place (files differ from what was written). Check free disk "
                    f"space in {folder.parent} and retry."
                )
            stages.update()


def load_cached_model(
    spec: ModelSpec,
    loader: Callable[[Path], T],
    cache_dir: str | Path | None = None,
    *,
    progress: bool = False,
) -> T:
    """Run ``loader`` on the verified cache folder of ``spec`` and return its result.

    When a complete entry exists, its sha256 check runs in a second thread while ``loader``
    reads it (hashing releases the GIL), so verification adds little to the load time. If the
    check fails, whatever was loaded is dropped, the entry is rebuilt, and ``loader`` runs
    again: a corrupt entry is never returned.

    Args:
        spec: the registry entry.
        loader: reads a Hugging Face folder, e.g. ``AutoModelForCausalLM.from_pretrained``.
        cache_dir: cache root (default ``$CIRCUITLAB_CACHE_DIR`` or ``~/.cache/circuitlab``).
        progress: show a progress bar over the build stages (if the entry is built).
    """
    folder = cached_model_dir(spec, cache_dir)
    if read_verified_manifest(folder, check_hashes=False) is not None:
        with ThreadPoolExecutor(max_workers=1) as pool:
            verification = pool.submit(read_verified_manifest, folder)
            try:
                loaded: T | None = loader(folder)
                failure: Exception | None = None
            except Exception as error:  # a corrupt file may fail to parse
                loaded, failure = None, error
            intact = verification.result() is not None
        if intact:
            if failure is not None:
                raise failure
            return loaded  # type: ignore[return-value]
        del loaded
    return loader(ensure_cached_model(spec, cache_dir, progress=progress))


def _convert_gguf(spec: ModelSpec, gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` into a clean Hugging Face folder ``out`` (float32 safetensors)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, attn_implementation="eager"
    )
    # The weights are already dequantized float32; drop the GGUF quantizer so
    # save_pretrained accepts them, and record the class (GGUF loads leave it empty).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.architectures = [spec.architecture]
    model.config.name_or_path = spec.name
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for weights in out.glob("*.safetensors"):
        with safe_open(str(weights), framework="pt") as handle:
            if not list(handle.keys()):
                raise CacheError(f"Converting {gguf.name} wrote an empty weights file {weights}.")
