"""Readers: what `circuitlab.collector.collect` does with each batch's activations.

A reader names the sites it reads (and whether it needs logits), folds in one
`CapturedBatch` at a time (``update``), combines with a reader of the same settings that saw
other batches (``merge``: other shards of the data set, other processes), and gives its answer
(``result``). Results never depend on how the data was batched, sorted or sharded: readers that
keep per-prompt values return them in data order; readers that reduce accumulate in float64.

| reader | result |
| --- | --- |
| `Keep` | the activation at each prompt's read position [prompt, ...] (every token: padded) |
| `Logits` | logits at the read positions [prompt, d_vocab] (or chosen columns, or mapped) |
| `Mean` | mean activation over every read position [...] (float64) |
| `GroupMean` | mean activation per group of prompts [group, ...] (float64) |
| `Moments` | `MomentStatistics`: variance and sparsity (near-zero fraction) with ε |
| `Cosine` | `CosineStatistics` between two sites (block input vs output) |
| `TokenCount` | number of positions read |
| `NextTokenLoss` | summed next-token negative log-likelihood and its token count |
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitlab.collector import CapturedBatch
from circuitlab.errors import InputError
from circuitlab.sites import Site
from circuitlab.statistics import CosineStatistics, MomentStatistics

__all__ = [
    "Cosine",
    "GroupMean",
    "GroupMoments",
    "Keep",
    "Logits",
    "Mean",
    "Moments",
    "NextTokenLoss",
    "PaddedActivations",
    "PositionMean",
    "Reader",
    "RowChunks",
    "SpanMean",
    "TokenCount",
]


class Reader:
    """Base of the readers: override `update`, `merge` and `result`.

    Attributes:
        sites: the sites whose activations the reader needs.
        needs_logits: whether the reader needs the logits at the read positions.
    """

    sites: tuple[Site | str, ...] = ()
    needs_logits: bool = False

    def update(self, batch: CapturedBatch) -> None:
        """Fold in one batch.

        Args:
            batch: the activations (and logits) captured for one batch of prompts.
        """
        raise NotImplementedError

    def merge(self, other: Any) -> None:
        """Fold in another reader of the same kind and settings that saw other batches.

        Args:
            other: the reader to fold in (it is left as it was).
        """
        raise NotImplementedError

    def result(self) -> Any:
        """The answer over every batch folded in so far."""
        raise NotImplementedError

    def _check_kind(self, other: Any) -> None:
        if type(other) is not type(self):
            raise InputError(f"Cannot merge a {type(other).__name__} into a {type(self).__name__}.")


class PaddedActivations(NamedTuple):
    """Activations at every position [prompt, pos, ...] and each prompt's length (positions
    at or past it are padding and hold no meaningful value)."""

    values: Tensor
    lengths: Int[Tensor, " prompt"]


class RowChunks(Reader):
    """Base of readers that keep one value per prompt and return them in data order."""

    def __init__(self) -> None:
        self._rows: list[Tensor] = []
        self._values: list[Tensor] = []

    def keep(self, rows: Int[Tensor, " batch"], values: Tensor) -> None:
        """Keep ``values`` [batch, ...] of the data set's ``rows``.

        Args:
            rows: each value's row (prompt index) in the data set [batch].
            values: one value per row [batch, ...].
        """
        self._rows.append(rows)
        self._values.append(values)

    def merge(self, other: Any) -> None:
        """Fold in another `RowChunks` of the same settings that saw other batches.

        Args:
            other: the reader to fold in.
        """
        self._check_kind(other)
        self._rows.extend(other._rows)
        self._values.extend(other._values)

    def ordered(self) -> tuple[Int[Tensor, " n"], list[Tensor]]:
        """Every kept row in ascending order, and the permutation of the chunks' rows."""
        if not self._rows:
            raise InputError("The reader has seen no batch yet.")
        rows = torch.cat(self._rows)
        order = torch.argsort(rows)
        return order, self._values

    def result(self) -> Any:
        """The kept values of every row, concatenated in data order [prompt, ...]."""
        order, chunks = self.ordered()
        return torch.cat(chunks)[order.to(chunks[0].device)]


