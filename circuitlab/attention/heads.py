"""Which query heads a view shows, and the key/value group each one reads (GQA).

Under grouped-query attention a layer has ``n_heads`` query heads but only ``n_kv_heads``
key/value heads: query heads ``g·r .. g·r + r − 1`` (``r = n_heads / n_kv_heads``) share key/value
head ``g``, as Hugging Face's ``repeat_kv`` lays them out. Attention patterns are per query
head ([batch, n_heads, query_pos, key_pos]), so every head index here counts query heads.

Example:
    >>> kv_group(5, n_heads=9, n_kv_heads=3)
    1
    >>> resolve_heads(model.arch, ["L3H1"], layer=None)
    (Head(layer=3, head=1),)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from circuitlab.checks import check_integer
from circuitlab.components import Component, Head, parse_component
from circuitlab.errors import InputError

if TYPE_CHECKING:
    from circuitlab.architecture import ArchitectureInfo

__all__ = ["HeadSpec", "check_head", "check_layer", "group_members", "kv_group", "resolve_heads"]

HeadSpec = str | Component | Sequence[str | Component]
"""One head (``"L3H1"`` or ``Head(3, 1)``) or several; other components are refused with a
message saying what to pass instead."""


def kv_group(head: int, n_heads: int, n_kv_heads: int) -> int:
    """The key/value head that query head ``head`` reads (``head // (n_heads / n_kv_heads)``).

    Args:
        head: Index of the query head.
        n_heads: Query heads per layer.
        n_kv_heads: Key/value heads per layer.
    """
    return head // (n_heads // n_kv_heads)


def group_members(group: int, n_heads: int, n_kv_heads: int) -> range:
    """The query heads that share key/value head ``group``.

    Args:
        group: Index of the key/value head.
        n_heads: Query heads per layer.
        n_kv_heads: Key/value heads per layer.
    """
    size = n_heads // n_kv_heads
    return range(group * size, (group + 1) * size)


def _gqa_note(arch: ArchitectureInfo) -> str:
    if arch.n_kv_heads == arch.n_heads:
        return ""
    size = arch.n_heads // arch.n_kv_heads
    return (
        f" Head indices count query heads (0 .. {arch.n_heads - 1}), not key/value heads: "
        f"this model's {arch.n_heads} query heads per layer share {arch.n_kv_heads} key/value "
        f"heads (grouped-query attention, {size} query heads each)."
    )


def check_layer(layer: object, arch: ArchitectureInfo) -> int:
    """``layer`` as an int if the model has it, else an InputError naming the valid range.

    Args:
        layer: The layer index to check.
        arch: The model's architecture facts.
    """
    index = check_integer("layer", layer)
    if not 0 <= index < arch.n_layers:
        raise InputError(
            f"layer={index} is out of range: the model has {arch.n_layers} layers "
            f"(0 .. {arch.n_layers - 1})."
        )
    return index


def check_head(item: object, arch: ArchitectureInfo) -> Head:
    """One head (``"L3H1"`` or a `Head`) that exists in the model, else a clear InputError.

    Args:
        item: A head as ``"L3H1"`` or a `Head`.
        arch: The model's architecture facts.
    """
    if not isinstance(item, (str, Component)):
        raise InputError(
            f"A head must be a string such as 'L3H1' or a circuitlab.components.Head, got "
            f"{type(item).__name__} {item!r:.60}."
        )
    component = parse_component(item)
    if not isinstance(component, Head):
        raise InputError(
            f"{component} is not an attention head: attention patterns belong to heads, written "
            f"L<layer>H<head> (e.g. L3H1). To see every head of a layer, pass layer=<index> "
            f"(on the command line --layer N)."
        )
    try:
        component.check(arch)
    except InputError as error:
        head_problem = not 0 <= component.head < arch.n_heads
        raise InputError(f"{error}{_gqa_note(arch) if head_problem else ''}") from None
    return component


def resolve_heads(
    arch: ArchitectureInfo, heads: HeadSpec | None, layer: int | None
) -> tuple[Head, ...]:
    """The heads named by ``heads`` and every head of ``layer``, checked, in model order.

    Args:
        arch: The model's architecture facts.
        heads: Heads as ``"L3H1"`` strings or `Head` values, or ``None``.
        layer: A layer whose every head is added, or ``None``.
    """
    chosen: list[Head] = []
    if heads is not None:
        items = [heads] if isinstance(heads, (str, Component)) else heads
        if not isinstance(items, Sequence):
            raise InputError(
                f"heads must be a head such as 'L3H1' or a list of them, got "
                f"{type(heads).__name__}."
            )
        chosen.extend(check_head(item, arch) for item in items)
    if layer is not None:
        index = check_layer(layer, arch)
        chosen.extend(Head(index, head) for head in range(arch.n_heads))
    if not chosen:
        raise InputError(
            "No heads to show: give heads (e.g. 'L3H1' or ['L3H1', 'L5H0']) and/or layer=<index> "
            "for every head of a layer."
        )
    return tuple(sorted(dict.fromkeys(chosen)))
