"""LoRA adapters on chosen layers and modules, trained through the hooked model.

The adapters are injected with ``peft`` into the Hugging Face modules under the bridge, so every
hook point keeps working during and after training. Saved adapters use plain Hugging Face
module names (the bridge's ``._original_component`` wrappers are removed), so they reload with
``peft.PeftModel.from_pretrained`` on a plain ``transformers`` model; `export_hf` merges them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file
from torch import Tensor

from circuitlab.errors import InputError
from circuitlab.hf_compat import peft_adapter_state_dict
from circuitlab.model import ModelHandle
from circuitlab.output_folder import check_writable_folder, staged_folder

__all__ = [
    "GATE_ATTRIBUTE",
    "LoraAdapter",
    "adapted",
    "add_lora",
    "check_lora_layers",
    "load_lora",
    "lora_config",
    "lora_delta",
    "lora_modules",
]

_MODULES: dict[str, tuple[str, ...]] = {
    "gpt2": ("c_fc", "c_proj"),  # MLP only: the bridge replaces GPT-2's fused c_attn
}
_DECODER_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_WRAPPER = "._original_component"
_ADAPTER = "default"  # the adapter name inject_adapter_in_model uses
_MODULE_NAME = re.compile(r"\.(?:layers|h)\.(\d+)\.(?:.*\.)?(\w+)\._original_component$")
GATE_ATTRIBUTE = "circuitlab_gate"
"""Attribute of a peft LoRA layer holding a gate: a function returning the scalar γ that scales
its update (W = W₀ + γ·ΔW). `lora_delta` applies it, so export bakes the gated weight; the
forward pass applies it through a hook on ``lora_B`` (`circuitlab.ila.LoraGates`)."""


@dataclass
class LoraAdapter:
    """A LoRA adapter living in a model handle's weights.

    Attributes:
        model: the handle whose HF modules carry the adapter.
        config: the ``peft`` config, in plain Hugging Face module names.
    """

    model: ModelHandle
    config: LoraConfig
    _grad_before: dict[str, bool] = field(default_factory=dict, repr=False)

    def parameters(self) -> list[torch.nn.Parameter]:
        """The trainable adapter parameters (everything else is frozen)."""
        return [p for name, p in self.model.hf_model.named_parameters() if "lora_" in name]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Adapter tensors under the names ``peft.PeftModel`` saves and loads."""
        raw = peft_adapter_state_dict(self.model.hf_model)
        return {
            "base_model.model." + key.replace(_WRAPPER, ""): value.detach().cpu().contiguous()
            for key, value in raw.items()
        }

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (atomically).

        Args:
            path: the folder to write (created; reload it with `load_lora` or ``peft``).
            overwrite: replace an existing non-empty folder instead of refusing.

        Returns:
            The folder written.
        """
        target = Path(path)
        check_writable_folder(target, overwrite=overwrite)
        with staged_folder(target) as staging:
            self.config.save_pretrained(staging)
            save_file(self.state_dict(), staging / "adapter_model.safetensors")
        return target

    def remove(self) -> None:
        """Take the adapter out of the model: every wrapped module gets its base layer back and
        every weight its former ``requires_grad``. The model then computes what it did before
        `add_lora` (bit for bit)."""
        hf_model = self.model.hf_model
        for parent in list(hf_model.modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, LoraLayer):
                    setattr(parent, child_name, child.get_base_layer())
        for name, parameter in hf_model.named_parameters():
            parameter.requires_grad_(self._grad_before.get(name, parameter.requires_grad))
        if hasattr(hf_model, "peft_config"):  # set by inject_adapter_in_model
            del hf_model.peft_config

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return (
            f"LoraAdapter(r={self.config.r}, layers={self.config.layers_to_transform}, "
            f"modules={sorted(self.config.target_modules)}, {n} trainable parameters)"
        )


def _checked_modules(model: ModelHandle, modules: Sequence[str] | None) -> tuple[str, ...]:
    """``modules`` (default every linear map LoRA can target in this family), each checked."""
    known = _MODULES.get(model.arch.family, _DECODER_MODULES)
    chosen = tuple(modules) if modules is not None else known
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise InputError(
            f"Unknown module names {unknown} for {model.arch.hf_class}; choose from {known}."
        )
    return chosen


def check_lora_layers(layers: Sequence[int], n_layers: int) -> list[int]:
    """``layers`` sorted and deduplicated if each is a layer of the model; a clear error
    otherwise (none, or out of range).

    Args:
        layers: layer indices (at least one).
        n_layers: the model's number of layers; valid indices are ``0 .. n_layers - 1``.
    """
    layer_list = sorted({int(layer) for layer in layers})
    if not layer_list:
        raise InputError("Choose at least one layer for the LoRA adapter.")
    bad = [layer for layer in layer_list if not 0 <= layer < n_layers]
    if bad:
        raise InputError(
            f"Layers {bad} are out of range: the model has layers 0 .. {n_layers - 1}."
        )
    return layer_list


def add_lora(
    model: ModelHandle,
    layers: Sequence[int],
    modules: Sequence[str] | None = None,
    *,
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    init: bool | str = True,
) -> LoraAdapter:
    """Attach a LoRA adapter to ``modules`` of ``layers`` and freeze every other weight.

    Args:
        model: the model handle (its HF modules are wrapped in place).
        layers: layer indices that get adapters (``layers_to_transform``).
        modules: module names, e.g. ``("q_proj", "v_proj")``; default every linear map of the
            layer (attention and MLP).
        r: LoRA rank.
        alpha: LoRA scaling numerator (the update is scaled by ``alpha / r``).
        dropout: dropout on the adapter's input during training.
        init: ``peft``'s ``init_lora_weights`` (``True``: B = 0, the model is unchanged).

    Returns:
        The `LoraAdapter`; pass ``adapter.parameters()`` to an optimiser.
    """
    layer_list = check_lora_layers(layers, model.n_layers)
    chosen = _checked_modules(model, modules)
    if any("lora_" in name for name, _ in model.hf_model.named_parameters()):
        raise InputError(
            "This model already carries a LoRA adapter; load a fresh model for another."
        )
    layer_group = "|".join(str(layer) for layer in layer_list)
    module_group = "|".join(chosen)
    if model.arch.family == "gpt2":
        pattern = rf".*\.h\.({layer_group})\..*mlp\..*\.({module_group}){re.escape(_WRAPPER)}"
    else:
        pattern = rf".*\.layers\.({layer_group})\..*\.({module_group}){re.escape(_WRAPPER)}"
    fan_in_fan_out = model.arch.family == "gpt2"
    injected = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=pattern,
        init_lora_weights=init,
        fan_in_fan_out=fan_in_fan_out,
    )
    grad_before = {
        name: parameter.requires_grad for name, parameter in model.hf_model.named_parameters()
    }
    inject_adapter_in_model(injected, model.hf_model)
    for name, parameter in model.hf_model.named_parameters():
        parameter.requires_grad_("lora_" in name)
    clean = lora_config(model, layer_list, chosen, r=r, alpha=alpha, dropout=dropout)
    return LoraAdapter(model, clean, grad_before)


def lora_config(
    model: ModelHandle,
    layers: Sequence[int],
    modules: Sequence[str] | None = None,
    *,
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
) -> LoraConfig:
    """The ``peft`` `LoraConfig` of an adapter on ``modules`` of ``layers``, in plain Hugging
    Face module names (``layers_to_transform``), ready for ``peft.get_peft_model`` on the plain
    ``transformers`` model; the config `add_lora` saves with its adapters.

    Args:
        model: the model handle (its family decides the module names and layout).
        layers: layer indices that get adapters (``layers_to_transform``).
        modules: module names, e.g. ``("q_proj", "v_proj")``; default every linear map LoRA
            can target in this family.
        r: LoRA rank.
        alpha: LoRA scaling numerator (the update is scaled by ``alpha / r``).
        dropout: dropout on the adapter's input during training.
    """
    layer_list = check_lora_layers(layers, model.n_layers)
    chosen = _checked_modules(model, modules)
    fan_in_fan_out = model.arch.family == "gpt2"
    if fan_in_fan_out:  # GPT-2: attn.c_proj must not match, so name the MLP path exactly
        layer_group = "|".join(str(layer) for layer in layer_list)
        targets: dict[str, object] = {
            "target_modules": rf".*\.h\.({layer_group})\.mlp\.({'|'.join(chosen)})"
        }
    else:
        targets = {
            "target_modules": list(chosen),
            "layers_to_transform": layer_list,
            "layers_pattern": "layers",
        }
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        fan_in_fan_out=fan_in_fan_out,
        task_type="CAUSAL_LM",
        **targets,
    )


@contextlib.contextmanager
def adapted(model: ModelHandle, layers: Sequence[int], **options: Any) -> Iterator[LoraAdapter]:
    """Context manager: a LoRA adapter (`add_lora`) on the model inside, removed after.

    Args:
        model: the model handle (its HF modules are wrapped inside the block).
        layers: layer indices that get adapters.
        **options: further keyword arguments of `add_lora` (``modules``, ``r``, ``alpha``,
            ``dropout``, ``init``).

    Example:
        >>> with adapted(model, layers=[10, 11], r=4) as adapter:
        ...     train(adapter.parameters(), objective, batches, ...)
        ...     adapter.save("adapter/")
    """
    adapter = add_lora(model, layers, **options)
    try:
        yield adapter
    finally:
        adapter.remove()


def load_lora(model: ModelHandle, path: str | Path) -> LoraAdapter:
    """Put an adapter written by `LoraAdapter.save` (or peft, for these modules) on ``model``.

    Args:
        model: the handle (without an adapter yet).
        path: folder with ``adapter_config.json`` and ``adapter_model.safetensors``.

    Returns:
        The `LoraAdapter`, its weights loaded (trainable, like a new one).
    """
    folder = Path(path)
    files = [folder / "adapter_config.json", folder / "adapter_model.safetensors"]
    missing = [str(file) for file in files if not file.is_file()]
    if missing:
        raise InputError(
            f"{folder} is not a saved LoRA adapter: {', '.join(missing)} not found. Save one "
            f"with adapter.save(folder)."
        )
    config = LoraConfig.from_pretrained(str(folder))
    layers, modules = _layers_and_modules(config, folder)
    adapter = add_lora(
        model, layers, modules, r=config.r, alpha=config.lora_alpha, dropout=config.lora_dropout
    )
    saved = load_file(files[1])
    own = {
        "base_model.model." + name.replace(f".{_ADAPTER}.", ".").replace(_WRAPPER, ""): parameter
        for name, parameter in model.hf_model.named_parameters()
        if "lora_" in name
    }
    if set(saved) != set(own):
        adapter.remove()
        unexpected = sorted(set(saved) - set(own))[:3]
        absent = sorted(set(own) - set(saved))[:3]
        raise InputError(
            f"The adapter in {folder} does not fit {model.name}: unexpected tensors {unexpected}, "
            f"missing {absent}. Load it on the model it was trained on."
        )
    with torch.no_grad():
        for key, parameter in own.items():
            parameter.copy_(saved[key].to(parameter.dtype))
    return adapter


def _layers_and_modules(config: LoraConfig, folder: Path) -> tuple[list[int], list[str]]:
    """The layers and module names an adapter config targets (both layouts `add_lora` writes)."""
    target = config.target_modules
    if isinstance(target, str):  # GPT-2: r".*\.h\.(0|1)\.mlp\.(c_fc|c_proj)"
        match = re.fullmatch(r"\.\*\\\.h\\\.\(([\d|]+)\)\\\.mlp\\\.\(([\w|]+)\)", target)
        if match is None:
            raise InputError(
                f"The adapter in {folder} targets {target!r}, a pattern not understood."
            )
        return [int(x) for x in match[1].split("|")], match[2].split("|")
    layers = config.layers_to_transform
    if layers is None:
        raise InputError(f"The adapter in {folder} names no layers (layers_to_transform).")
    layers = [layers] if isinstance(layers, int) else list(layers)
    return layers, sorted(target)


def lora_delta(module: Any) -> Tensor | None:
    """The weight update ΔW = scale · B A of a peft LoRA layer's active, unmerged adapters.

    Returns ``None`` for any other module. ΔW has the wrapped weight's layout, so
    ``base.weight + lora_delta(module)`` is the weight the adapted model computes with. The weight
    views of the decomposition and baking for export both use it.

    Args:
        module: any module; only a peft LoRA layer gives a delta.
    """
    if not isinstance(module, LoraLayer) or module.merged:
        return None
    deltas = [module.get_delta_weight(adapter).detach() for adapter in module.active_adapters]
    if not deltas:
        return None
    delta = torch.stack(deltas).sum(dim=0)
    gate = getattr(module, GATE_ATTRIBUTE, None)
    if gate is not None:
        delta = delta * gate().detach().to(delta.dtype)
    return delta


def lora_modules(model: ModelHandle) -> list[tuple[int, str, LoraLayer]]:
    """Every peft LoRA layer in the model as ``(layer index, module name, module)``, in layer
    then module-name order (``(3, "q_proj", <lora.Linear>)``); empty without an adapter.

    Args:
        model: the model handle whose HF modules are searched.
    """
    found: dict[tuple[int, str], LoraLayer] = {}
    for name, module in model.hf_model.named_modules():
        if isinstance(module, LoraLayer):
            match = _MODULE_NAME.search(name)
            if match is None:  # pragma: no cover - every layout add_lora writes matches
                raise InputError(f"Cannot tell the layer of the LoRA module {name}.")
            found.setdefault((int(match[1]), match[2]), module)
    return [(layer, name, found[(layer, name)]) for layer, name in sorted(found)]
