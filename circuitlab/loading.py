"""``circuitlab.load``: a name, a folder or a hub id in, a `ModelHandle` out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from circuitlab.architecture import architecture_class, check_supported
from circuitlab.errors import (
    DeviceUnavailableError,
    InputError,
    ModelNotFoundError,
    NotAModelError,
    OfflineError,
    UnsupportedArchitectureError,
)
from circuitlab.model import ModelHandle
from circuitlab.models.registry import DEFAULT_MODEL, KNOWN_MODELS, unknown_model_message
from circuitlab.models.store import cached_model_dir, load_cached_model

__all__ = ["load", "resolve_device", "resolve_dtype"]

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse ``device`` and check that this machine has it."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InputError(
            f"Unknown device {device!r}. Use 'cpu', 'cuda', 'cuda:1' or 'mps'."
        ) from error
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device={str(device)!r} was requested but CUDA is not available here "
                f"(torch {torch.__version__}, torch.cuda.is_available() is False). Use "
                f"device='cpu', or install a CUDA build of torch on a machine with a GPU."
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device={str(device)!r} was requested but only {torch.cuda.device_count()} "
                f"CUDA device(s) exist. Use one of cuda:0 .. cuda:{torch.cuda.device_count() - 1}."
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError(
            f"device={str(device)!r} was requested but MPS is not available here. Use 'cpu'."
        )
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"Unsupported device {device!r}. Use 'cpu', 'cuda' or 'mps'.")
    return parsed


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Parse a dtype given as ``torch.bfloat16`` or ``"bf16"``/``"bfloat16"``/``"float32"``..."""
    if isinstance(dtype, torch.dtype):
        if dtype in (torch.float32, torch.float16, torch.bfloat16):
            return dtype
    elif isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.lower().removeprefix("torch.")]
    raise InputError(
        f"Unsupported dtype {dtype!r}. Use torch.float32 (default), torch.bfloat16 or "
        f"torch.float16 (or the strings 'float32', 'bf16', 'fp16')."
    )


def load(
    name: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
    cache_dir: str | os.PathLike[str] | None = None,
    prepend_bos: bool | None = None,
    trust_remote_code: bool = False,
    progress: bool = False,
) -> ModelHandle:
    """Load a model and boot its TransformerLens bridge.

    Args:
        name: a registry name (``"smollm2-135m-instruct"``, the default, or ``"gemma3-270m"``),
            the path of a local Hugging Face model folder, or a hub id (``"org/model"``,
            needs the network).
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        dtype: weight dtype; ``torch.float32`` by default, ``torch.bfloat16`` for GPUs.
        cache_dir: cache root for registry models (default ``$CIRCUITLAB_CACHE_DIR`` or
            ``~/.cache/circuitlab``).
        prepend_bos: BOS policy: ``None`` keeps the tokenizer's own special tokens (as plain
            ``transformers`` does), ``True`` always starts prompts with BOS, ``False`` never.
        trust_remote_code: let ``transformers`` run code shipped with a hub model (off).
        progress: show a progress bar while a registry model's cache entry is built.

    Returns:
        A `ModelHandle`.

    Example:
        >>> model = circuitlab.load()
        >>> model.n_layers, model.n_heads, model.n_kv_heads
        (30, 9, 3)
    """
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    name = DEFAULT_MODEL if name is None else name
    options = {"trust_remote_code": trust_remote_code}
    if isinstance(name, str) and name in KNOWN_MODELS:
        spec = KNOWN_MODELS[name]
        model, tokenizer = load_cached_model(
            spec,
            lambda folder: _load_folder(folder, torch_dtype, options),
            cache_dir,
            progress=progress,
        )
        source = f"registry ({cached_model_dir(spec, cache_dir)})"
        label = name
    elif Path(name).expanduser().exists():
        folder = Path(name).expanduser().resolve()
        model, tokenizer = _load_folder(folder, torch_dtype, options)
        source = f"local folder ({folder})"
        label = folder.name
    elif isinstance(name, str) and _looks_like_hub_id(name):
        model, tokenizer = _load_hub(name, torch_dtype, options)
        source = "hub"
        label = name
    else:
        raise ModelNotFoundError(unknown_model_message(str(name)))
    model = model.to(torch_device)
    return ModelHandle(model, tokenizer, name=label, source=source, prepend_bos=prepend_bos)


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~"))


def _load_folder(folder: Path, dtype: torch.dtype, options: dict[str, Any]) -> tuple[Any, Any]:
    if not folder.is_dir():
        raise NotAModelError(
            f"{folder} is a file, not a model folder. Pass the folder that holds config.json "
            f"and the weights (as written by save_pretrained)."
        )
    if not (folder / "config.json").is_file():
        raise NotAModelError(
            f"{folder} is not a Hugging Face model folder: it has no config.json. Pass a folder "
            f"written by save_pretrained (config.json, *.safetensors, tokenizer files), or a "
            f"registry name such as {DEFAULT_MODEL!r}."
        )
    return _from_pretrained(str(folder), dtype, {**options, "local_files_only": True})


def _hub_offline() -> bool:
    """Whether the user asked for offline mode (read at call time, not import time)."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return flag in ("1", "true", "yes", "on") or bool(constants.HF_HUB_OFFLINE)


def _load_hub(name: str, dtype: torch.dtype, options: dict[str, Any]) -> tuple[Any, Any]:
    if _hub_offline():
        options = {**options, "local_files_only": True}
    try:
        return _from_pretrained(name, dtype, options)
    except NotAModelError:
        raise
    except OSError as error:
        raise OfflineError(
            f"Could not load {name!r} from the Hugging Face hub ({_first_line(error)}). With no "
            f"network, download it on a connected machine (e.g. `hf download {name} --local-dir "
            f"DIR`) and load the folder: circuitlab.load('DIR'). Offline, the registry models "
            f"{', '.join(KNOWN_MODELS)} work without the hub."
        ) from None


def _from_pretrained(source: str, dtype: torch.dtype, options: dict[str, Any]) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(source, **options)
    except ValueError as error:
        raise UnsupportedArchitectureError(
            f"transformers cannot read the config of {source} ({_first_line(error)}). "
            f"circuitlab supports Llama, Mistral, Qwen2, Qwen3, Gemma 3 and GPT-2 models."
        ) from None
    check_supported(architecture_class(config), model_type=getattr(config, "model_type", None))
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, config=config, dtype=dtype, attn_implementation="eager", **options
        )
        tokenizer = AutoTokenizer.from_pretrained(source, **options)
    except OSError as error:
        if options.get("local_files_only") and Path(source).is_dir():
            raise NotAModelError(
                f"{source} has a config.json but its weights or tokenizer cannot be read "
                f"({_first_line(error)}). It needs *.safetensors weights and tokenizer files, as "
                f"written by model.save_pretrained and tokenizer.save_pretrained."
            ) from None
        raise
    return model, tokenizer


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
