"""Interventions resolved against one model into edits at hook points.

Every intervention becomes one or more `SiteEdit`: ``x := multiplier * x + constant`` (or a
resampled value, or a value per row and position: a patch or a position-matched mean) at one
hook point, on one head's slice or the whole activation, at some positions. Reference
statistics (means, resampling sources, patch sources) are computed here, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from circuitlab import sites
from circuitlab.collector import EVERY_TOKEN, collect
from circuitlab.components import Head, Layer, Mlp
from circuitlab.errors import InputError
from circuitlab.hf_compat import kv_cache_in, kv_cache_length
from circuitlab.interventions.spec import (
    Ablate,
    Intervention,
    Patch,
    PositionFilter,
    PruneHeads,
    PruneLayers,
    Scale,
    SteerHead,
    SteerResidual,
)
from circuitlab.model import ModelHandle
from circuitlab.readers import Keep, Mean, PositionMean, Reader
from circuitlab.sites import Site

__all__ = [
    "EDITABLE_KINDS",
    "ForwardState",
    "PositionalSource",
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
class PositionalSource:
    """Values to write at each (row, absolute position): [rows, pos, ...] and each row's
    length. One row serves every row of a forward pass (a position-matched mean); otherwise
    row ``i`` of the forward pass takes row ``i`` (a patch)."""

    values: Tensor
    lengths: Int[Tensor, " rows"]
    what: str
    exact_lengths: bool = False  # patch every position: the rows must be equally long
    fix: str = (
        "Paired prompts must tokenize to the same length where positions are compared "
        "(check model.to_str_tokens)."
    )

    def values_for(
        self, target: Tensor, state: ForwardState, mask: Bool[Tensor, "batch pos"] | None
    ) -> Tensor:
        """The values for ``target`` [batch, pos, ...] (positions outside ``mask`` unchecked)."""
        batch, pos = target.shape[:2]
        rows = len(self.values)
        if rows not in (1, batch):
            raise InputError(
                f"{self.what} has {rows} source rows, but this forward pass has {batch} rows; a "
                f"patch is applied row by row: give one source prompt per patched prompt."
            )
        if tuple(self.values.shape[2:]) != tuple(target.shape[2:]):
            raise InputError(
                f"{self.what}: the source activations end in shape {tuple(self.values.shape[2:])}"
                f", but the site's activation ends in {tuple(target.shape[2:])}."
            )
        real = _real_tokens(state, batch, pos)
        needed = real if mask is None else real & mask.cpu()
        lengths = self.lengths.expand(batch) if rows == 1 else self.lengths
        absolute = torch.arange(pos) + state.offset
        beyond = needed & (absolute[None, :] >= lengths[:, None])
        if self.exact_lengths and mask is None and state.offset == 0:
            mismatch = (real.sum(dim=1) != lengths).nonzero().flatten().tolist()
            if mismatch:
                row = mismatch[0]
                raise InputError(
                    f"{self.what}: row {row} has {int(real[row].sum())} tokens but its source "
                    f"has {int(lengths[row])}. Patching every position compares positions, so "
                    f"paired prompts must tokenize to the same length (check "
                    f"model.to_str_tokens on both), or patch chosen positions."
                )
        if bool(beyond.any()):
            row, column = (int(i) for i in beyond.nonzero()[0])
            raise InputError(
                f"{self.what}: row {row} is edited at position {column + state.offset}, but its "
                f"source has only {int(lengths[row])} tokens. {self.fix}"
            )
        width = min(pos, self.values.shape[1] - state.offset)
        values = torch.zeros_like(target)
        chosen = self.values[:, state.offset : state.offset + width]
        values[:, :width] = chosen.to(device=target.device, dtype=target.dtype)
        return values


def _real_tokens(state: ForwardState, batch: int, pos: int) -> Bool[Tensor, "batch pos"]:
    """True at the real (non-padding) tokens of the forward pass in flight."""
    if state.attention_mask is None:
        return torch.ones(batch, pos, dtype=torch.bool)
    mask = state.attention_mask.cpu().bool()
    return mask[:, state.offset : state.offset + pos]


@dataclass(eq=False)
class SiteEdit:
    """``x := multiplier * x + constant`` (or resampled) at one site (one head's slice of it
    when ``head`` is set)."""

    site: Site
    head: int | None
    multiplier: float = 1.0
    constant: Tensor | None = None
    resample: ResampleSource | None = None
    positional: PositionalSource | None = None
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
            mask = position_mask(self.positions, state, target.shape[0], target.shape[1])
            new = self._new_values(target, state, mask)
            if mask is not None:
                new = torch.where(mask[..., None].to(new.device), new, target)
            if self.head is None:
                return new
            edited = activation.clone()
            edited[:, :, self.head] = new
            return edited

        return self.hook_name, apply

    def _new_values(
        self, target: Tensor, state: ForwardState, mask: Bool[Tensor, "batch pos"] | None
    ) -> Tensor:
        if self.resample is not None:
            return _resampled(self.resample, target, state)
        if self.positional is not None:
            return self.positional.values_for(target, state, mask)
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
    patches: list[tuple[Patch, SiteEdit]] = []
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
        elif isinstance(item, Patch):
            edit = _patch_edit(model, item)
            result.edits.append(edit)
            if not isinstance(item.source, Tensor):
                patches.append((item, edit))
        elif isinstance(item, PruneHeads):
            for head in item.heads:
                head.check(model.arch)
                pruned_heads.add(head)
                result.edits.append(SiteEdit(sites.z(head.layer), head.head, 0.0, source=item))
        else:
            raise InputError(
                f"Not an intervention: {item!r}. Use Ablate, Scale, SteerHead, SteerResidual, "
                f"PruneLayers, PruneHeads or Patch."
            )
    if len(pruned_layers) == model.n_layers:
        raise InputError(
            f"Pruning every layer ({model.n_layers}) leaves no model; keep at least one layer."
        )
    result.pruned_layers = tuple(sorted(pruned_layers))
    result.pruned_heads = tuple(sorted(pruned_heads))
    _fill_reference_statistics(model, pending, batch_size)
    _fill_patch_sources(model, patches, batch_size)
    return result


def _patch_edit(model: ModelHandle, item: Patch) -> SiteEdit:
    """A patch's edit, checked against the model (its source filled in here for a tensor)."""
    site = item.site
    assert isinstance(site, Site)  # Patch normalises its site
    site.check(model.n_layers)
    if item.head is not None and not item.head < model.n_heads:
        raise InputError(
            f"{item!r}: head {item.head} does not exist; layer {site.layer} has {model.n_heads} "
            f"query heads (0 .. {model.n_heads - 1})."
        )
    edit = SiteEdit(site, item.head, positions=item.positions, source=item)
    if isinstance(item.source, Tensor):
        values = item.source
        lengths = torch.full((len(values),), values.shape[1])
        edit.positional = PositionalSource(values, lengths, repr(item))
    return edit


