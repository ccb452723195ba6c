"""``circuitlab.load``: a name, a folder or a hub id in, a `ModelHandle` out."""

from __future__ import annotations

import json
import os
import reprlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from circuitlab import hf_compat
from circuitlab.architecture import architecture_class, check_supported
from circuitlab.errors import (
    CircuitlabError,
    DeviceUnavailableError,
    InputError,
    ModelNotFoundError,
    NotAModelError,
    OfflineError,
    UnsupportedArchitectureError,
)
from circuitlab.model import ModelHandle
from circuitlab.models.registry import (
    DEFAULT_MODEL,
    KNOWN_MODELS,
    model_name_hint,
    unknown_model_message,
)
from circuitlab.models.store import cached_model_dir, load_cached_model

__all__ = ["DEVICE_MAP_STRATEGIES", "load", "resolve_device", "resolve_device_map", "resolve_dtype"]

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


DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
"""The placement strategies of Hugging Face's ``device_map`` (accelerate fills the devices)."""

DeviceMap = str | dict[str, int | str]
"""A Hugging Face ``device_map``: a strategy, one device, or module name → device."""


def _map_device(value: object, where: str) -> int | str:
    """One device of a ``device_map``: a CUDA index, ``"cpu"``, ``"cuda:1"``, ``"mps"``,
    ``"disk"``, checked to exist here."""
    if isinstance(value, int) and not isinstance(value, bool):
        resolve_device(f"cuda:{value}")
        return value
    if isinstance(value, str) and value == "disk":
        return value
    if isinstance(value, str) and value.strip() and value != "meta":
        return str(resolve_device(value))
    raise InputError(
        f"{where} is {value!r}; a device_map places modules on a CUDA index (0), 'cpu', "
        f"'cuda:1', 'mps' or 'disk' ('meta' holds no weights)."
    )


def resolve_device_map(device_map: object) -> DeviceMap:
    """Check a Hugging Face ``device_map``: a strategy (`DEVICE_MAP_STRATEGIES`), one device
    (``"cpu"``, ``"cuda:0"``), or a dict of module names (``"model.layers.3"``, ``""`` for the
    whole model) to devices; every device must exist on this machine."""
    if isinstance(device_map, str):
        if device_map in DEVICE_MAP_STRATEGIES:
            return device_map
        try:
            return _map_device(device_map, "device_map")
        except InputError:
            raise InputError(
                f"Unknown device_map {device_map!r}. Use one of "
                f"{', '.join(map(repr, DEVICE_MAP_STRATEGIES))}, a device ('cpu', 'cuda:1'), "
                f"or a dict of module names to devices, e.g. {{'': 'cpu'}}."
            ) from None
    if isinstance(device_map, dict) and device_map:
        checked: dict[str, int | str] = {}
        for module, value in device_map.items():
            if not isinstance(module, str):
                raise InputError(
                    f"device_map keys are module names such as 'model.layers.3' ('' for the "
                    f"whole model), got {module!r}."
                )
            checked[module] = _map_device(value, f"device_map[{module!r}]")
        return checked
    raise InputError(
        f"device_map must be a strategy ({', '.join(map(repr, DEVICE_MAP_STRATEGIES))}), a "
        f"device, or a non-empty dict of module names to devices; got {device_map!r}."
    )


