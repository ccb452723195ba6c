"""Reusing the keys and values of a prefix that every prompt of a batch shares.

K-shot prompts put the same demonstrations in front of every query, so most of each prompt
is the same tokens. `SharedPrefix` runs that common prefix once (batch of one), keeps its
key/value cache, and lets each batch run only the tokens after it. Outputs at the suffix
positions are those of the full forward pass (same tokens, same positions, same masks);
the tests check this against full passes on the real models.

The prefix is found on token ids, never on text, so tokenizer merges across the boundary
cannot make it wrong. Edits that act the same at every position (pruning, zero/mean ablation,
scaling, steering without a position filter) keep sharing exact: the prefix cache is computed
under them. Sharing is skipped (full forward passes run) when an active edit is restricted to
positions, resamples, patches or takes a position-matched mean, since those count from the
start of the prompt.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Int
from torch import Tensor

from circuitlab.hf_compat import crop_kv_cache, repeat_kv_cache
from circuitlab.tokenization import TokenBatch

if TYPE_CHECKING:
    from circuitlab.model import ModelHandle

__all__ = ["MIN_SHARED_PREFIX", "SharedPrefix", "common_prefix_length"]

MIN_SHARED_PREFIX = 16
"""Shortest common prefix (tokens) worth caching; shorter ones run as full passes."""


def common_prefix_length(batch: TokenBatch, positions: Int[Tensor, " batch"] | None = None) -> int:
    """Number of leading tokens shared by every row, stopping before any row's read position.

    Args:
        batch: a right-padded batch.
        positions: the position read in each row (default: each row's last real token). The
            prefix never reaches a read position, so every row keeps at least that token.

    Returns:
        The shared prefix length in tokens (0 when the rows differ from the first token).
    """
    limit = int((batch.last_positions if positions is None else positions).min())
    if limit <= 0:
        return 0
    ids = batch.input_ids[:, :limit]
    same = (ids == ids[:1]).all(dim=0)
    return int(same.long().cumprod(dim=0).sum())


class SharedPrefix:
    """A key/value cache of one shared prefix, reused across the batches of one prompt list.

    `circuitlab.collector.collect` and `circuitlab.decoding.greedy_decode` use one per call:
    ``split`` tells how many leading tokens of a batch the cache covers and gives the forward
    keyword arguments that serve them, so only the tokens after them run.

    Args:
        model: the model whose forward passes the cache serves.
        min_length: shortest common prefix (tokens) worth caching; shorter ones run in full.
    """

    def __init__(self, model: ModelHandle, *, min_length: int = MIN_SHARED_PREFIX) -> None:
        self.model = model
        self.min_length = min_length
        self._ids: Tensor | None = None
        self._cache: Any = None
        self._edits: tuple[Any, ...] = ()

    def _same_edits(self) -> bool:
        """Whether the interventions in force are the very ones the cache was made under.

        The resolved objects themselves are kept (not their ids, which a freed object hands
        on to the next one), so a cache is never served under other interventions.
        """
        current = self._active()
        return len(current) == len(self._edits) and all(
            a is b for a, b in zip(current, self._edits, strict=True)
        )

    def _active(self) -> tuple[Any, ...]:
        """The resolved interventions in force on the model."""
        return self.model.active_interventions

    def _enabled(self) -> bool:
        """Sharing is exact unless an active edit depends on absolute positions."""
        return all(
            edit.positions is None and edit.resample is None and edit.positional is None
            for resolved in self._active()
            for edit in resolved.edits
        )

    def _cache_for(self, prefix: Int[Tensor, " pos"], batch_size: int) -> Any:
        """A fresh cache of ``prefix`` repeated ``batch_size`` times (computed once, copied)."""
        reusable = (
            self._ids is not None
            and self._same_edits()
            and len(self._ids) >= len(prefix)
            and torch.equal(self._ids[: len(prefix)], prefix)
        )
        cache = None
        if reusable:
            cache = copy.deepcopy(self._cache)
            if len(self._ids) > len(prefix) and not crop_kv_cache(cache, len(prefix)):
                cache = None  # e.g. sliding-window layers past their window: recompute
        if cache is None:
            computed = self.model.new_kv_cache()
            kwargs = {"logits_to_keep": 1} if self.model.supports_logits_to_keep else {}
            with torch.no_grad():  # only the keys and values matter: unembed one position
                self.model.forward_with_kv_cache(prefix[None], computed, **kwargs)
            self._ids, self._cache, self._edits = prefix.clone(), computed, self._active()
            cache = copy.deepcopy(computed)
        repeat_kv_cache(cache, batch_size)
        return cache

    def split_cache(
        self, batch: TokenBatch, positions: Int[Tensor, " batch"] | None = None
    ) -> tuple[int, Any]:
        """How many tokens of ``batch`` the cache covers, and a cache of them for every row.

        Returns ``(0, None)`` when sharing does not apply (short prefix, position-dependent
        edits): then run the full batch as usual. The cache is the caller's to extend.

        Args:
            batch: a right-padded batch.
            positions: the position read in each row [batch] (default: each row's last real
                token); the cached prefix stops before it.
        """
        if not self._enabled():
            return 0, None
        length = common_prefix_length(batch, positions)
        if length < self.min_length:
            return 0, None
        return length, self._cache_for(batch.input_ids[0, :length], len(batch))

    def split(
        self, batch: TokenBatch, positions: Int[Tensor, " batch"] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """How many tokens of ``batch`` the cache covers, and the forward kwargs for the rest.

        Returns ``(0, {})`` when sharing does not apply (short prefix, position-dependent edits):
        then run the full batch as usual.

        Args:
            batch: a right-padded batch.
            positions: the position read in each row [batch] (default: each row's last real
                token); the cached prefix stops before it.
        """
        length, cache = self.split_cache(batch, positions)
        return (0, {}) if cache is None else (length, self.model.kv_cache_kwargs(cache))
