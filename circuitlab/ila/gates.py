"""Learned gates on LoRA updates: W = W₀ + γ·ΔW with γ = σ(s), one score s per layer or per
LoRA matrix.

The gates sit on a trained adapter (`circuitlab.lora`): in the forward pass a hook scales each
LoRA layer's ``lora_B`` output by its γ (peft computes ``W₀x + scale·B(A(x))``, so this is
exactly W₀ + γ·ΔW), and `circuitlab.lora.lora_delta`, the one ΔW function that the weight views
and export use, multiplies by the same γ, so a gated model bakes and exports as it computes.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from circuitlab.errors import InputError
from circuitlab.lora import GATE_ATTRIBUTE, lora_modules
from circuitlab.model import ModelHandle

__all__ = ["GATE_UNITS", "LoraGates"]

GATE_UNITS = ("layer", "matrix")
"""What one gate scores: a whole layer (every LoRA matrix in it) or one LoRA matrix."""

_ADAPTER = "default"


class LoraGates:
    """Gates γ = σ(s) on every LoRA update of a model (module docstring).

    Args:
        model: a handle carrying a LoRA adapter (`circuitlab.lora.add_lora` or ``load_lora``).
        unit: ``"layer"`` (one score per adapted layer) or ``"matrix"`` (one per LoRA matrix).
        init: the scores' starting value (γ = σ(init); 0 gives γ = 0.5).

    Attributes:
        scores: the learned scores s [gate] (a leaf tensor; train it).
        keys: what each score gates: ``(layer, None)`` per layer, or ``(layer, module)``.
    """

    def __init__(self, model: ModelHandle, *, unit: str = "layer", init: float = 0.0) -> None:
        if unit not in GATE_UNITS:
            raise InputError(f"unit = {unit!r} is not a gate unit; use 'layer' or 'matrix'.")
        modules = lora_modules(model)
        if not modules:
            raise InputError(
                f"{model.name} carries no LoRA adapter to gate. Run stage 1 first "
                f"(circuitlab.ila.fit_lora) or put a trained adapter on the model with "
                f"circuitlab.lora.load_lora(model, folder)."
            )
        if any(getattr(module, GATE_ATTRIBUTE, None) is not None for _, _, module in modules):
            raise InputError("This adapter is gated already; remove those gates first.")
        self.model = model
        self.unit = unit
        self.keys: list[tuple[int, str | None]] = sorted(
            {(layer, name if unit == "matrix" else None) for layer, name, _ in modules},
            key=lambda key: (key[0], key[1] or ""),
        )
        index = {key: i for i, key in enumerate(self.keys)}
        device = next(iter(modules))[2].lora_B[_ADAPTER].weight.device
        self.scores = torch.full((len(self.keys),), float(init), device=device)
        self._handles: list[Any] = []
        self._modules = []
        for layer, name, module in modules:
            slot = index[(layer, name if unit == "matrix" else None)]
            gate = self._gate(slot)
            setattr(module, GATE_ATTRIBUTE, gate)
            handle = module.lora_B[_ADAPTER].register_forward_hook(
                lambda _module, _inputs, output, gate=gate: output * gate().to(output.dtype)
            )
            self._handles.append(handle)
            self._modules.append(module)

    @property
    def n_matrices(self) -> int:
        """How many LoRA matrices the gates scale."""
        return len(self._modules)

    def _gate(self, slot: int) -> Any:
        return lambda: torch.sigmoid(self.scores[slot])

    def gamma(self) -> Float[Tensor, " gate"]:
        """γ = σ(s) of every gate (with the graph to ``scores``)."""
        return torch.sigmoid(self.scores)

    def layer_gamma(self, n_layers: int) -> tuple[float, ...]:
        """One γ per model layer: its gate, or the mean of its matrices' gates (unit "matrix");
        0 for a layer without an adapter.

        Args:
            n_layers: number of layers of the model.
        """
        gamma = self.gamma().detach().float().cpu()
        sums, counts = [0.0] * n_layers, [0] * n_layers
        for (layer, _), value in zip(self.keys, gamma.tolist(), strict=True):
            sums[layer] += value
            counts[layer] += 1
        return tuple(s / c if c else 0.0 for s, c in zip(sums, counts, strict=True))

    def matrix_gamma(self) -> dict[str, tuple[float, ...]]:
        """Unit "matrix": module name → its γ in each adapted layer (layer order)."""
        table: dict[str, list[float]] = {}
        for (_, name), value in zip(self.keys, self.gamma().detach().cpu().tolist(), strict=True):
            if name is not None:
                table.setdefault(name, []).append(value)
        return {name: tuple(values) for name, values in table.items()}

    def remove(self) -> None:
        """Take the gates off (the adapter then computes W₀ + ΔW again)."""
        for handle in self._handles:
            handle.remove()
        for module in self._modules:
            if hasattr(module, GATE_ATTRIBUTE):
                delattr(module, GATE_ATTRIBUTE)
        self._handles, self._modules = [], []

    def __enter__(self) -> LoraGates:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"LoraGates(unit={self.unit!r}, {len(self.keys)} gates)"
