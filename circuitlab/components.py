"""Component identifiers: typed values for the parts of a model that write to the residual stream.

Every feature that scores, selects or edits parts of a model speaks in these values, never in
hook-name strings. Each has a compact string form that parses back and sorts in model order:

    EMBED      the embedding (token + positional), x(0)
    L12H3      attention head 3 of layer 12
    BIAS12     the attention output bias of layer 12 (models with o_proj/c_proj biases)
    MLP7       the MLP of layer 7 (its own biases included)
    L7         the whole of layer 7 (all heads, bias and MLP)

Example:
    >>> sorted(parse_components(["MLP0", "L0H1", "EMBED", "L0H0"]))
    [Embedding(), Head(layer=0, head=0), Head(layer=0, head=1), Mlp(layer=0)]
    >>> str(Head(12, 3)), parse_component("l12h3")
    ('L12H3', Head(layer=12, head=3))
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import total_ordering
from typing import TYPE_CHECKING

from circuitlab.errors import InputError

if TYPE_CHECKING:
    from circuitlab.architecture import ArchitectureInfo

__all__ = [
    "AttnBias",
    "Component",
    "Embedding",
    "Head",
    "Layer",
    "Mlp",
    "all_components",
    "parse_component",
    "parse_components",
]

_FORMS = "EMBED, L<layer>H<head> (e.g. L12H3), BIAS<layer>, MLP<layer>, L<layer>"


@total_ordering
class Component:
    """Base class of component identifiers (frozen, hashable, ordered in model order)."""

    _rank = 0

    @property
    def sort_key(self) -> tuple[int, int, int]:
        """(layer, kind rank, index): the embedding first, then layer by layer."""
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Component):
            return NotImplemented
        return self.sort_key < other.sort_key

    def check(self, arch: ArchitectureInfo) -> Component:
        """Return ``self`` if it exists in a model of shape ``arch``, else raise InputError.

        Args:
            arch: The model's architecture facts.
        """
        layer = getattr(self, "layer", None)
        if layer is not None and not 0 <= layer < arch.n_layers:
            raise InputError(
                f"Component {self} refers to layer {layer}, but the model has {arch.n_layers} "
                f"layers (0 .. {arch.n_layers - 1})."
            )
        head = getattr(self, "head", None)
        if head is not None and not 0 <= head < arch.n_heads:
            raise InputError(
                f"Component {self} refers to head {head}, but each layer has {arch.n_heads} "
                f"heads (0 .. {arch.n_heads - 1})."
            )
        return self


@dataclass(frozen=True, eq=True)
class Embedding(Component):
    """The embedding x(0): token embedding (scaled, for Gemma) plus positional embedding."""

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return (-1, 0, 0)

    def __str__(self) -> str:
        return "EMBED"


@dataclass(frozen=True, eq=True)
class Head(Component):
    """Attention head ``head`` of layer ``layer``.

    Attributes:
        layer: the layer index (0-based).
        head: the query head's index within the layer (0-based).
    """

    layer: int
    head: int

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return (self.layer, 0, self.head)

    def __str__(self) -> str:
        return f"L{self.layer}H{self.head}"


@dataclass(frozen=True, eq=True)
class AttnBias(Component):
    """The attention output-projection bias of layer ``layer``.

    Attributes:
        layer: the layer index (0-based).
    """

    layer: int

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return (self.layer, 1, 0)

    def __str__(self) -> str:
        return f"BIAS{self.layer}"


@dataclass(frozen=True, eq=True)
class Mlp(Component):
    """The MLP of layer ``layer``.

    Attributes:
        layer: the layer index (0-based).
    """

    layer: int

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return (self.layer, 2, 0)

    def __str__(self) -> str:
        return f"MLP{self.layer}"


@dataclass(frozen=True, eq=True)
class Layer(Component):
    """The whole of layer ``layer``: its heads, attention bias and MLP.

    Attributes:
        layer: the layer index (0-based).
    """

    layer: int

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return (self.layer, 3, 0)

    def __str__(self) -> str:
        return f"L{self.layer}"


_PATTERNS: tuple[tuple[re.Pattern[str], type[Component]], ...] = (
    (re.compile(r"EMBED"), Embedding),
    (re.compile(r"L(\d+)H(\d+)"), Head),
    (re.compile(r"BIAS(\d+)"), AttnBias),
    (re.compile(r"MLP(\d+)"), Mlp),
    (re.compile(r"L(\d+)"), Layer),
)


def parse_component(text: str | Component, arch: ArchitectureInfo | None = None) -> Component:
    """Parse ``"L12H3"``, ``"MLP7"``, ``"EMBED"``... (case-insensitive) into a component.

    Args:
        text: the string form, or a component (returned as is).
        arch: if given, the component is also checked to exist in that model.
    """
    if isinstance(text, Component):
        component = text
    elif isinstance(text, str):
        cleaned = text.strip().upper()
        for pattern, kind in _PATTERNS:
            match = pattern.fullmatch(cleaned)
            if match:
                component = kind(*(int(group) for group in match.groups()))
                break
        else:
            raise InputError(f"Cannot parse component {text!r}. Use one of the forms {_FORMS}.")
    else:
        raise InputError(
            f"A component must be a string such as 'L12H3' or a Component, got "
            f"{type(text).__name__}."
        )
    return component.check(arch) if arch is not None else component


def parse_components(
    items: Iterable[str | Component], arch: ArchitectureInfo | None = None
) -> list[Component]:
    """Parse several components (see `parse_component`), keeping their order.

    Args:
        items: Components as strings (``"L12H3"``, ``"MLP7"``, ...) or values.
        arch: When given, each component is checked against the model's shape.
    """
    return [parse_component(item, arch) for item in items]


def all_components(arch: ArchitectureInfo, *, attn_bias: bool = False) -> tuple[Component, ...]:
    """The decomposition's components in model order: EMBED, then per layer heads[, BIAS], MLP.

    Args:
        arch: The model's architecture facts.
        attn_bias: Also list each layer's attention output bias (`AttnBias`), for models that have
            one.
    """
    components: list[Component] = [Embedding()]
    for layer in range(arch.n_layers):
        components.extend(Head(layer, head) for head in range(arch.n_heads))
        if attn_bias:
            components.append(AttnBias(layer))
        components.append(Mlp(layer))
    return tuple(components)


def component_labels(components: Sequence[Component]) -> list[str]:
    """String forms of components, in order."""
    return [str(component) for component in components]