def _launched_cuda_device(device: torch.device) -> torch.device:
    """``cuda`` without an index means this process's GPU (``$LOCAL_RANK``) under torchrun."""
    from circuitlab import distributed

    if device.type == "cuda" and device.index is None and distributed.launched():
        return resolve_device(f"cuda:{int(os.environ['LOCAL_RANK'])}")
    return device


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
    device: str | torch.device | None = None,
    device_map: DeviceMap | None = None,
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
        device: ``"cpu"`` (the default), ``"cuda"``, ``"cuda:1"``, ``"mps"``. Under
            ``torchrun``, ``"cuda"`` is this process's GPU (``cuda:$LOCAL_RANK``).
        device_map: spread the weights over several devices instead (for a model larger
            than one GPU): passed to Hugging Face's ``from_pretrained`` (needs
            ``accelerate``): ``"auto"``, ``"balanced"``, ``"balanced_low_0"``,
            ``"sequential"``, one device, or a dict of module names to devices
            (``{"model.embed_tokens": 0, "model.layers.0": 0, ..., "lm_head": 1}``).
            Not with ``device``. See ``model.device_map`` for where each module went.
        dtype: weight dtype; ``torch.float32`` by default, ``torch.bfloat16`` for GPUs.
        cache_dir: cache root for registry models (default ``$CIRCUITLAB_CACHE_DIR`` or
            ``~/.cache/circuitlab``).
        prepend_bos: BOS policy: ``None`` keeps the tokenizer's own special tokens (as plain
            ``transformers`` does), ``True`` always starts prompts with BOS, ``False`` never.
        trust_remote_code: let ``transformers`` run code shipped with a hub model (off).
        progress: show a progress bar while a registry model's cache entry is built.

    Returns:
        A `ModelHandle`.

    Raises:
        InputError: an empty name, or one that is neither a string nor a path; a bad device,
            device_map or dtype; both device and device_map.
        ModelNotFoundError: a name that is no registry name, existing path or hub id.
        NotAModelError: a folder transformers cannot use (the message names the file: invalid
            JSON, no or truncated safetensors weights, only pickled weights, no tokenizer,
            weights that do not fit the config).
        OfflineError: a hub id without the network.

    Example:
        >>> model = circuitlab.load()
        >>> model.n_layers, model.n_heads, model.n_kv_heads
        (30, 9, 3)
    """
    name = _checked_name(name)
    if device is not None and device_map is not None:
        raise InputError(
            f"Pass device ({device!r}) or device_map ({device_map!r}), not both: device_map "
            f"places every module itself."
        )
    torch_device = _launched_cuda_device(resolve_device("cpu" if device is None else device))
    placement = None if device_map is None else resolve_device_map(device_map)
    torch_dtype = resolve_dtype(dtype)
    options = {"trust_remote_code": trust_remote_code}
    if isinstance(name, str) and name in KNOWN_MODELS:
        spec = KNOWN_MODELS[name]
        model, tokenizer = load_cached_model(
            spec,
            lambda folder: _load_folder(folder, torch_dtype, options, placement),
            cache_dir,
            progress=progress,
        )
        source = f"registry ({cached_model_dir(spec, cache_dir)})"
        label = name
    elif (path := _existing_path(name)) is not None:
        folder = path.resolve()
        model, tokenizer = _load_folder(folder, torch_dtype, options, placement)
        source = f"local folder ({folder})"
        label = folder.name
    elif isinstance(name, str) and _looks_like_hub_id(name):
        model, tokenizer = _load_hub(name, torch_dtype, options, placement)
        source = "hub"
        label = name
    else:
        raise ModelNotFoundError(unknown_model_message(str(name)))
    if placement is None:
        model = model.to(torch_device)  # a dispatched model stays where device_map put it
    return ModelHandle(model, tokenizer, name=label, source=source, prepend_bos=prepend_bos)


def _checked_name(name: object) -> str | Path:
    """``name`` as a non-blank string or a `Path`; `DEFAULT_MODEL` for None."""
    if name is None:
        return DEFAULT_MODEL
    if isinstance(name, os.PathLike):
        text = os.fspath(name)
        if isinstance(text, str):
            return Path(text)
    elif isinstance(name, str):
        if not name.strip():
            raise InputError(f"The model name is empty ({name!r}). {model_name_hint()}")
        return name
    raise InputError(
        f"The model name must be a string or a path, not {type(name).__name__} "
        f"({reprlib.repr(name)}). {model_name_hint()}"
    )


def _existing_path(name: str | Path) -> Path | None:
    """``name`` as an existing path (``~`` expanded), or None (also for impossible paths)."""
    try:
        path = Path(name).expanduser()
        return path if path.exists() else None
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a name too long, an unknown ~user
        return None


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~"))


_SAFE_WEIGHTS = "model.safetensors"
_SAFE_WEIGHTS_INDEX = "model.safetensors.index.json"
_JSON_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.json",
    "vocab.json",
    _SAFE_WEIGHTS_INDEX,
)
"""The JSON files transformers reads from a model folder; each must hold a JSON object."""
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt")
"""Files any of which lets transformers build a tokenizer."""
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_LARGE_JSON = 1 << 20
"""JSON files larger than this (a tokenizer.json) are parsed up front only after a failed load:
the loader parses them anyway."""
_RESAVE = (
    "Copy the file again from the original model, or write the folder again with "
    "model.save_pretrained(folder) and tokenizer.save_pretrained(folder)."
)


def _load_folder(
    folder: Path, dtype: torch.dtype, options: dict[str, Any], placement: DeviceMap | None = None
) -> tuple[Any, Any]:
    """Load a local folder; whatever is wrong with it is a `NotAModelError` naming the file."""
    documents = _check_documents(folder, thorough=False)
    try:
        return _from_pretrained(
            str(folder),
            dtype,
            {**options, "local_files_only": True},
            check_files=lambda: _check_files(folder, documents),
            placement=placement,
        )
    except (CircuitlabError, MemoryError):
        raise
    except Exception as error:  # transformers, tokenizers, safetensors, json, OS errors
        _check_files(folder, _check_documents(folder, thorough=True))  # names the broken file
        raise NotAModelError(
            f"{folder} cannot be loaded as a Hugging Face model ({type(error).__name__}: "
            f"{_first_line(error)}). {_RESAVE}"
        ) from error


def _check_documents(folder: Path, *, thorough: bool) -> dict[str, dict[str, Any]]:
    """The JSON files transformers reads from ``folder``, each checked to be a JSON object.

    config.json must exist. Files larger than `_LARGE_JSON` are read only if ``thorough``.

    Raises:
        NotAModelError: naming the first file that is missing, unreadable or not an object.
    """
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
    return {
        name: _read_json_object(folder / name)
        for name in _JSON_FILES
        if (folder / name).exists()
        and (thorough or name == "config.json" or _size(folder / name) <= _LARGE_JSON)
    }


def _check_files(folder: Path, documents: dict[str, dict[str, Any]]) -> None:
    """Check that ``folder`` has intact safetensors weights (never pickles) and a tokenizer.

    Raises:
        NotAModelError: naming the folder and the file that is missing, truncated or unsafe.
    """
    for shard in _weight_files(folder, documents.get(_SAFE_WEIGHTS_INDEX)):
        _check_safetensors(shard)
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise NotAModelError(
            f"{folder} has no tokenizer files (one of {', '.join(_TOKENIZER_FILES)}). Save the "
            f"model's tokenizer into it: tokenizer.save_pretrained(folder)."
        )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; a `NotAModelError` naming the file if it is not one."""
    try:
        document = json.loads(path.read_bytes())
    except OSError as error:
        problem = f"cannot be read ({error.strerror or error})"
    except UnicodeDecodeError as error:
        problem = f"is not UTF-8 text (byte {error.start} cannot be decoded)"
    except json.JSONDecodeError as error:
        problem = (
            f"is not valid JSON ({error.msg}: line {error.lineno}, column {error.colno}; "
            f"the file may be truncated)"
        )
    except ValueError as error:  # e.g. a UTF-16/32 text that is not valid either
        problem = f"is not valid JSON ({_first_line(error)})"
    else:
        if isinstance(document, dict):
            return document
        problem = f"holds a JSON {type(document).__name__}, not an object"
    raise NotAModelError(f"{path} {problem}. {_RESAVE}")


