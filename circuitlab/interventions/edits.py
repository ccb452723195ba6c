"""Interventions resolved against one model into edits at hook points.

Every intervention becomes one or more `SiteEdit`: ``x := multiplier * x + constant`` (or a
resampled value) at one hook point, on one head's slice or the whole activation, at some
positions. Reference statistics (means, resampling sources) are computed here, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool
from torch import Tensor

from circuitlab import sites
from circuitlab.collector import EVERY_TOKEN, collect
from circuitlab.components import Head, Layer, Mlp
from circuitlab.errors import InputError
from circuitlab.hf_compat import kv_cache_in, kv_cache_length
from circuitlab.interventions.spec import (
    Ablate,
    Intervention,
    PositionFilter,
    PruneHeads,
    PruneLayers,
    Scale,
    SteerHead,
    SteerResidual,
)
from circuitlab.model import ModelHandle
from circuitlab.readers import Keep, Mean, Reader
from circuitlab.sites import Site

__all__ = [
    "EDITABLE_KINDS",
    "ForwardState",
    "ResolvedInterventions",
    "SiteEdit",
    "position_mask",
    "resolve",
]

EDITABLE_KINDS = ("z", "o_out", "attn_out", "mlp_out", "resid_post")
"""Site kinds an intervention edits, in forward order within a layer."""


@dataclass
class ForwardState:
    """What the hooks need to know about the forward pass in flight (set by a pre-hook)."""

    attention_mask: Tensor | None = None
    offset: int = 0  # tokens already in the KV cache (generation)

    def capture(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.attention_mask = kwargs.get("attention_mask")
        cache = kv_cache_in(kwargs)
        self.offset = kv_cache_length(cache) if cache is not None else 0


@dataclass(eq=False)
class ResampleSource:
    """Reference activations to resample from: [n_ref, pos, ...] and each prompt's length."""

    values: Tensor
    lengths: Tensor
    seed: int


@dataclass(eq=False)
class SiteEdit:
    """``x := multiplier * x + constant`` (or resampled) at one site (one head's slice of it
    when ``head`` is set)."""

    site: Site
    head: int | None
    multiplier: float = 1.0
    constant: Tensor | None = None
    resample: ResampleSource | None = None
    positions: PositionFilter = None
    source: Intervention | None = None

    @property
    def layer(self) -> int:
        """The block the edited site sits in."""
        assert self.site.layer is not None  # every editable site is per block
        return self.site.layer

    @property
    def hook_name(self) -> str:
        return self.site.hook_name

    def hook(self, state: ForwardState) -> tuple[str, Any]:
        def apply(activation: Tensor, hook: object) -> Tensor:
            target = activation[:, :, self.head] if self.head is not None else activation
            new = self._new_values(target, state)
            mask = position_mask(self.positions, state, target.shape[0], target.shape[1])
            if mask is not None:
                new = torch.where(mask[..., None].to(new.device), new, target)
            if self.head is None:
                return new
            edited = activation.clone()
            edited[:, :, self.head] = new
            return edited

        return self.hook_name, apply

    def _new_values(self, target: Tensor, state: ForwardState) -> Tensor:
        if self.resample is not None:
            return _resampled(self.resample, target, state)
        new = target * self.multiplier
        if self.constant is not None:
            new = new + self.constant.to(device=target.device, dtype=target.dtype)
        return new


def _resampled(source: ResampleSource, target: Tensor, state: ForwardState) -> Tensor:
    batch, pos = target.shape[:2]
    generator = torch.Generator().manual_seed(source.seed)
    rows = torch.randint(len(source.lengths), (batch,), generator=generator)
    absolute = torch.arange(pos) + state.offset
    columns = torch.minimum(absolute[None, :], source.lengths[rows][:, None] - 1)
    values = source.values[rows[:, None], columns]
    return values.to(device=target.device, dtype=target.dtype)


def position_mask(
    positions: PositionFilter, state: ForwardState, batch: int, pos: int
) -> Bool[Tensor, "batch pos"] | None:
    """Which (row, position) of the current forward pass an edit applies to (``None``: all)."""
    if positions is None:
        return None
    if isinstance(positions, Tensor):
        if tuple(positions.shape) != (batch, pos):
            raise InputError(
                f"A position mask of shape {tuple(positions.shape)} was given, but this forward "
                f"pass has shape ({batch}, {pos}). A mask applies only to forward passes of "
                f"exactly its shape; use 'last' or an int for other inputs."
            )
        return positions
    if state.attention_mask is not None:
        last = state.attention_mask.sum(dim=-1).cpu() - 1  # right padding: last real token
    else:
        last = torch.full((batch,), state.offset + pos - 1)
    if positions == "last":
        wanted = last
    elif positions >= 0:
        wanted = torch.full((batch,), positions)
    else:
        wanted = last + 1 + positions
    local = wanted - state.offset
    return torch.arange(pos)[None, :] == local[:, None]


@dataclass
class ResolvedInterventions:
    """Interventions turned into site edits for one model, plus what export needs to know."""

    interventions: tuple[Intervention, ...]
    edits: list[SiteEdit] = field(default_factory=list)
    pruned_layers: tuple[int, ...] = ()
    pruned_heads: tuple[Head, ...] = ()

    def restricted_to(self, item: Intervention) -> ResolvedInterventions:
        """The edits that come from ``item`` alone (its reference statistics included)."""
        layers = item.layers if isinstance(item, PruneLayers) else ()
        heads = item.heads if isinstance(item, PruneHeads) else ()
        return ResolvedInterventions(
            (item,), [edit for edit in self.edits if edit.source is item], layers, heads
        )


