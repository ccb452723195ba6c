"""LoRA adapters on chosen layers and modules, trained through the hooked model.

The adapters are injected with ``peft`` into the Hugging Face modules under the bridge, so every
hook point keeps working during and after training. Saved adapters use plain Hugging Face
module names (the bridge's ``._original_component`` wrappers are removed), so they reload with
``peft.PeftModel.from_pretrained`` on a plain ``transformers`` model; `export_hf` merges them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, inject_adapter_in_model
from safetensors.torch import save_file

from circuitlab.errors import InputError
from circuitlab.hf_compat import peft_adapter_state_dict
from circuitlab.model import ModelHandle
from circuitlab.output_folder import check_writable_folder, staged_folder

__all__ = ["LoraAdapter", "add_lora"]

_MODULES: dict[str, tuple[str, ...]] = {
    "gpt2": ("c_fc", "c_proj"),  # MLP only: the bridge replaces GPT-2's fused c_attn
}
_DECODER_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_WRAPPER = "._original_component"


@dataclass
class LoraAdapter:
    """A LoRA adapter living in a model handle's weights.

    Attributes:
        model: the handle whose HF modules carry the adapter.
        config: the ``peft`` config, in plain Hugging Face module names.
    """

    model: ModelHandle
    config: LoraConfig

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
        """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (atomically)."""
        target = Path(path)
        check_writable_folder(target, overwrite=overwrite)
        with staged_folder(target) as staging:
            self.config.save_pretrained(staging)
            save_file(self.state_dict(), staging / "adapter_model.safetensors")
        return target

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return (
            f"LoraAdapter(r={self.config.r}, layers={self.config.layers_to_transform}, "
            f"modules={sorted(self.config.target_modules)}, {n} trainable parameters)"
        )


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
    layer_list = sorted(set(int(layer) for layer in layers))
    if not layer_list:
        raise InputError("add_lora needs at least one layer.")
    bad = [layer for layer in layer_list if not 0 <= layer < model.n_layers]
    if bad:
        raise InputError(
            f"Layers {bad} are out of range: the model has layers 0 .. {model.n_layers - 1}."
        )
    known = _MODULES.get(model.arch.family, _DECODER_MODULES)
    chosen = tuple(modules) if modules is not None else known
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise InputError(
            f"Unknown module names {unknown} for {model.arch.hf_class}; choose from {known}."
        )
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
    inject_adapter_in_model(injected, model.hf_model)
    for name, parameter in model.hf_model.named_parameters():
        parameter.requires_grad_("lora_" in name)
    if fan_in_fan_out:  # GPT-2: attn.c_proj must not match, so name the MLP path exactly
        targets: dict[str, object] = {
            "target_modules": rf".*\.h\.({layer_group})\.mlp\.({module_group})"
        }
    else:
        targets = {
            "target_modules": list(chosen),
            "layers_to_transform": layer_list,
            "layers_pattern": "layers",
        }
    clean = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        fan_in_fan_out=fan_in_fan_out,
        task_type="CAUSAL_LM",
        **targets,
    )
    return LoraAdapter(model, clean)
