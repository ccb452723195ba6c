"""The one streaming collector: a data set through the model, batch by batch, into readers.

Every analysis that reads activations or logits over a data set runs through `collect`:

1. `plan_batches` tokenizes the data once and cuts it into padded batches of similar length
   (sorted by length, so little padding), each knowing which prompts (rows) it holds.
2. Each batch runs one forward pass with interventions active on the model in force. A prefix
   every row shares runs once (`circuitlab.prefix.SharedPrefix`) when only chosen positions are
   read; the unembedding runs at the read positions only (``logits_to_keep``).
3. The activations at the readers' sites, at the requested positions (each prompt's last token,
   chosen positions, or every real token), and the logits there, are handed to every reader
   as a `CapturedBatch`. Readers reduce them (`circuitlab.readers`: keep, mean, per-group mean,
   moments, cosines, logits, ...) and merge: two readers that saw different batches combine
   into one that saw both, so shards of a data set (``shard=``, one per process) give the same
   result as one pass. Under ``torchrun`` the batches are shared out and the readers merged
   across the processes automatically (`circuitlab.distributed`).

Example:
    >>> from circuitlab import sites
    >>> from circuitlab.readers import Keep, Logits, Mean
    >>> out = collect(model, prompts, {"z": Keep(sites.z(3)), "logits": Logits()})
    >>> out["z"].shape                                   # [prompt, head, d_head] at last token
    >>> collect(model, texts, {"mean": Mean(sites.resid_post(5))}, positions="all")["mean"]
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from circuitlab import distributed as distributed_ranks
from circuitlab.checks import check_prompts, checked_arguments
from circuitlab.errors import InputError
from circuitlab.positions import Positions, resolve_positions
from circuitlab.prefix import SharedPrefix
from circuitlab.progress import progress_bar
from circuitlab.sites import Site, hook_name_of
from circuitlab.tokenization import TokenBatch

if TYPE_CHECKING:
    from circuitlab.model import ModelHandle
    from circuitlab.readers import Reader

__all__ = [
    "EVERY_TOKEN",
    "CapturedBatch",
    "Data",
    "PlannedBatch",
    "ReadPositions",
    "collect",
    "plan_batches",
]

EVERY_TOKEN = "all"
"""``positions=EVERY_TOKEN`` reads every real (non-padding) token of every prompt."""

Data = str | Sequence[str] | TokenBatch
"""One text, several texts, or an already tokenized (right-padded) batch of the whole set."""

ReadPositions = Positions | Literal["all"]
"""``None``: each prompt's last real token; an int or one int per prompt: chosen positions
(negative counts back from the last real token); ``"all"``: every real token."""


@dataclass(frozen=True)
class PlannedBatch:
    """One batch of a plan: which prompts it holds and their tokens.

    Attributes:
        rows: index of each row's prompt in the data set [batch] (CPU).
        tokens: the rows' tokens, right-padded to the longest of them.
        positions: the read position of each row [batch], or ``None`` for every real token.
    """

    rows: Int[Tensor, " batch"]
    tokens: TokenBatch
    positions: Int[Tensor, " batch"] | None


def _tokenized(model: ModelHandle, data: Data) -> TokenBatch:
    if isinstance(data, TokenBatch):
        if len(data) == 0:
            raise InputError("The token batch has no rows. Pass at least one prompt.")
        empty = (data.lengths == 0).nonzero().flatten().tolist()
        if empty:
            raise InputError(
                f"Row {empty[0]} of the token batch is all padding (its attention mask has no "
                f"real token). Drop empty rows or give them real text."
            )
        return data
    return model.tokenize(check_prompts(data))


@checked_arguments
def plan_batches(
    model: ModelHandle,
    data: Data,
    *,
    batch_size: int = 8,
    positions: ReadPositions = None,
    sort: bool = True,
    equal_lengths: bool = False,
    shard: tuple[int, int] | None = None,
) -> list[PlannedBatch]:
    """Tokenize ``data`` once and cut it into batches.

    Args:
        model: the model handle (its tokenizer and BOS policy).
        data: texts or a tokenized batch of the whole data set.
        batch_size: most prompts per batch (≥ 1).
        positions: the read positions (see `ReadPositions`); checked against every prompt.
        sort: group prompts of similar length (stable sort by length); else keep data order.
        equal_lengths: never put prompts of different lengths in one batch (no padding at all,
            as greedy decoding needs).
        shard: ``(index, count)``: only every ``count``-th batch from ``index`` (one process's
            share of the data set; the shards' readers merge into the full result).

    Returns:
        The batches, each trimmed to its longest row.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer of at least 1, got {batch_size!r}.")
    full = _tokenized(model, data)
    read: Tensor | None = None
    if not (isinstance(positions, str) and positions == EVERY_TOKEN):
        if isinstance(positions, str):
            raise InputError(
                f"Unknown positions {positions!r}: use None (last token), an int, one int per "
                f"prompt, or {EVERY_TOKEN!r} (every real token)."
            )
        read = resolve_positions(full, positions)
    lengths = full.lengths.cpu()
    order = (
        torch.argsort(lengths, stable=True) if sort or equal_lengths else torch.arange(len(full))
    )
    groups = _cut(order, lengths, batch_size, equal_lengths)
    if shard is not None:
        if not (isinstance(shard, tuple) and len(shard) == 2):
            raise InputError(f"shard must be (index, count), got {shard!r}.")
        index, count = shard
        if not (0 <= index < count):
            raise InputError(f"shard must be (index, count) with 0 <= index < count, got {shard}.")
        groups = groups[index::count]
    plan = []
    for rows in groups:
        width = int(lengths[rows].max())
        tokens = TokenBatch(
            full.input_ids[rows, :width],
            full.attention_mask[rows, :width],
            None if full.prompts is None else tuple(full.prompts[int(i)] for i in rows),
        )
        plan.append(PlannedBatch(rows, tokens, None if read is None else read[rows]))
    return plan


def _cut(
    order: Int[Tensor, " n"], lengths: Int[Tensor, " n"], batch_size: int, equal_lengths: bool
) -> list[Tensor]:
    if not equal_lengths:
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    groups: list[Tensor] = []
    sorted_lengths = lengths[order]
    for length in torch.unique_consecutive(sorted_lengths).tolist():
        members = order[sorted_lengths == length]
        groups.extend(members[s : s + batch_size] for s in range(0, len(members), batch_size))
    return groups


@dataclass
class CapturedBatch:
    """What one forward pass hands the readers.

    Attributes:
        rows: index of each row's prompt in the data set [batch] (CPU).
        tokens: the batch's tokens (on the model's device).
        positions: each row's read position [batch], or ``None`` when every real token is read.
        activations: hook name → activation, [batch, ...] at the read positions, or the
            whole [batch, pos, ...] when every token is read (padding positions included:
            use `real`).
        logits: logits at the read positions [batch, d_vocab] ([batch, pos, d_vocab] for every
            token), or ``None`` when no reader asked for them.
    """

    rows: Int[Tensor, " batch"]
    tokens: TokenBatch
    positions: Int[Tensor, " batch"] | None
    activations: dict[str, Tensor]
    logits: Tensor | None
    _real: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def every_token(self) -> bool:
        """Whether every real token was read (else one position per row)."""
        return self.positions is None

    @property
    def mask(self) -> Bool[Tensor, "batch pos"]:
        """True on real tokens."""
        return self.tokens.attention_mask.bool()

    @property
    def n_read(self) -> int:
        """Positions read in this batch: real tokens, or one per row."""
        return int(self.tokens.attention_mask.sum()) if self.every_token else len(self.rows)

    def __getitem__(self, site: Site | str) -> Tensor:
        """The activation at ``site`` ([batch, ...] at the read positions)."""
        return self.activations[hook_name_of(site)]

    def read(self, site: Site | str) -> Float[Tensor, "read ..."]:
        """The activation at every read position, flattened: [real tokens or rows, ...].

        Args:
            site: the site read (it must be among the sites captured).
        """
        return self.real(site) if self.every_token else self[site]

    def real(self, site: Site | str) -> Float[Tensor, "tokens ..."]:
        """The activation at every real token, [tokens, ...] (every-token reads only).

        Args:
            site: the site read (it must be among the sites captured).
        """
        if not self.every_token:
            raise InputError("real() needs positions='all'; this batch read one position a row.")
        name = hook_name_of(site)
        if name not in self._real:
            self._real[name] = self.activations[name][self.mask]
        return self._real[name]

    def read_rows(self) -> Int[Tensor, " read"]:
        """The data-set row of every read position (matches `read`'s first axis; CPU)."""
        if not self.every_token:
            return self.rows
        return self.rows.repeat_interleave(self.tokens.lengths.cpu())


class _Recorder:
    """Capture hooks: each keeps its activation at the current batch's read positions."""

    def __init__(self) -> None:
        self.values: dict[str, Tensor] = {}
        self.rows: Tensor | None = None
        self.positions: Tensor | None = None
        self.detach = True

    def start(self, positions: Tensor | None, detach: bool) -> None:
        self.values = {}
        self.positions = positions
        self.detach = detach
        if positions is not None:
            self.rows = torch.arange(len(positions), device=positions.device)

    def hook(self, name: str) -> tuple[str, Any]:
        def record(activation: Tensor, hook: Any) -> Tensor | None:
            value = activation.detach() if self.detach else activation
            if self.positions is not None:
                value = value[self.rows, self.positions]
            self.values[name] = value
            # With gradients, hand the recorded tensor on: some hook points pass hooks a
            # reshaped copy (hook_z), which only lies on the graph if it is what flows on.
            return None if self.detach else activation

        return name, record


@checked_arguments
def collect(
    model: ModelHandle,
    data: Data,
    readers: Mapping[str, Reader],
    *,
    positions: ReadPositions = None,
    batch_size: int = 8,
    sort: bool = True,
    share_prefix: bool = True,
    grad: bool = False,
    shard: tuple[int, int] | None = None,
    distributed: bool | None = None,
    progress: bool | None = False,
    desc: str = "collecting",
) -> dict[str, Any]:
    """Stream ``data`` through ``model`` once and fold every batch into each reader.

    Args:
        model: the model handle (interventions active on it apply to every pass).
        data: texts, or a tokenized batch of the whole data set.
        readers: name → `circuitlab.readers.Reader`; each is updated in place (merge one
            shard's readers into another's with ``reader.merge(other)``).
        positions: where to read (see `ReadPositions`); default each prompt's last token.
        batch_size: prompts per forward pass.
        sort: batch prompts of similar length together (results come back in data order
            either way).
        share_prefix: run a prefix every row of a batch shares once (only when reading chosen
            positions without gradients, and no active intervention depends on absolute
            positions). Pass False when hooks of your own (``model.hooks``) depend on
            positions: they see only the tokens after the prefix.
        grad: keep the autograd graph (activations and logits are not detached; the whole
            prompt runs, so gradients flow through every token).
        shard: ``(index, count)``: run only this process's share of the batches (the caller
            merges the shards' readers).
        distributed: split the batches over the processes of a ``torch.distributed`` group
            (`circuitlab.distributed`: a group the caller initialised, or one created here
            when ``torchrun`` launched the process) and merge every process's readers, so
            every process returns the whole result. ``None`` (default): whenever such a group
            of more than one process exists, the pass has more than one batch, and neither
            ``shard`` nor ``grad`` is given; ``False``: this process runs every batch itself;
            ``True``: require a group. Every process must make the same sharded calls.
        progress: show a progress bar (on rank 0 only, under a process group).
        desc: the progress bar's label.

    Returns:
        ``{name: reader.result()}``.
    """
    if not isinstance(readers, Mapping) or not readers:
        raise InputError(
            "collect needs a dict of named readers, e.g. {'logits': Logits()}; got "
            f"{type(readers).__name__} {readers!r}."
        )
    full = _tokenized(model, data)
    plan = plan_batches(
        model, full, batch_size=batch_size, positions=positions, sort=sort, shard=shard
    )
    # one batch has nothing to share: it runs whole on every process (and a single-batch
    # call, like model.logits, stays safe to make on one process only)
    parallel = _data_parallel(model, distributed, shard, grad, len(plan))
    if parallel:
        plan = plan[distributed_ranks.rank() :: distributed_ranks.world_size()]
        if not distributed_ranks.is_writer():
            progress = False
    names = list(
        dict.fromkeys(hook_name_of(s) for reader in readers.values() for s in reader.sites)
    )
    wants_logits = any(reader.needs_logits for reader in readers.values())
    every_token = isinstance(positions, str)
    shared = SharedPrefix(model) if share_prefix and not every_token and not grad else None
    recorder = _Recorder()
    with model.hooks([recorder.hook(name) for name in names]), torch.set_grad_enabled(grad):
        for captured in _passes(model, plan, recorder, shared, wants_logits, grad, progress, desc):
            for reader in readers.values():
                reader.update(captured)
    if parallel:
        check = _pass_fingerprint(full, positions, batch_size, sort)
        distributed_ranks.merge_across_ranks(
            readers, batches=len(plan), device=model.device, check=check
        )
    return {name: reader.result() for name, reader in readers.items()}


def _data_parallel(
    model: ModelHandle,
    distributed: bool | None,
    shard: tuple[int, int] | None,
    grad: bool,
    batches: int,
) -> bool:
    """Whether this pass splits its ``batches`` over a process group (see `collect`); creates
    the group on the first pass that does, under torchrun."""
    if distributed is False:
        return False
    if distributed is True and (shard is not None or grad):
        raise InputError(
            "collect(distributed=True) cannot be combined with shard= (it picks each "
            "process's shard itself) or grad=True (gradient passes run whole on every "
            "process). Drop one of them."
        )
    if shard is not None or grad:
        return False
    if distributed is True and not distributed_ranks.in_process_group():
        raise InputError(
            "collect(distributed=True) needs a torch.distributed process group: launch the "
            "script with torchrun (e.g. torchrun --nproc_per_node 2 script.py) or call "
            "torch.distributed.init_process_group first; or pass distributed=None."
        )
    return batches > 1 and distributed_ranks.initialize(model.device)


def _pass_fingerprint(
    full: TokenBatch, positions: ReadPositions, batch_size: int, sort: bool
) -> str:
    """What every process of a data-parallel pass must agree on, as a short digest."""
    digest = hashlib.sha256()
    for tensor in (full.input_ids, full.attention_mask):
        digest.update(tensor.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    if isinstance(positions, Tensor):
        positions = positions.tolist()
    digest.update(repr((positions, batch_size, sort, tuple(full.input_ids.shape))).encode())
    return digest.hexdigest()


def _passes(
    model: ModelHandle,
    plan: list[PlannedBatch],
    recorder: _Recorder,
    shared: SharedPrefix | None,
    wants_logits: bool,
    grad: bool,
    progress: bool | None,
    desc: str,
) -> Iterator[CapturedBatch]:
    for planned in progress_bar(plan, desc=desc, unit="batch", progress=progress):
        tokens = planned.tokens.to(model.device)
        positions = None if planned.positions is None else planned.positions.to(model.device)
        offset, kwargs = 0, {}
        if shared is not None:
            offset, kwargs = shared.split(tokens, positions)
        local = None if positions is None else positions - offset
        recorder.start(local, detach=not grad)
        inverse = local
        if not wants_logits:
            if model.supports_logits_to_keep:
                kwargs["logits_to_keep"] = 1  # nobody reads logits: unembed one position
        elif local is not None and model.supports_logits_to_keep:
            kept, inverse = torch.unique(local, return_inverse=True)
            kwargs["logits_to_keep"] = kept
        logits = model.bridge(
            tokens.input_ids[:, offset:], attention_mask=tokens.attention_mask, **kwargs
        )
        if not wants_logits:
            logits = None
        elif local is not None:
            logits = model.check_finite(
                logits[torch.arange(len(tokens), device=logits.device), inverse]
            )
        else:
            logits = model.check_finite(logits)
        yield CapturedBatch(planned.rows, tokens, positions, recorder.values, logits)