def _weight_files(folder: Path, index: dict[str, Any] | None) -> list[Path]:
    """The safetensors files transformers would read from ``folder``; an error if there are none.

    Only safetensors are loaded: pickled weights (``pytorch_model.bin``) can run code.
    """
    if index is not None:
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise NotAModelError(
                f'{folder / _SAFE_WEIGHTS_INDEX} has no "weight_map" of tensor names to '
                f"files. {_RESAVE}"
            )
        shards = [folder / str(name) for name in sorted(set(weight_map.values()))]
        missing = [shard.name for shard in shards if not shard.is_file()]
        if missing:
            raise NotAModelError(
                f"{folder} is missing weight files listed in {_SAFE_WEIGHTS_INDEX}: "
                f"{', '.join(missing)}. Copy the whole folder again."
            )
        return shards
    if (folder / _SAFE_WEIGHTS).is_file():
        return [folder / _SAFE_WEIGHTS]
    try:
        pickles = sorted(path.name for path in folder.iterdir() if path.suffix in _PICKLE_SUFFIXES)
    except OSError:  # an unlistable folder: say what is missing
        pickles = []
    if pickles:
        raise NotAModelError(
            f"{folder} has no safetensors weights ({_SAFE_WEIGHTS}), only pickled PyTorch "
            f"weights ({', '.join(pickles)}), which circuitlab never loads: unpickling can run "
            f"code. Convert them once, in an environment you trust: "
            f"AutoModelForCausalLM.from_pretrained(folder).save_pretrained(folder) writes "
            f"{_SAFE_WEIGHTS}; or download the model's safetensors release."
        )
    raise NotAModelError(
        f"{folder} has no weights: it needs {_SAFE_WEIGHTS} (or {_SAFE_WEIGHTS_INDEX} and its "
        f"shards), as written by model.save_pretrained(folder)."
    )