def _check_layer(model: ModelHandle, layer: int, what: Intervention) -> None:
    if not 0 <= layer < model.n_layers:
        raise InputError(
            f"{what!r} refers to layer {layer}, but the model has {model.n_layers} layers "
            f"(0 .. {model.n_layers - 1})."
        )


def _check_vector(model: ModelHandle, vector: Tensor, what: Intervention) -> None:
    if vector.shape != (model.d_model,):
        raise InputError(
            f"{what!r}: the vector has shape {tuple(vector.shape)}, but the model's residual "
            f"stream has d_model = {model.d_model}."
        )


def _sites(component: Head | Mlp | Layer) -> list[tuple[Site, int | None]]:
    """Where ablating or scaling a component acts, with the head index for a head's slice."""
    if isinstance(component, Head):
        return [(sites.z(component.layer), component.head)]
    if isinstance(component, Mlp):
        return [(sites.mlp_out(component.layer), None)]
    return [(sites.attn_out(component.layer), None), (sites.mlp_out(component.layer), None)]


def resolve(
    model: ModelHandle, interventions: Sequence[Intervention], *, batch_size: int = 8
) -> ResolvedInterventions:
    """Check ``interventions`` against ``model`` and turn them into site edits.

    Mean and resample ablations run their reference prompts through the model here (with any
    interventions already active on it), ``batch_size`` prompts per forward pass.
    """
    result = ResolvedInterventions(tuple(interventions))
    pending: list[tuple[Ablate, SiteEdit]] = []
    pruned_layers: set[int] = set()
    pruned_heads: set[Head] = set()
    for item in interventions:
        if isinstance(item, (Ablate, Scale)):
            component = item.component.check(model.arch)
            for site, head in _sites(component):
                edit = SiteEdit(
                    site,
                    head,
                    multiplier=item.factor if isinstance(item, Scale) else 0.0,
                    positions=item.positions,
                    source=item,
                )
                result.edits.append(edit)
                if isinstance(item, Ablate) and item.method != "zero":
                    pending.append((item, edit))
        elif isinstance(item, SteerHead):
            item.head.check(model.arch)
            _check_vector(model, item.vector, item)
            result.edits.append(
                SiteEdit(
                    sites.o_out(item.head.layer),
                    None,
                    constant=item.vector,
                    positions=item.positions,
                    source=item,
                )
            )
        elif isinstance(item, SteerResidual):
            _check_layer(model, item.layer, item)
            _check_vector(model, item.vector, item)
            result.edits.append(
                SiteEdit(
                    sites.resid_post(item.layer),
                    None,
                    constant=item.vector,
                    positions=item.positions,
                    source=item,
                )
            )
        elif isinstance(item, PruneLayers):
            for layer in item.layers:
                _check_layer(model, layer, item)
                pruned_layers.add(layer)
                for site in (sites.attn_out(layer), sites.mlp_out(layer)):
                    result.edits.append(SiteEdit(site, None, 0.0, source=item))
        elif isinstance(item, PruneHeads):
            for head in item.heads:
                head.check(model.arch)
                pruned_heads.add(head)
                result.edits.append(SiteEdit(sites.z(head.layer), head.head, 0.0, source=item))
        else:
            raise InputError(
                f"Not an intervention: {item!r}. Use Ablate, Scale, SteerHead, SteerResidual, "
                f"PruneLayers or PruneHeads."
            )
    if len(pruned_layers) == model.n_layers:
        raise InputError(
            f"Pruning every layer ({model.n_layers}) leaves no model; keep at least one layer."
        )
    result.pruned_layers = tuple(sorted(pruned_layers))
    result.pruned_heads = tuple(sorted(pruned_heads))
    _fill_reference_statistics(model, pending, batch_size)
    return result


def _fill_reference_statistics(
    model: ModelHandle, pending: list[tuple[Ablate, SiteEdit]], batch_size: int
) -> None:
    """One collector pass over each reference set: means over real tokens, or (resampling)
    every prompt's activations."""
    by_reference: dict[tuple[str, ...], list[tuple[Ablate, SiteEdit]]] = {}
    for item, edit in pending:
        by_reference.setdefault(tuple(item.reference or ()), []).append((item, edit))
    for reference, group in by_reference.items():
        readers: dict[str, Reader] = {}
        for item, edit in group:
            kind = "resample" if item.method == "resample" else "mean"
            key = f"{kind} {edit.hook_name}"
            readers.setdefault(key, Keep(edit.site) if kind == "resample" else Mean(edit.site))
        out = collect(
            model,
            list(reference),
            readers,
            positions=EVERY_TOKEN,
            batch_size=batch_size,
            desc="reference statistics",
        )
        for item, edit in group:
            if item.method == "mean":
                mean = out[f"mean {edit.hook_name}"].to(model.dtype)
                edit.constant = mean[edit.head] if edit.head is not None else mean
            else:
                values, lengths = out[f"resample {edit.hook_name}"]
                values = values.cpu()
                if edit.head is not None:
                    values = values[:, :, edit.head]
                edit.resample = ResampleSource(values, lengths, item.seed)
