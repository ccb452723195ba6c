"""Interventions to and from plain data: YAML/JSON specs for scripted studies and exports.

A spec is a list of entries (or a mapping with an ``interventions`` list and an optional
``model``). Each entry names its ``kind`` and the intervention's fields::

    model: smollm2-135m-instruct          # optional: the model the spec was written for
    interventions:
      - {kind: ablate, component: L23H4}
      - {kind: ablate, component: MLP29, method: mean, reference: ["The weather is", "Hi"]}
      - {kind: ablate, component: L12, method: mean, reference: {file: prompts.txt}}
      - {kind: scale, component: L20H1, factor: 2.0}
      - {kind: steer_head, head: L15H0, vector: {file: steer.safetensors, key: consistency}}
      - {kind: steer_residual, layer: 10, vector: [0.1, -0.2, ...]}   # d_model numbers
      - {kind: prune_layers, layers: [3, 4]}
      - {kind: prune_heads, heads: [L5H2, L7H0]}
      - {kind: patch, site: {kind: resid_pre, layer: 8}, source: ["The Colosseum is in"]}
      - {kind: patch, site: L14H3, source: {file: sources.txt}, positions: -1}

The ``circuitlab_export.json`` record that `export_hf` writes into a checkpoint is a spec too
(its ``export`` section is ignored when read back), so an export can be repeated from it.

Files named in a spec (``{file: ...}``) are read relative to the spec's folder: prompt files
hold one prompt per line, vector files are safetensors (never pickles).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from circuitlab.checks import checked_arguments
from circuitlab.components import Component
from circuitlab.errors import InputError
from circuitlab.files import output_file, read_text_file
from circuitlab.interventions.spec import (
    Ablate,
    Intervention,
    Patch,
    PruneHeads,
    PruneLayers,
    Scale,
    SteerHead,
    SteerResidual,
)
from circuitlab.sites import Site

__all__ = [
    "InterventionSpec",
    "from_spec",
    "load_interventions",
    "read_prompt_file",
    "save_interventions",
    "to_spec",
]

_KINDS: dict[str, type] = {
    "ablate": Ablate,
    "scale": Scale,
    "steer_head": SteerHead,
    "steer_residual": SteerResidual,
    "prune_layers": PruneLayers,
    "prune_heads": PruneHeads,
    "patch": Patch,
}
_NAMES = {cls: name for name, cls in _KINDS.items()}


@dataclasses.dataclass(frozen=True)
class InterventionSpec:
    """Interventions read from a spec file, and the model the spec names (if any).

    Attributes:
        interventions: the interventions, in the spec's order.
        model: the model the spec was written for (its ``model`` entry), or ``None``.
    """

    interventions: tuple[Intervention, ...]
    model: str | None = None


def _plain(value: Any) -> Any:
    """A field value as JSON-ready data."""
    if isinstance(value, Component):
        return str(value)
    if isinstance(value, Site):
        return {"kind": value.kind, "layer": value.layer}
    if isinstance(value, Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value


def to_spec(interventions: Sequence[Intervention]) -> list[dict[str, Any]]:
    """Interventions as plain dictionaries (only fields that differ from their defaults).

    Vectors and position masks are written inline as numbers, so the spec alone rebuilds the
    interventions exactly (float32 values survive a JSON round trip).

    Args:
        interventions: the interventions; a `Patch` must take its source from prompts.
    """
    entries = []
    for item in interventions:
        if type(item) not in _NAMES:
            raise InputError(f"Not an intervention: {item!r}.")
        if isinstance(item, Patch) and isinstance(item.source, Tensor):
            raise InputError(
                f"{item!r} patches in activation tensors, which a spec does not hold; give the "
                f"source prompts instead (Patch(site, source=[...]))."
            )
        entry: dict[str, Any] = {"kind": _NAMES[type(item)]}
        for field in dataclasses.fields(item):
            value = getattr(item, field.name)
            default = field.default
            if default is not dataclasses.MISSING and not isinstance(value, Tensor):
                if value == default or (isinstance(default, tuple) and tuple(value) == default):
                    continue
            entry[field.name] = _plain(value)
        entries.append(entry)
    return entries


def _where(index: int, entry: Mapping[str, Any]) -> str:
    return f"Intervention {index + 1} ({entry.get('kind', 'no kind')})"


def _read_file_reference(value: Any, base_dir: Path, what: str) -> Path | None:
    if not isinstance(value, Mapping):
        return None
    if set(value) - {"file", "key"} or "file" not in value:
        raise InputError(f"{what}: a file reference looks like {{file: NAME}}, got {dict(value)}.")
    path = Path(os.path.expanduser(str(value["file"])))
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise InputError(f"{what}: the file {path} does not exist.")
    return path


def _vector(value: Any, base_dir: Path, what: str) -> Tensor:
    path = _read_file_reference(value, base_dir, what)
    if path is None:
        try:
            return torch.tensor(value, dtype=torch.float32)
        except (TypeError, ValueError) as error:
            raise InputError(
                f"{what}: a vector is a list of numbers or {{file: NAME.safetensors, key: NAME}}; "
                f"{error}."
            ) from None
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as error:
        raise InputError(f"{what}: cannot read {path} as safetensors: {error}") from None
    key = value.get("key")
    if key is None:
        if len(tensors) != 1:
            raise InputError(f"{what}: {path} holds {sorted(tensors)}; name one with key: NAME.")
        return next(iter(tensors.values()))
    if key not in tensors:
        raise InputError(f"{what}: {path} has no tensor {key!r}; it holds {sorted(tensors)}.")
    return tensors[key]


def read_prompt_file(path: str | os.PathLike[str]) -> list[str]:
    """Prompts of a text file, one per non-empty line (surrounding spaces removed).

    Args:
        path: the UTF-8 text file; it must hold at least one prompt.
    """
    source = Path(path)
    lines = [line.strip() for line in read_text_file(source, "prompt file").splitlines()]
    prompts = [line for line in lines if line]
    if not prompts:
        raise InputError(f"{source} holds no prompts (one prompt per line).")
    return prompts


def _prompts(value: Any, base_dir: Path, what: str) -> Any:
    path = _read_file_reference(value, base_dir, what)
    return value if path is None else read_prompt_file(path)


def _build(index: int, entry: Any, base_dir: Path) -> Intervention:
    if not isinstance(entry, Mapping):
        raise InputError(
            f"Intervention {index + 1} must be a mapping such as {{kind: ablate, component: L3H1}},"
            f" got {entry!r}."
        )
    what = _where(index, entry)
    kind = entry.get("kind")
    if kind not in _KINDS:
        raise InputError(f"{what}: unknown kind {kind!r}; use one of {sorted(_KINDS)}.")
    cls = _KINDS[kind]
    allowed = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(entry) - {"kind", *allowed})
    if unknown:
        raise InputError(f"{what}: unknown field(s) {unknown}; {kind} takes {allowed}.")
    values = {key: entry[key] for key in allowed if key in entry}
    try:
        if "vector" in values:
            values["vector"] = _vector(values["vector"], base_dir, what)
        if "reference" in values:
            values["reference"] = _prompts(values["reference"], base_dir, what)
        if kind == "patch" and "source" in values:
            values["source"] = _prompts(values["source"], base_dir, what)
        if isinstance(values.get("site"), Mapping):
            values["site"] = Site(**values["site"])
        if isinstance(values.get("positions"), list):
            values["positions"] = _position_mask(values["positions"])
        return cls(**values)
    except InputError as error:
        raise InputError(f"{what}: {error}") from None
    except (TypeError, ValueError) as error:  # a field of the wrong type or shape
        raise InputError(f"{what}: {error}; {kind} takes {allowed}.") from None


def _position_mask(rows: list[Any]) -> Tensor:
    """A [batch, pos] boolean mask from a spec's nested lists of true/false (or 1/0)."""
    flat = [value for row in rows for value in (row if isinstance(row, list) else [row])]
    if any(not isinstance(value, (bool, int)) or value not in (0, 1) for value in flat):
        raise InputError(
            f"positions must be 'last', an int, or a [batch, pos] mask of true/false values; "
            f"got {rows!r}."
        )
    return torch.tensor(rows, dtype=torch.bool)


