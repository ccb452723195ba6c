"""The logit lens: the next-token distribution read from the residual stream after each layer.

For the residual stream ``x`` at a layer (the embedding output, then each block's output),
the lens applies what the model applies to its last residual stream, on the model's own,
unmodified weights:

    logits(x) = softcap( norm(x) @ W_U + b_U ),   norm(x) = center(x) / s(x) * g + b,
    s(x) = sqrt(mean(center(x)^2) + eps)

``center`` subtracts the mean for LayerNorm and is the identity for RMSNorm; ``g`` is the
final norm's gain (``1 + weight`` for Gemma), ``b`` its bias (LayerNorm), ``softcap`` the
architecture's output softcapping ``c * tanh(z / c)`` where its config sets one.

The scale ``s(x)`` is recomputed on each layer's own residual stream. Dividing by the scale
the final norm cached during the forward pass (``ln_final.hook_scale``, the scale of the *last*
residual stream) is a known TransformerLens pitfall: earlier residual streams have other norms,
so their distributions come out too sharp or too flat, and even the ranking can change under
LayerNorm.

Every pass goes through `circuitlab.collector.collect` with a `LensReader`, which turns each
batch's residual streams into the kept statistics (top-k tokens, the targets' probabilities and
ranks) as it streams, so the [layer, pos, d_vocab] logits of a data set are never held.

Example:
    >>> lens = logit_lens(model, "The capital of France is", " Paris")
    >>> lens.layer_table()          # per layer: top-1 token, P(' Paris'), its rank
    >>> lens.plot()                 # layer x position heatmap of P(' Paris')
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitlab import sites
from circuitlab.checks import check_integer, check_prompts, checked_arguments
from circuitlab.collector import CapturedBatch, ReadPositions, collect
from circuitlab.errors import InputError
from circuitlab.lens.result import EMBED, LogitLens
from circuitlab.model import ModelHandle, Prompts
from circuitlab.readers import RowChunks
from circuitlab.sites import Site
from circuitlab.tokenization import TokenBatch
from circuitlab.weights import norm_bias, norm_gain, unembedding

__all__ = [
    "LayerChoice",
    "LensReader",
    "TargetTokens",
    "lens_logits",
    "lens_statistics",
    "logit_lens",
    "resolve_lens_layers",
]

LayerChoice = int | str | Sequence[int | str] | None
"""``None``: every row (the embedding output, then every block's output); a block index
``0 .. n_layers - 1`` (its output, ``resid_post``), ``"embed"`` (the embedding output,
``resid_pre`` of block 0), or a list of these."""

TargetTokens = str | int | Sequence[str | int] | None
"""Tokens whose probability and rank the lens follows: strings that are single tokens
(``" Paris"``) or token ids; ``None`` for none."""

_CHUNK_ELEMENTS = 1 << 24
"""Most logits one chunk of rows holds at once (64 MB in float32)."""
_FILL = (-1, 0.0, 0.0, 0.0, -1)
"""Padding of the kept statistics past a prompt's read positions (ids and ranks: -1)."""


def lens_logits(
    model: ModelHandle, residual: Float[Tensor, "... d_model"]
) -> Float[Tensor, "... d_vocab"]:
    """The logits the model would output if ``residual`` were its last residual stream.

    The final norm's scale is recomputed on ``residual`` itself (not the scale cached from
    the full forward pass), then the norm's gain and bias, the unembedding (and its bias) and
    any final-logit softcapping of the architecture apply, on the model's unmodified weights.

    Args:
        model: the model handle.
        residual: residual-stream vectors [..., d_model] (any leading shape).

    Returns:
        Logits [..., d_vocab] in float32 (nats before the softmax).

    Example:
        >>> site = sites.resid_post(5)
        >>> _, cache = model.run_with_cache("The capital of France is", names=[site])
        >>> residual = cache[site.hook_name]                # [batch, pos, d_model]
        >>> lens_logits(model, residual[0, -1]).softmax(-1)  # [d_vocab], after block 5
    """
    arch = model.arch
    final = arch.norm("final")
    if final is None:  # pragma: no cover - every supported family has a final norm
        raise InputError(f"{model.name} has no final norm to read the residual stream through.")
    x = residual.float()
    if arch.norm_type == "layernorm":
        x = x - x.mean(dim=-1, keepdim=True)
    normed = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + arch.norm_eps)
    normed = normed * norm_gain(model, final).float()
    bias = norm_bias(model, final)
    if bias is not None:
        normed = normed + bias.float()
    w_u, b_u = unembedding(model)
    logits = normed.to(w_u.dtype) @ w_u
    if b_u is not None:
        logits = logits + b_u
    logits = logits.float()
    cap = getattr(model.hf_model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def lens_statistics(
    model: ModelHandle,
    residual: Float[Tensor, "n d_model"],
    target_ids: Int[Tensor, " target"],
    k: int,
    chunk_rows: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """What the lens keeps of ``residual`` (rows of residual-stream vectors), chunk by chunk.

    ``chunk_rows`` rows are unembedded at a time (default: as many as fit 2^24 logits, 64 MB
    in float32), so memory stays bounded for any number of rows and any vocabulary.

    Args:
        model: the model handle.
        residual: residual-stream vectors [n, d_model], one per row.
        target_ids: token ids whose log-probability, logit and rank are kept [target].
        k: top tokens kept per row (≥ 1, at most the vocabulary size).
        chunk_rows: rows unembedded at once (default: as many as fit 2^24 logits).

    Returns:
        ``(top_ids [n, k], top_probs [n, k], target_logprobs [n, target],
        target_logits [n, target], target_ranks [n, target])``; probabilities in [0, 1],
        log-probabilities in nats, ranks count the tokens with a strictly larger logit
        (0 = the top token).
    """
    rows = chunk_rows or max(1, _CHUNK_ELEMENTS // model.d_vocab)
    parts = []
    for start in range(0, residual.shape[0], rows):
        logits = lens_logits(model, residual[start : start + rows])
        normaliser = logits.logsumexp(dim=-1, keepdim=True)
        top = logits.topk(k, dim=-1)
        chosen = logits[:, target_ids.to(logits.device)]
        ranks = [(logits > chosen[:, [t]]).sum(dim=-1) for t in range(chosen.shape[1])]
        parts.append(
            (
                top.indices,
                (top.values - normaliser).exp(),
                chosen - normaliser,
                chosen,
                torch.stack(ranks, dim=-1) if ranks else chosen.long(),
            )
        )
    return tuple(torch.cat(column) for column in zip(*parts, strict=True))  # type: ignore[return-value]


class LensReader(RowChunks):
    """A `circuitlab.readers.Reader` that turns each batch's residual streams at ``lens_sites``
    into logit-lens statistics as it streams (see `lens_statistics`; ``chunk_rows`` bounds
    the logits held at once).

    Result (data order; ``S`` = the most positions read in one prompt, 1 unless every token
    is read; entries past a prompt's ``lengths`` are padding): a dict with ``top_ids``,
    ``top_probs`` [prompt, S, layer, k], ``target_logprobs``, ``target_logits``,
    ``target_ranks`` [prompt, S, layer, target], ``positions`` [prompt, S] (token positions,
    -1 on padding) and ``lengths`` [prompt].

    Args:
        model: the model handle.
        lens_sites: the residual-stream sites read, one lens layer each, in model order.
        target_ids: token ids whose log-probability, logit and rank are kept.
        k: top tokens kept per prompt, position and layer (≥ 1).
        chunk_rows: rows unembedded at once (default: as many as fit 2^24 logits).
    """

    def __init__(
        self,
        model: ModelHandle,
        lens_sites: Sequence[Site],
        target_ids: Sequence[int] | Tensor = (),
        k: int = 5,
        chunk_rows: int | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.sites = tuple(lens_sites)
        self.target_ids = torch.as_tensor(target_ids, dtype=torch.long).reshape(-1)
        self.k = k
        self.chunk_rows = chunk_rows

    def update(self, batch: CapturedBatch) -> None:
        """Keep the lens statistics of one batch's residual streams.

        Args:
            batch: the batch the collector captured at ``lens_sites``.
        """
        # every layer's rows in one stream of chunks: the unembedding is read once per chunk
        residual = torch.stack([batch.read(site) for site in self.sites])
        statistics = lens_statistics(
            self.model, residual.flatten(0, 1), self.target_ids, self.k, self.chunk_rows
        )
        columns = [
            einops.rearrange(column, "(layer n) ... -> n layer ...", layer=len(self.sites)).cpu()
            for column in statistics
        ]
        lengths = batch.tokens.lengths.cpu()
        if batch.every_token:
            mask = batch.mask.cpu()
            width = mask.shape[1]
            columns = [_unflatten(column, mask, _FILL[i]) for i, column in enumerate(columns)]
            positions = torch.arange(width).expand(len(batch), width).masked_fill(~mask, -1)
            read = lengths
        else:
            columns = [column[:, None] for column in columns]
            positions = batch.positions.cpu()[:, None]  # type: ignore[union-attr]
            read = torch.ones_like(lengths)
        self.keep(batch.rows, (*columns, positions, read))

    def result(self) -> dict[str, Tensor]:
        """The kept statistics of every prompt seen, in data order (see the class docstring)."""
        order, chunks = self.ordered()
        width = max(chunk[-2].shape[1] for chunk in chunks)
        names = ("top_ids", "top_probs", "target_logprobs", "target_logits", "target_ranks")
        out = {}
        for index, name in enumerate(names):
            padded = [_pad_positions(chunk[index], width, _FILL[index]) for chunk in chunks]
            out[name] = torch.cat(padded)[order]
        out["positions"] = torch.cat([_pad_positions(c[-2], width, -1) for c in chunks])[order]
        out["lengths"] = torch.cat([chunk[-1] for chunk in chunks])[order]
        return out


def _unflatten(values: Tensor, mask: Tensor, fill: float) -> Tensor:
    """Values of every real token [tokens, ...] back to [batch, pos, ...] (``fill`` on padding)."""
    out = values.new_full((*mask.shape, *values.shape[1:]), fill)
    out[mask] = values
    return out


def _pad_positions(values: Tensor, width: int, fill: float = 0) -> Tensor:
    """``values`` [batch, S, ...] padded along S to ``width``."""
    extra = width - values.shape[1]
    if extra == 0:
        return values
    padding = values.new_full((values.shape[0], extra, *values.shape[2:]), fill)
    return torch.cat([values, padding], dim=1)


def resolve_lens_layers(model: ModelHandle, layers: LayerChoice) -> list[int]:
    """The depths the lens reads, in model order: 0 for the embedding output, ``l + 1`` for
    block ``l``'s output. A clear error for a layer that does not exist.

    Args:
        model: the model handle (its layer count bounds the block indices).
        layers: which rows (see `LayerChoice`); ``None`` for all ``n_layers + 1``.
    """
    n = model.n_layers
    if layers is None:
        return list(range(n + 1))
    items = [layers] if isinstance(layers, (str, numbers.Integral)) else list(layers)
    if not items:
        raise InputError(
            f"layers is empty. Pass None for every layer, 'embed', or block indices 0 .. {n - 1}."
        )
    depths = set()
    for item in items:
        if isinstance(item, str) and item == EMBED:
            depths.add(0)
        elif isinstance(item, numbers.Integral) and not isinstance(item, bool) and 0 <= item < n:
            depths.add(int(item) + 1)
        else:
            raise InputError(
                f"Layer {item!r} does not exist in {model.name}, which has {n} layers: pass "
                f"block indices 0 .. {n - 1} (the block's output) or {EMBED!r} (the embedding "
                f"output)."
            )
    return sorted(depths)


def _resolve_targets(model: ModelHandle, targets: TargetTokens) -> tuple[list[int], list[str]]:
    if targets is None:
        return [], []
    items = [targets] if isinstance(targets, (str, numbers.Integral)) else list(targets)
    ids, labels = [], []
    for item in items:
        if isinstance(item, str):
            ids.append(model.token_id(item, what="Target token"))
            labels.append(repr(item))
        elif isinstance(item, numbers.Integral) and not isinstance(item, bool):
            if not 0 <= item < model.d_vocab:
                raise InputError(
                    f"Target token id {item} is out of range for {model.name}'s vocabulary of "
                    f"{model.d_vocab}; pass an id in 0 .. {model.d_vocab - 1} or the token text."
                )
            ids.append(int(item))
            labels.append(repr(model.tokenizer.decode([int(item)])))
        else:
            raise InputError(
                f"A target must be a token string (' Paris') or a token id, got "
                f"{type(item).__name__} {item!r}."
            )
    return ids, labels


@checked_arguments
def logit_lens(
    model: ModelHandle,
    prompts: Prompts,
    targets: TargetTokens = None,
    *,
    positions: ReadPositions = None,
    layers: LayerChoice = None,
    k: int = 5,
    batch_size: int = 8,
    progress: bool | None = None,
) -> LogitLens:
    """The next-token distribution read from the residual stream after every layer.

    Each row reads one residual stream (the embedding output, labelled ``"embed"``, then the
    output of each block ``0 .. n_layers - 1``) through the final norm recomputed on it, the
    unembedding and any output softcapping (see `lens_logits`). The last block's row is the
    model's own output distribution. Interventions active on the model apply.

    Args:
        model: the model handle.
        prompts: prompt texts (or a tokenized batch).
        targets: tokens to follow (single-token strings such as ``" Paris"`` or ids), or None.
        positions: where to read: None (each prompt's last token), an int (negative counts
            back from the last token), one int per prompt, or ``"all"`` (every token).
        layers: which rows (see `LayerChoice`); default all ``n_layers + 1``.
        k: top tokens kept per prompt, position and layer (≥ 1).
        batch_size: prompts per forward pass.
        progress: progress bar (default: shown once the call runs past 2 s).

    Returns:
        A `LogitLens`: top-k tokens and probabilities, and each target's probability,
        log-probability, logit and rank, per prompt × read position × layer.

    Example:
        >>> lens = logit_lens(model, "The capital of France is", " Paris", positions="all")
        >>> lens.top(20)                    # [(' Paris', 0.61), ...] at the last token
        >>> lens.to_frame()                 # one row per prompt x position x layer
    """
    k = check_integer("k", k, minimum=1)
    if k > model.d_vocab:
        raise InputError(
            f"k = {k} is more than the {model.d_vocab} tokens of {model.name}'s vocabulary; "
            f"pass k between 1 and {model.d_vocab}."
        )
    check_integer("batch_size", batch_size, minimum=1)
    if isinstance(prompts, TokenBatch):
        batch, texts = prompts, tuple(prompts.prompts or ())
    else:
        texts = tuple(check_prompts(prompts))
        batch = model.tokenize(list(texts))
    depths = resolve_lens_layers(model, layers)
    target_ids, labels = _resolve_targets(model, targets)
    lens_sites = [sites.resid_pre(0) if d == 0 else sites.resid_post(d - 1) for d in depths]
    reader = LensReader(model, lens_sites, target_ids, k)
    kept: dict[str, Tensor] = collect(
        model,
        batch,
        {"lens": reader},
        positions=positions,
        batch_size=batch_size,
        progress=progress,
        desc="logit lens",
    )["lens"]
    return LogitLens(
        **kept,
        target_ids=tuple(target_ids),
        targets=tuple(labels),
        layers=tuple(EMBED if d == 0 else str(d - 1) for d in depths),
        tokens=_read_tokens(model, batch, kept["positions"], kept["lengths"]),
        vocabulary=_vocabulary(model, kept["top_ids"][kept["top_ids"] >= 0]),
        prompts=texts,
        model=model.name,
    )


def _read_tokens(
    model: ModelHandle, batch: TokenBatch, positions: Tensor, lengths: Tensor
) -> tuple[tuple[str, ...], ...]:
    """Each prompt's tokens (as text) at its read positions."""
    ids = batch.input_ids.cpu()
    rows = []
    for row, (where, count) in enumerate(zip(positions.tolist(), lengths.tolist(), strict=True)):
        chosen = ids[row, where[:count]].tolist()
        rows.append(tuple(model.tokenizer.batch_decode([[token] for token in chosen])))
    return tuple(rows)


def _vocabulary(model: ModelHandle, top_ids: Tensor) -> tuple[tuple[int, str], ...]:
    """(id, text) of every token that appears among the kept top tokens."""
    unique = torch.unique(top_ids).tolist()
    texts: list[Any] = model.tokenizer.batch_decode([[token] for token in unique])
    return tuple(zip(unique, texts, strict=True))