def _fill_patch_sources(
    model: ModelHandle, patches: list[tuple[Patch, SiteEdit]], batch_size: int
) -> None:
    """One collector pass over each set of source prompts: every patched site at every token."""
    by_source: dict[tuple[str, ...], list[tuple[Patch, SiteEdit]]] = {}
    for item, edit in patches:
        by_source.setdefault(tuple(item.source), []).append((item, edit))
    for source, group in by_source.items():
        readers: dict[str, Reader] = {edit.hook_name: Keep(edit.site) for _, edit in group}
        out = collect(
            model,
            list(source),
            readers,
            positions=EVERY_TOKEN,
            sort=False,
            batch_size=batch_size,
            desc="patch sources",
        )
        for item, edit in group:
            values, lengths = out[edit.hook_name]
            if edit.head is not None:
                values = values[:, :, edit.head]
            edit.positional = PositionalSource(
                values, lengths, repr(item), exact_lengths=item.positions is None
            )


def _statistic(item: Ablate) -> str:
    """The reference statistic an ablation needs: resample, mean, or position-matched mean."""
    if item.method == "resample":
        return "resample"
    return "position-mean" if item.per_position else "mean"


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
            key = f"{_statistic(item)} {edit.hook_name}"
            if item.method == "resample":
                readers.setdefault(key, Keep(edit.site))
            else:
                readers.setdefault(
                    key, PositionMean(edit.site) if item.per_position else Mean(edit.site)
                )
        out = collect(
            model,
            list(reference),
            readers,
            positions=EVERY_TOKEN,
            batch_size=batch_size,
            desc="reference statistics",
        )
        for item, edit in group:
            key = f"{_statistic(item)} {edit.hook_name}"
            if item.method == "mean" and item.per_position:
                means, lengths = out[key]
                means = means.to(model.dtype)[None]
                values = means[:, :, edit.head] if edit.head is not None else means
                what = f"{item!r} (reference prompts of up to {int((lengths > 0).sum())} tokens)"
                fix = "Give reference prompts at least as long as the prompts you ablate."
                reached = (lengths > 0).sum()[None]
                edit.positional = PositionalSource(values, reached, what, fix=fix)
            elif item.method == "mean":
                mean = out[key].to(model.dtype)
                edit.constant = mean[edit.head] if edit.head is not None else mean
            else:
                values, lengths = out[key]
                values = values.cpu()
                if edit.head is not None:
                    values = values[:, :, edit.head]
                edit.resample = ResampleSource(values, lengths, item.seed)