def _check_safetensors(path: Path) -> None:
    """Read the header of a safetensors file: a truncated or corrupt file fails here."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as error:  # SafetensorError, OSError: not a complete safetensors file
        raise NotAModelError(
            f"{path} is not a readable safetensors file ({_first_line(error)}): it is truncated "
            f"or corrupt. {_RESAVE}"
        ) from None


def _hub_offline() -> bool:
    """Whether the user asked for offline mode (read at call time, not import time)."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return flag in ("1", "true", "yes", "on") or bool(constants.HF_HUB_OFFLINE)


def _load_hub(
    name: str, dtype: torch.dtype, options: dict[str, Any], placement: DeviceMap | None = None
) -> tuple[Any, Any]:
    if _hub_offline():
        options = {**options, "local_files_only": True}
    try:
        return _from_pretrained(name, dtype, options, placement=placement)
    except (CircuitlabError, MemoryError):
        raise
    except OSError as error:
        raise OfflineError(
            f"Could not load {name!r} from the Hugging Face hub ({_first_line(error)}). With no "
            f"network, download it on a connected machine (e.g. `hf download {name} --local-dir "
            f"DIR`) and load the folder: circuitlab.load('DIR'). Offline, the registry models "
            f"{', '.join(KNOWN_MODELS)} work without the hub."
        ) from None
    except Exception as error:  # a file of the repository that transformers cannot read
        raise NotAModelError(
            f"{name!r} on the Hugging Face hub cannot be loaded ({type(error).__name__}: "
            f"{_first_line(error)}). circuitlab needs config.json, model.safetensors and "
            f"tokenizer files; download it (`hf download {name} --local-dir DIR`) and load the "
            f"folder to see which file is the problem."
        ) from error


def _from_pretrained(
    source: str,
    dtype: torch.dtype,
    options: dict[str, Any],
    *,
    check_files: Callable[[], None] | None = None,
    placement: DeviceMap | None = None,
) -> tuple[Any, Any]:
    """Model (safetensors only: no pickle is ever loaded) and tokenizer of ``source``.

    ``check_files`` runs once the config names a supported architecture, before the weights
    are read; ``placement`` is the model's ``device_map`` (`hf_compat.from_pretrained_placed`).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(source, **options)
    except ValueError as error:
        raise UnsupportedArchitectureError(
            f"transformers cannot read the config of {source} ({_first_line(error)}). "
            f"circuitlab supports Llama, Mistral, Qwen2, Qwen3, Gemma 3 and GPT-2 models."
        ) from None
    check_supported(architecture_class(config), model_type=getattr(config, "model_type", None))
    if check_files is not None:
        check_files()
    model, loading_info = hf_compat.from_pretrained_placed(
        AutoModelForCausalLM,
        source,
        placement,
        config=config,
        dtype=dtype,
        attn_implementation="eager",
        use_safetensors=True,
        ignore_mismatched_sizes=True,  # reported below, with the tensors' names
        output_loading_info=True,
        **options,
    )
    _check_weights_fit(source, loading_info)
    tokenizer = AutoTokenizer.from_pretrained(source, **options)
    return model, tokenizer


def _check_weights_fit(source: str, loading_info: dict[str, Any]) -> None:
    """Refuse a model some of whose weights transformers had to initialise at random."""
    missing = sorted(loading_info.get("missing_keys") or ())
    mismatched = sorted(
        (
            item if isinstance(item, tuple) else (item,)
            for item in loading_info.get("mismatched_keys") or ()
        ),
        key=str,
    )
    if not missing and not mismatched:
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing ({_some(missing)})")
    if mismatched:
        shapes = [
            f"{item[0]}: {tuple(item[1])} in the weights, {tuple(item[2])} by the config"
            if len(item) == 3
            else str(item[0])
            for item in mismatched
        ]
        problems.append(f"{len(mismatched)} of another shape ({_some(shapes, '; ')})")
    raise NotAModelError(
        f"The weights of {source} do not fit its config.json: {' and '.join(problems)}; "
        f"those would be random. The config and the weights must come from the same model: "
        f"copy both again, or write the folder with model.save_pretrained(folder)."
    )


def _some(items: list[str], separator: str = ", ", shown: int = 3) -> str:
    """The first ``shown`` items, and "..." if there are more."""
    return separator.join(items[:shown]) + (f"{separator}..." if len(items) > shown else "")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
