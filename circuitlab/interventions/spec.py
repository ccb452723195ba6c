"""Interventions as values: what to change in a model, independent of how it is applied.

Each intervention names its target with the component identifiers of `circuitlab.components`
and is a frozen value. Nothing happens until it is applied, either by hooks
(`ModelHandle.intervene`, reversible) or baked into weights (`export_hf`).

Where each acts:

    Ablate / Scale  a Head     the head's value-weighted output ``z`` (``hook_z``), before
                               ``W_O``; baked into the output projection's input columns
    Ablate / Scale  an Mlp     the MLP's write to the residual stream (``hook_mlp_out``)
    Ablate / Scale  a Layer    both branch writes of the layer (``hook_attn_out``,
                               ``hook_mlp_out``)
    SteerHead                  adds a vector to the head's output (output of ``o_proj``)
    SteerResidual              adds a vector to the residual stream after a layer
                               (``hook_resid_post``: what the next layer reads)
    PruneLayers                removes layers (their writes become zero: the residual stream
                               passes through unchanged)
    PruneHeads                 removes heads (their ``z`` becomes zero)
    Patch                      writes another run's activation at a site (residual stream,
                               a branch output, or one head's ``z``), row by row and position
                               by position: activation patching

``positions`` restricts an edit to some tokens: ``None`` (every position), ``"last"`` (each
prompt's last real token), an int (that position in every prompt; negative counts back from
the last real token, ``-1`` being the last), or a boolean mask of shape [batch, pos] for forward
passes of exactly that shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from circuitlab.checks import check_number
from circuitlab.components import Component, Head, Layer, Mlp, parse_component
from circuitlab.errors import InputError
from circuitlab.sites import Site
from circuitlab.vocabulary import PATCHABLE_KINDS

__all__ = [
    "PATCHABLE_KINDS",
    "Ablate",
    "Intervention",
    "Patch",
    "PositionFilter",
    "PruneHeads",
    "PruneLayers",
    "Scale",
    "SteerHead",
    "SteerResidual",
]

PositionFilter: TypeAlias = Literal["last"] | int | Bool[Tensor, "batch pos"] | None
AblationMethod: TypeAlias = Literal["zero", "mean", "resample"]
_METHODS = ("zero", "mean", "resample")
_EDITABLE = (Head, Mlp, Layer)


def _editable(component: Component | str, what: str) -> Component:
    parsed = parse_component(component)
    if not isinstance(parsed, _EDITABLE):
        raise InputError(
            f"{what} acts on a head (L3H1), an MLP (MLP3) or a whole layer (L3), not {parsed}."
        )
    return parsed


def _check_positions(positions: PositionFilter) -> None:
    if positions is None or positions == "last" or isinstance(positions, int):
        if isinstance(positions, bool):
            raise InputError("positions must be None, 'last', an int or a [batch, pos] mask.")
        return
    if isinstance(positions, Tensor) and positions.dtype == torch.bool and positions.ndim == 2:
        return
    raise InputError(
        f"positions must be None (every position), 'last', an int, or a boolean [batch, pos] "
        f"mask; got {positions!r}."
    )


def _check_vector(vector: Tensor, what: str) -> Tensor:
    if not isinstance(vector, Tensor) or vector.ndim != 1:
        raise InputError(f"{what} needs a 1-D tensor of size d_model, got {vector!r}.")
    if not vector.is_floating_point():
        raise InputError(
            f"{what} needs a floating-point vector, got dtype {vector.dtype}; convert it with "
            f"vector.float()."
        )
    if not bool(torch.isfinite(vector).all()):
        raise InputError(f"{what}: the vector holds NaN or infinite values.")
    return vector.detach()


@dataclass(frozen=True, eq=False)
class Ablate:
    """Knock a component out.

    Args:
        component: a head (``"L3H1"``), an MLP (``"MLP3"``) or a whole layer (``"L3"``).
        method: ``"zero"``; ``"mean"``, its mean activation over the real tokens of
            ``reference`` prompts; or ``"resample"``, each prompt gets the activation of a
            randomly drawn reference prompt at the same position (clamped to that prompt's
            length).
        reference: the reference prompts for ``mean`` and ``resample``.
        positions: which tokens to change (see the module docstring); default all.
        seed: seed of the resampling draws.
        per_position: for ``mean``: the mean of the reference prompts *at each position*
            (position-matched, as patching papers use) instead of over all their tokens. A
            prompt's position past every reference prompt's length is an error.
    """

    component: Component | str
    method: AblationMethod = "zero"
    reference: Sequence[str] | None = None
    positions: PositionFilter = None
    seed: int = 0
    per_position: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "component", _editable(self.component, "Ablate"))
        if self.method not in _METHODS:
            raise InputError(f"Unknown ablation method {self.method!r}; use one of {_METHODS}.")
        if self.method == "zero" and self.reference is not None:
            raise InputError("Zero ablation takes no reference prompts; drop reference=.")
        if self.method != "zero":
            reference = [self.reference] if isinstance(self.reference, str) else self.reference
            if not reference:
                raise InputError(
                    f"{self.method.capitalize()} ablation of {self.component} needs a non-empty "
                    f"list of reference prompts (reference=[...])."
                )
            object.__setattr__(self, "reference", tuple(reference))
        if not isinstance(self.per_position, bool):
            raise InputError(f"per_position must be True or False, got {self.per_position!r}.")
        if self.per_position and self.method != "mean":
            raise InputError(
                f"per_position=True is a kind of mean ablation (the reference mean at each "
                f"position); use method='mean', not {self.method!r}."
            )
        _check_positions(self.positions)

    def __repr__(self) -> str:
        extra = "" if self.method == "zero" else f", {len(self.reference or ())} reference prompts"
        method = "position-matched mean" if self.per_position else self.method
        return f"Ablate({self.component}, {method!r}{extra})"


@dataclass(frozen=True, eq=False)
class Scale:
    """Multiply a component's output by ``factor`` (the basis of component reweighting).

    Args:
        component: a head (``"L3H1"``: its ``z``), an MLP (``"MLP3"``: its write to the
            residual stream) or a whole layer (``"L3"``: both branch writes).
        factor: the multiplier, any finite number (0 ablates, 1 changes nothing, 2 doubles).
        positions: which tokens to change (see the module docstring); default all.
    """

    component: Component | str
    factor: float
    positions: PositionFilter = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "component", _editable(self.component, "Scale"))
        factor = self.factor
        if isinstance(factor, Tensor) and factor.numel() == 1:
            factor = factor.item()
        factor = check_number("Scale factor", factor, lambda v: True, "a finite number, e.g. 0.5")
        object.__setattr__(self, "factor", factor)
        _check_positions(self.positions)

    def __repr__(self) -> str:
        return f"Scale({self.component}, {self.factor:g})"


@dataclass(frozen=True, eq=False)
class SteerHead:
    """Add ``vector`` [d_model] to an attention head's output (the basis of bias injection).

    Args:
        head: the head (``"L15H0"`` or a `Head`); the vector is added to its share of the
            attention output projection's output (``attn.o.hook_out``).
        vector: a finite floating-point vector of size d_model, in residual-stream units.
        positions: which tokens to change (see the module docstring); default all.
    """

    head: Head | str
    vector: Float[Tensor, " d_model"]
    positions: PositionFilter = None

    def __post_init__(self) -> None:
        head = parse_component(self.head)
        if not isinstance(head, Head):
            raise InputError(f"SteerHead needs a head such as 'L3H1', got {head}.")
        object.__setattr__(self, "head", head)
        object.__setattr__(self, "vector", _check_vector(self.vector, "SteerHead"))
        _check_positions(self.positions)

    def __repr__(self) -> str:
        return f"SteerHead({self.head}, |v|={float(self.vector.norm()):.3g})"


@dataclass(frozen=True, eq=False)
class SteerResidual:
    """Add ``vector`` [d_model] to the residual stream after layer ``layer``.

    Args:
        layer: the block whose output is changed (``hook_resid_post``: what the next block
            reads), 0 .. n_layers - 1.
        vector: a finite floating-point vector of size d_model, in residual-stream units.
        positions: which tokens to change (see the module docstring); default all.
    """

    layer: int
    vector: Float[Tensor, " d_model"]
    positions: PositionFilter = None

    def __post_init__(self) -> None:
        if isinstance(self.layer, bool) or not isinstance(self.layer, int):
            raise InputError(f"SteerResidual needs an int layer, got {self.layer!r}.")
        object.__setattr__(self, "vector", _check_vector(self.vector, "SteerResidual"))
        _check_positions(self.positions)

    def __repr__(self) -> str:
        return f"SteerResidual(layer {self.layer}, |v|={float(self.vector.norm()):.3g})"


@dataclass(frozen=True, eq=False)
class PruneLayers:
    """Remove whole layers: the residual stream passes them unchanged.

    Args:
        layers: the layer indices to remove (an int or several); at least one layer must stay.
    """

    layers: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        layers = (self.layers,) if isinstance(self.layers, int) else tuple(self.layers)
        if not layers:
            raise InputError("PruneLayers needs at least one layer index.")
        if any(isinstance(layer, bool) or not isinstance(layer, int) for layer in layers):
            raise InputError(f"PruneLayers needs int layer indices, got {self.layers!r}.")
        object.__setattr__(self, "layers", tuple(sorted(set(layers))))

    def __repr__(self) -> str:
        return f"PruneLayers({list(self.layers)})"


@dataclass(frozen=True, eq=False)
class PruneHeads:
    """Remove attention heads (their output becomes zero).

    Args:
        heads: the heads to remove (``"L5H2"``, `Head` values, or a list of them). An
            export removes them from the weights where the config can say so (every layer
            keeping as many heads, every remaining key/value group as many query heads) and
            zeroes their output columns otherwise.
    """

    heads: tuple[Head, ...] = field(default=())

    def __post_init__(self) -> None:
        items = [self.heads] if isinstance(self.heads, (str, Head)) else list(self.heads)
        heads = [parse_component(item) for item in items]
        if not heads:
            raise InputError("PruneHeads needs at least one head.")
        if not all(isinstance(head, Head) for head in heads):
            raise InputError(f"PruneHeads takes heads such as 'L3H1', got {items!r}.")
        object.__setattr__(self, "heads", tuple(sorted(set(heads))))

    def __repr__(self) -> str:
        return f"PruneHeads({[str(head) for head in self.heads]})"


@dataclass(frozen=True, eq=False)
class Patch:
    """Write a source run's activation into the current run: activation patching.

    Row ``i`` of every forward pass gets the activation of source row ``i`` at the same
    (absolute) position, so the source must have exactly one row per row of the patched runs
    and, where positions are compared, the same number of tokens.

    Args:
        site: where to patch: a `circuitlab.sites.Site` of a kind in `PATCHABLE_KINDS`
            (``sites.resid_pre(3)``, ``sites.mlp_out(3)``, ``sites.z(3)``), or a head
            (``"L3H1"``), which means that head's slice of ``z``.
        source: the source prompts (run once when the patch is applied, to cache their
            activations), or the activations themselves: [rows, pos, ...] with the site's
            trailing shape ([d_model], or [head_index, d_head] for ``z``, or [d_head] for one
            head).
        head: with a ``z`` site, patch only this head (query-head index).
        positions: which tokens to patch (see the module docstring); default every token,
            which needs source and patched prompts of equal token counts.

    Example:
        >>> with model.intervene(Patch(sites.resid_pre(8), source=["The Colosseum is in"])):
        ...     model.top_next_tokens("The Eiffel Tower is in")
    """

    site: Site | Head | str
    source: Sequence[str] | Float[Tensor, "rows pos ..."]
    head: int | None = None
    positions: PositionFilter = None

    def __post_init__(self) -> None:
        site, head = self.site, self.head
        if isinstance(site, (str, Head)):
            parsed = parse_component(site)
            if not isinstance(parsed, Head):
                raise InputError(
                    f"Patch takes a Site (e.g. sites.resid_pre(3)) or a head ('L3H1'), got "
                    f"{site!r}; an MLP's output is sites.mlp_out(layer)."
                )
            if head is not None and head != parsed.head:
                raise InputError(f"Patch names head {parsed} and head={head}; give one of them.")
            site, head = Site("z", parsed.layer), parsed.head
        if not isinstance(site, Site) or site.kind not in PATCHABLE_KINDS:
            raise InputError(
                f"Patch writes one of the sites {', '.join(PATCHABLE_KINDS)} (e.g. "
                f"sites.resid_pre(3)) or a head ('L3H1'), got {site!r}."
            )
        if head is not None:
            if site.kind != "z" or isinstance(head, bool) or not isinstance(head, int) or head < 0:
                raise InputError(
                    f"head= picks one head's slice of a z site: a head index >= 0 with "
                    f"sites.z(layer); got head={head!r} at {site!r}."
                )
        object.__setattr__(self, "site", site)
        object.__setattr__(self, "head", head)
        object.__setattr__(self, "source", _patch_source(self.source))
        _check_positions(self.positions)

    def __repr__(self) -> str:
        where = f"L{self.site.layer}H{self.head}" if self.head is not None else repr(self.site)
        if isinstance(self.source, Tensor):
            source = f"activations {tuple(self.source.shape)}"
        else:
            source = f"{len(self.source)} source prompts"
        return f"Patch({where}, {source})"


def _patch_source(source: object) -> tuple[str, ...] | Tensor:
    if isinstance(source, Tensor):
        if source.ndim < 3 or not source.is_floating_point():
            raise InputError(
                f"A Patch source tensor holds activations [rows, pos, ...] (floating point); "
                f"got shape {tuple(source.shape)}, dtype {source.dtype}."
            )
        return source.detach()
    texts = [source] if isinstance(source, str) else source
    if not isinstance(texts, Sequence) or not texts or not all(isinstance(t, str) for t in texts):
        raise InputError(
            f"A Patch source is a non-empty list of prompts (one per patched row) or an "
            f"activation tensor [rows, pos, ...]; got {source!r}."
        )
    return tuple(texts)


Intervention: TypeAlias = (
    Ablate | Scale | SteerHead | SteerResidual | PruneLayers | PruneHeads | Patch
)