class Keep(RowChunks):
    """Keep the activation at ``site`` for every prompt.

    Result: [prompt, ...] at each prompt's read position, or with ``positions="all"`` a
    `PaddedActivations` ([prompt, pos, ...] and the lengths; values past a prompt's length
    are meaningless).

    Args:
        site: the site read.
    """

    def __init__(self, site: Site | str) -> None:
        super().__init__()
        self.sites = (site,)
        self._lengths: list[Tensor] = []

    def update(self, batch: CapturedBatch) -> None:
        """Fold in one batch.

        Args:
            batch: the activations (and logits) captured for one batch of prompts.
        """
        value = batch[self.sites[0]]
        if batch.every_token:
            self._lengths.append(batch.tokens.lengths.cpu())
        self.keep(batch.rows, value)

    def merge(self, other: Any) -> None:
        """Fold in another `Keep` of the same settings that saw other batches.

        Args:
            other: the reader to fold in.
        """
        super().merge(other)
        self._lengths.extend(other._lengths)

    def result(self) -> Tensor | PaddedActivations:
        """The kept activations in data order (a `PaddedActivations` for every-token reads)."""
        if not self._lengths:
            return super().result()
        order, chunks = self.ordered()
        width = max(chunk.shape[1] for chunk in chunks)
        padded = [
            torch.nn.functional.pad(chunk, (0, 0) * (chunk.dim() - 2) + (0, width - chunk.shape[1]))
            for chunk in chunks
        ]
        values = torch.cat(padded)[order.to(padded[0].device)]
        return PaddedActivations(values, torch.cat(self._lengths)[order])


