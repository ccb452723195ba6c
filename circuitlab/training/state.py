"""Training state on disk: a run killed at any moment resumes from its last finished epoch.

`train(..., checkpoint=PATH)` writes, after every epoch, one safetensors file holding the
parameters, the optimiser's tensors (Adam's moments, step counts, ...) and, in its metadata, the
epoch count, the losses, the stopping rule's counters, the optimiser's other settings and the
run's scope (what the run depends on, e.g. model and data fingerprints). The file is written
to a temporary name and renamed into place, so a run killed even by ``kill -9`` leaves the
previous epoch's file or the new one, never half of one. No pickle is read: tensors come from
safetensors, everything else from JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor

from circuitlab.errors import InputError
from circuitlab.models.cache import atomic_file

__all__ = ["load_training_state", "save_training_state"]

_FORMAT = "circuitlab-training-state"


def _plain(data: Any) -> Any:
    return json.loads(json.dumps(data))


def save_training_state(
    path: str | os.PathLike[str],
    parameters: Sequence[Tensor],
    optimiser: torch.optim.Optimizer,
    progress: Mapping[str, Any],
    scope: Mapping[str, Any],
) -> None:
    """Write the parameters, the optimiser's state and ``progress`` (JSON-ready) atomically."""
    tensors: dict[str, Tensor] = {
        f"parameter.{i}": parameter.detach().cpu().contiguous()
        for i, parameter in enumerate(parameters)
    }
    state = optimiser.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optimiser.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    metadata = {
        "format": _FORMAT,
        "progress": json.dumps(_plain(dict(progress))),
        "scope": json.dumps(_plain(dict(scope)), sort_keys=True),
        "param_groups": json.dumps(_plain(state["param_groups"])),
        "optimiser_scalars": json.dumps(_plain(scalars)),
        "optimiser": type(optimiser).__name__,
    }
    with atomic_file(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_training_state(
    path: str | os.PathLike[str],
    parameters: Sequence[Tensor],
    optimiser: torch.optim.Optimizer,
    scope: Mapping[str, Any],
) -> dict[str, Any]:
    """Restore the parameters and the optimiser from ``path`` in place; return the progress.

    Raises:
        InputError: the file is not a training state, or belongs to another run (another scope,
            optimiser or parameter shapes).
    """
    source = Path(path)
    try:
        with safe_open(str(source), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(source))
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(
            f"{source} is not a circuitlab training state ({error}); delete it to start over."
        ) from None
    if metadata.get("format") != _FORMAT:
        raise InputError(f"{source} is not a circuitlab training state; delete it or pass another.")
    wanted = json.dumps(_plain(dict(scope)), sort_keys=True)
    if metadata.get("scope") != wanted or metadata.get("optimiser") != type(optimiser).__name__:
        raise InputError(
            f"The training state {source} belongs to another run (other model, data, settings "
            f"or optimiser); delete it to start over, or pass another checkpoint path."
        )
    for i, parameter in enumerate(parameters):
        stored = tensors.get(f"parameter.{i}")
        if stored is None or stored.shape != parameter.shape:
            raise InputError(
                f"The training state {source} holds other parameters than this run's; delete "
                f"it to start over."
            )
        with torch.no_grad():
            parameter.copy_(stored.to(parameter.device, parameter.dtype))
    state: dict[str, Any] = {"state": {}, "param_groups": json.loads(metadata["param_groups"])}
    scalars = json.loads(metadata["optimiser_scalars"])
    for key, value in tensors.items():
        if key.startswith("optimiser."):
            _, index, name = key.split(".", 2)
            state["state"].setdefault(int(index), {})[name] = value
    for index, entry in scalars.items():
        state["state"].setdefault(int(index), {}).update(entry)
    optimiser.load_state_dict(state)
    return json.loads(metadata["progress"])