def from_spec(
    spec: Sequence[Any] | Mapping[str, Any], *, base_dir: str | os.PathLike[str] = "."
) -> InterventionSpec:
    """Build interventions from a spec (a list of entries, or ``{interventions: [...]}``).

    Args:
        spec: the parsed spec (see the module docstring for the format).
        base_dir: the folder that relative ``{file: ...}`` references are read from.
    """
    model = None
    entries: Any = spec
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"interventions", "model", "export", "check"})
        if unknown or "interventions" not in spec:
            raise InputError(
                f"A spec is a list of interventions or a mapping with 'interventions' (and "
                f"optionally 'model'); got the keys {sorted(spec)}."
            )
        entries, model = spec["interventions"], spec.get("model")
    if not isinstance(entries, Sequence) or isinstance(entries, str) or not entries:
        raise InputError("The spec lists no interventions: give a non-empty list.")
    folder = Path(base_dir)
    built = tuple(_build(index, entry, folder) for index, entry in enumerate(entries))
    return InterventionSpec(built, None if model is None else str(model))


@checked_arguments
def load_interventions(path: str | os.PathLike[str]) -> InterventionSpec:
    """Read a YAML or JSON spec file (see the module docstring) into interventions.

    Args:
        path: the spec file; files it names are read relative to its folder.
    """
    source = Path(path)
    text = read_text_file(source, "intervention spec")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InputError(f"{source} is not valid YAML/JSON: {error}") from None
    if data is None:
        raise InputError(f"{source} is empty: list the interventions to apply.")
    return from_spec(data, base_dir=source.parent)


@checked_arguments
def save_interventions(
    interventions: Sequence[Intervention],
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
) -> Path:
    """Write interventions as a spec file (JSON for ``.json``, YAML otherwise), atomically.

    Args:
        interventions: the interventions (see `to_spec`).
        path: the file to write; a ``.json`` suffix writes JSON, any other YAML.
        model: the model the spec is for, written as its ``model`` entry (default: none).

    Returns:
        The file written.
    """
    target = Path(path)
    data: dict[str, Any] = {"interventions": to_spec(interventions)}
    if model is not None:
        data = {"model": model, **data}
    if target.suffix.lower() == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    with output_file(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target
