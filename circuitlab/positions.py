"""Choosing the position to read in each prompt, counted on real tokens."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from circuitlab.errors import InputError
from circuitlab.tokenization import TokenBatch

__all__ = ["Positions", "resolve_positions"]

Positions = int | Sequence[int] | None
"""``None``: each prompt's last real token; an int: the same position in every prompt
(negative counts back from each prompt's last real token, ``-1`` being that token); a list:
one such position per prompt."""


def _position_list(positions: Any) -> Int[Tensor, " batch"]:
    """One position per prompt as a tensor; a clear error for anything else."""
    if isinstance(positions, Tensor) and not positions.is_floating_point() and positions.ndim == 1:
        return positions.to(torch.long).cpu()
    items = list(positions) if isinstance(positions, (list, tuple, range)) else None
    if items is None or not all(
        isinstance(item, numbers.Integral) and not isinstance(item, bool) for item in items
    ):
        raise InputError(
            f"positions must be None (each last token), an int for every prompt, or one int per "
            f"prompt; got {type(positions).__name__} {positions!r:.60}."
        )
    return torch.tensor([int(item) for item in items], dtype=torch.long)


def resolve_positions(batch: TokenBatch, positions: Positions) -> Int[Tensor, " batch"]:
    """Absolute position of the chosen token in each row of a right-padded batch.

    Args:
        batch: a right-padded batch.
        positions: ``None`` for each row's last real token, one int for every row, or one
            int per row; negative values count back from the row's last real token (-1).
    """
    lengths = batch.lengths
    if positions is None:
        return lengths - 1
    if isinstance(positions, numbers.Integral) and not isinstance(positions, bool):
        requested = torch.full_like(lengths, int(positions))
    else:
        requested = _position_list(positions)
        if requested.shape != lengths.shape:
            raise InputError(
                f"Got {requested.numel()} positions for {lengths.numel()} prompts. Pass one "
                f"position per prompt, a single int for all, or None for each last token."
            )
    absolute = torch.where(requested < 0, lengths + requested, requested)
    bad = ((absolute < 0) | (absolute >= lengths)).nonzero().flatten().tolist()
    if bad:
        row = bad[0]
        raise InputError(
            f"Position {int(requested[row])} is out of range for prompt {row}, which has "
            f"{int(lengths[row])} tokens (valid: 0 .. {int(lengths[row]) - 1}, or -1 .. "
            f"-{int(lengths[row])} counted from its last token)."
        )
    return absolute