class Logits(RowChunks):
    """Keep the logits at each prompt's read position.

    Args:
        columns: keep only these token ids' logits (e.g. label words).
        transform: apply to each batch's logits first: ``transform(logits, rows)`` → one
            value per row (e.g. a metric), so the [prompt, d_vocab] logits are never held.

    Result: [prompt, d_vocab], [prompt, columns] or whatever ``transform`` returns per row.
    """

    needs_logits = True

    def __init__(
        self,
        columns: Sequence[int] | Tensor | None = None,
        transform: Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.columns = None if columns is None else torch.as_tensor(columns, dtype=torch.long)
        self.transform = transform

    def update(self, batch: CapturedBatch) -> None:
        """Fold in one batch.

        Args:
            batch: the activations (and logits) captured for one batch of prompts.
        """
        logits = batch.logits
        assert logits is not None
        if self.columns is not None:
            if (
                len(self.columns)
                and not 0 <= int(self.columns.min()) <= int(self.columns.max()) < logits.shape[-1]
            ):
                raise InputError(
                    f"Logits columns must be token ids in 0 .. {logits.shape[-1] - 1}, got "
                    f"{self.columns.tolist()}."
                )
            logits = logits[..., self.columns.to(logits.device)]
        if self.transform is not None:
            logits = self.transform(logits, batch.rows)
        self.keep(batch.rows, logits)


class Mean(Reader):
    """Mean activation at ``site`` over every read position (every real token with
    ``positions="all"``), accumulated in float64. Result: [...] float64.

    Args:
        site: the site read.
    """

    def __init__(self, site: Site | str) -> None:
        self.sites = (site,)
        self.total: Tensor | float = 0.0
        self.count = 0

    def update(self, batch: CapturedBatch) -> None:
        """Fold in one batch.

        Args:
            batch: the activations (and logits) captured for one batch of prompts.
        """
        values = batch.read(self.sites[0])
        self.total = self.total + values.sum(dim=0, dtype=torch.float64)
        self.count += values.shape[0]

    def merge(self, other: Any) -> None:
        """Fold in another `Mean` of the same settings that saw other batches.

        Args:
            other: the reader to fold in.
        """
        self._check_kind(other)
        self.total = self.total + other.total
        self.count += other.count

    def result(self) -> Float[Tensor, "..."]:
        """The mean activation over every read position [...] (float64)."""
        if not self.count:
            raise InputError("The reader has seen no position yet.")
        assert isinstance(self.total, Tensor)
        return self.total / self.count


class PositionMean(Reader):
    """Mean activation at ``site`` at each position over the prompts that reach it (needs
    ``positions="all"``), accumulated in float64.

    Result: the means [pos, ...] (float64, up to the longest prompt) and how many prompts
    reached each position [pos].

    Args:
        site: the site read.
    """

    def __init__(self, site: Site | str) -> None:
        self.sites = (site,)
        self.total: Tensor | None = None
        self.count: Tensor | None = None

    def update(self, batch: CapturedBatch) -> None:
        """Fold in one batch.

        Args:
            batch: the activations (and logits) captured for one batch of prompts.
        """
        if not batch.every_token:
            raise InputError("PositionMean reads every token: collect with positions='all'.")
        mask = batch.mask
        values = batch[self.sites[0]].to(torch.float64)
        values = values * mask.reshape(*mask.shape, *([1] * (values.dim() - 2)))
        self._add(values.sum(dim=0), mask.sum(dim=0).cpu())

    def _add(self, total: Tensor, count: Tensor) -> None:
        if self.total is None or self.count is None:
            self.total, self.count = total, count
            return
        width = max(len(self.count), len(count))
        self.total = _padded(self.total, width) + _padded(total, width)
        self.count = _padded(self.count, width) + _padded(count, width)

    def merge(self, other: Any) -> None:
        """Fold in another `PositionMean` of the same settings that saw other batches.

        Args:
            other: the reader to fold in.
        """
        self._check_kind(other)
        if other.total is not None:
            self._add(other.total, other.count)

    def result(self) -> tuple[Float[Tensor, "pos ..."], Int[Tensor, " pos"]]:
        """The per-position means [pos, ...] (float64) and the prompts reaching each [pos]."""
        if self.total is None or self.count is None:
            raise InputError("The reader has seen no position yet.")
        reached = self.count.clamp(min=1).to(self.total.device, torch.float64)
        means = self.total / reached.reshape(-1, *([1] * (self.total.dim() - 1)))
        return means, self.count


def _padded(values: Tensor, width: int) -> Tensor:
    """``values`` [pos, ...] padded with zeros to ``width`` positions."""
    extra = width - values.shape[0]
    if extra == 0:
        return values
    return torch.cat([values, values.new_zeros(extra, *values.shape[1:])])


def _checked_groups(groups: Sequence[int] | Tensor, n_groups: int | None) -> tuple[Tensor, int]:
    """One non-negative group index per prompt, and the number of groups."""
    indices = torch.as_tensor(groups, dtype=torch.long)
    if indices.dim() != 1 or len(indices) == 0 or int(indices.min()) < 0:
        raise InputError("groups must be one non-negative group index per prompt.")
    count = int(indices.max()) + 1 if n_groups is None else n_groups
    if int(indices.max()) >= count:
        raise InputError(f"A group index is >= n_groups = {count}.")
    return indices, count


def _check_rows(rows: Tensor, entries: int, what: str, item: str) -> None:
    """Refuse data-set rows past the ``entries`` a per-prompt argument holds."""
    if int(rows.max()) >= entries:
        raise InputError(
            f"{what} {entries} entries but the data set has more prompts; give one {item} per "
            f"prompt."
        )


class GroupMean(Reader):
    """Mean activation at ``site`` per group of prompts (e.g. per label), in float64.

    Args:
        site: the site read.
        groups: the group index of every prompt of the data set (0 .. n_groups − 1).
        n_groups: number of groups (default: ``max(groups) + 1``).

    Result: [group, ...] float64 (NaN for a group that got no position); the per-group counts
    are in ``counts``.
    """

    def __init__(
        self, site: Site | str, groups: Sequence[int] | Tensor, n_groups: int | None = None
    ) -> None:
        self.sites = (site,)
        self.groups, self.n_groups = _checked_groups(groups, n_groups)
        self.total: Tensor | None = None
        self.counts = torch.zeros(self.n_groups, dtype=torch.long)

    def update(self, batch: CapturedBatch) -> None:
        """Fold in one batch.

        Args:
            batch: the activations (and logits) captured for one batch of prompts.
        """
        values = batch.read(self.sites[0]).to(torch.float64)
        rows = batch.read_rows()
        _check_rows(rows, len(self.groups), "groups has", "group index")
        group = self.groups[rows]
        if self.total is None:
            self.total = values.new_zeros(self.n_groups, *values.shape[1:])
        self.total.index_add_(0, group.to(values.device), values)
        self.counts += torch.bincount(group, minlength=self.n_groups)

    def merge(self, other: Any) -> None:
        """Fold in another `GroupMean` of the same settings that saw other batches.

        Args:
            other: the reader to fold in.
        """
        self._check_kind(other)
        if other.total is None:
            return
        self.total = other.total.clone() if self.total is None else self.total + other.total
        self.counts += other.counts

    def result(self) -> Float[Tensor, "group ..."]:
        """The mean activation per group [group, ...] (float64; NaN for an empty group)."""
        if self.total is None:
            raise InputError("The reader has seen no position yet.")
        counts = self.counts.to(self.total.device, torch.float64)
        return self.total / counts.view(-1, *([1] * (self.total.dim() - 1)))


class Moments(Reader):
    """Variance and sparsity (fraction with ``|a| < epsilon``) of every scalar at ``site``
    over the read positions. Result: a `circuitlab.statistics.MomentStatistics`.

    Args:
        site: the site read.
        epsilon: the sparsity threshold: a scalar counts as near zero when ``|a| < epsilon``.
    """

    def __init__(self, site: Site | str, epsilon: float) -> None:
        self.sites = (site,)
        self.statistics = MomentStatistics(epsilon)

    def update(self, batch: CapturedBatch) -> None:
        """Fold in one batch.

        Args:
            batch: the activations (and logits) captured for one batch of prompts.
        """
        self.statistics.update(batch.read(self.sites[0]))

    def merge(self, other: Any) -> None:
        """Fold in another `Moments` of the same settings that saw other batches.

        Args:
            other: the reader to fold in.
        """
        self._check_kind(other)
        self.statistics.merge(other.statistics)

    def result(self) -> MomentStatistics:
        """The `MomentStatistics` over every read position."""
        return self.statistics


class GroupMoments(Reader):
    """`Moments` per group of prompts (e.g. truthful and hallucinated answers), optionally
    only from a position onwards in each prompt (e.g. the answer's tokens).

    Args:
        site: the site read.
        epsilon: the sparsity threshold.
        groups: the group index of every prompt of the data set (0 .. n_groups − 1).
        n_groups: number of groups (default: ``max(groups) + 1``).
        start: per prompt, the first position read (earlier tokens are skipped); needs
            ``positions="all"``.

    Result: one `circuitlab.statistics.MomentStatistics` per group (a list).
    """

    def __init__(
        self,
        site: Site | str,
        epsilon: float,
        groups: Sequence[int] | Tensor,
        n_groups: int | None = None,
        start: Sequence[int] | Tensor | None = None,
    ) -> None:
        self.sites = (site,)
        self.groups, self.n_groups = _checked_groups(groups, n_groups)
        self.start = None if start is None else torch.as_tensor(start, dtype=torch.long)
        if self.start is not None and self.start.shape != self.groups.shape:
            raise InputError(
                f"start needs one position per prompt ({len(self.groups)}); got "
                f"{tuple(self.start.shape)}."
            )
        self.statistics = [MomentStatistics(epsilon) for _ in range(self.n_groups)]

    def update(self, batch: CapturedBatch) -> None:
        """Fold in one batch.

        Args:
            batch: the activations (and logits) captured for one batch of prompts.
        """
        values = batch.read(self.sites[0])
        rows = batch.read_rows()
        _check_rows(rows, len(self.groups), "groups has", "group index")
        keep = torch.ones(len(rows), dtype=torch.bool)
        if self.start is not None:
            if not batch.every_token:
                raise InputError("GroupMoments(start=...) needs collect(positions='all').")
            position = batch.mask.nonzero()[:, 1].cpu()  # each read token's position, in order
            keep = position >= self.start[rows]
        group = self.groups[rows]
        for index, statistics in enumerate(self.statistics):
            chosen = keep & (group == index)
            if bool(chosen.any()):
                statistics.update(values[chosen.to(values.device)])

    def merge(self, other: Any) -> None:
        """Fold in another `GroupMoments` of the same settings that saw other batches.

        Args:
            other: the reader to fold in.
        """
        self._check_kind(other)
        for mine, theirs in zip(self.statistics, other.statistics, strict=True):
            mine.merge(theirs)

    def result(self) -> list[MomentStatistics]:
        """One `MomentStatistics` per group, in group order."""
        return self.statistics


class SpanMean(RowChunks):
    """Per prompt, the mean activation at ``site`` over its tokens from ``start[prompt]`` on
    (e.g. the answer after a question), for every-token reads (``positions="all"``).

    Result: [prompt, ...] (float32): one pooled vector per prompt, in data order.

    Args:
        site: the site read.
        start: per prompt of the data set, the first position averaged (earlier tokens are
            skipped).
    """

    def __init__(self, site: Site | str, start: Sequence[int] | Tensor) -> None:
        super().__init__()
        self.sites = (site,)
        self.start = torch.as_tensor(start, dtype=torch.long)
        if self.start.dim() != 1 or not len(self.start) or int(self.start.min()) < 0:
            raise InputError("start must be one non-negative position per prompt.")

    def update(self, batch: CapturedBatch) -> None:
        """Fold in one batch.

        Args:
            batch: the activations (and logits) captured for one batch of prompts.
        """
        if not batch.every_token:
            raise InputError("SpanMean needs collect(positions='all').")
        values = batch.real(self.sites[0]).float()
        rows = batch.read_rows()
        _check_rows(rows, len(self.start), "start has", "start position")
        position = batch.mask.nonzero()[:, 1].cpu()
        keep = position >= self.start[rows]
        index = torch.repeat_interleave(torch.arange(len(batch.rows)), batch.tokens.lengths.cpu())[
            keep
        ]
        sums = values.new_zeros(len(batch.rows), *values.shape[1:])
        sums.index_add_(0, index.to(values.device), values[keep.to(values.device)])
        counts = torch.bincount(index, minlength=len(batch.rows))
        if bool((counts == 0).any()):
            row = int(batch.rows[int((counts == 0).nonzero()[0])])
            raise InputError(
                f"Prompt {row} has no token at or after its start position "
                f"{int(self.start[row])}; the span to average is empty."
            )
        shape = (-1, *([1] * (values.dim() - 1)))
        self.keep(batch.rows, sums / counts.to(values.device, values.dtype).view(shape))


class Cosine(Reader):
    """Cosine between two sites' vectors at each read position (a block's input and output).
    Result: a `circuitlab.statistics.CosineStatistics`.

    Args:
        first: the first site (e.g. a block's input).
        second: the second site (e.g. the block's output), of the same width as ``first``.
    """

    def __init__(self, first: Site | str, second: Site | str) -> None:
        self.sites = (first, second)
        self.statistics = CosineStatistics()

    def update(self, batch: CapturedBatch) -> None:
        """Fold in one batch.

        Args:
            batch: the activations (and logits) captured for one batch of prompts.
        """
        self.statistics.update(batch.read(self.sites[0]), batch.read(self.sites[1]))

    def merge(self, other: Any) -> None:
        """Fold in another `Cosine` of the same settings that saw other batches.

        Args:
            other: the reader to fold in.
        """
        self._check_kind(other)
        self.statistics.merge(other.statistics)

    def result(self) -> CosineStatistics:
        """The `CosineStatistics` over every read position."""
        return self.statistics


class TokenCount(Reader):
    """Number of positions read (real tokens with ``positions="all"``). Result: an int."""

    def __init__(self) -> None:
        self.count = 0

    def update(self, batch: CapturedBatch) -> None:
        """Fold in one batch.

        Args:
            batch: the activations (and logits) captured for one batch of prompts.
        """
        self.count += batch.n_read

    def merge(self, other: Any) -> None:
        """Fold in another `TokenCount` of the same settings that saw other batches.

        Args:
            other: the reader to fold in.
        """
        self._check_kind(other)
        self.count += other.count

    def result(self) -> int:
        """The number of positions read."""
        return self.count


class NextTokenLoss(Reader):
    """Summed negative log-likelihood (nats, float64) of every real next token
    (``positions="all"`` only), or with ``start`` (one position per prompt) of the tokens from
    ``start[prompt]`` on (e.g. the response after an instruction).
    Result: ``(nll_sum, tokens)``.

    Args:
        start: per prompt of the data set, the position of the first scored token (>= 1);
            ``None``: every real next token is scored.
    """

    needs_logits = True

    def __init__(self, start: Sequence[int] | Tensor | None = None) -> None:
        self.nll_sum = 0.0
        self.count = 0
        self.start = None if start is None else torch.as_tensor(start, dtype=torch.long)
        if self.start is not None and (
            self.start.dim() != 1 or not len(self.start) or int(self.start.min()) < 1
        ):
            raise InputError("start must be one position >= 1 per prompt (the first scored token).")

    def update(self, batch: CapturedBatch) -> None:
        """Fold in one batch.

        Args:
            batch: the activations (and logits) captured for one batch of prompts.
        """
        if not batch.every_token or batch.logits is None:
            raise InputError("NextTokenLoss reads every token: collect with positions='all'.")
        targets = batch.tokens.input_ids[:, 1:]
        mask = batch.tokens.attention_mask[:, 1:].bool()
        if self.start is not None:
            rows = batch.rows
            _check_rows(rows, len(self.start), "start has", "start position")
            target_position = torch.arange(1, targets.shape[1] + 1, device=mask.device)
            mask = mask & (target_position[None, :] >= self.start[rows].to(mask.device)[:, None])
        losses = torch.nn.functional.cross_entropy(
            batch.logits[:, :-1].float().flatten(0, 1), targets.flatten(), reduction="none"
        ).view_as(targets)
        self.nll_sum += float(losses[mask].double().sum())
        self.count += int(mask.sum())

    def merge(self, other: Any) -> None:
        """Fold in another `NextTokenLoss` of the same settings that saw other batches.

        Args:
            other: the reader to fold in.
        """
        self._check_kind(other)
        self.nll_sum += other.nll_sum
        self.count += other.count

    def result(self) -> tuple[float, int]:
        """``(nll_sum, tokens)``: the summed negative log-likelihood (nats) and tokens scored."""
        return self.nll_sum, self.count
