"""`head_summary`: where every head attends (previous token, first token, same token,
induction), from one collector pass over every layer's attention pattern.

The scores (all in [0, 1], attention mass; A is one head's pattern on one prompt, t its tokens,
only real tokens count):

- ``previous_token``: A[q, q − 1], over queries q ≥ 1.
- ``first_token``: A[q, 0] (the BOS, or the first token when there is none), over queries
  q ≥ 1 (at q = 0 it is 1 by construction).
- ``same_token``: Σ A[q, k] over earlier keys k < q with t[k] = t[q], over the queries that
  have such a key.
- ``induction``: Σ A[q, k] over keys 1 ≤ k < q with t[k − 1] = t[q] (the token right after
  an earlier occurrence of the current token), over the queries that have such a key.

Each score is the mean of its per-query values over every counted query of every prompt
(prompts weigh by their counted queries); a score no query defines is NaN.

The default data is the standard induction test: `DEFAULT_SEQUENCES` (16) sequences of
`DEFAULT_LENGTH` (24) tokens drawn uniformly (with replacement, seed 0) from the vocabulary
without special tokens, each repeated twice (48 tokens, after the BOS the model's policy adds).

Example:
    >>> summary = head_summary(model)                         # random repeated tokens
    >>> summary.top("induction", 3)                           # [(Head(4, 1), 0.71), ...]
    >>> summary.to_frame()                                    # layer, head, kv_group, scores
    >>> head_summary(model, ["The cat sat. The cat sat."], sequences=0)   # your prompts only
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import Tensor

from circuitlab import sites
from circuitlab.attention.heads import kv_group
from circuitlab.checks import check_integer, check_prompts, checked_arguments
from circuitlab.collector import EVERY_TOKEN, CapturedBatch, collect
from circuitlab.components import Head, parse_component
from circuitlab.errors import InputError
from circuitlab.model import ModelHandle
from circuitlab.readers import Reader
from circuitlab.results import Result
from circuitlab.tokenization import TokenBatch, pad_rows

__all__ = [
    "DEFAULT_LENGTH",
    "DEFAULT_SEQUENCES",
    "SCORES",
    "HeadScoresReader",
    "HeadSummary",
    "head_summary",
    "repeated_random_tokens",
    "score_masks",
]

SCORES: dict[str, str] = {
    "previous_token": "A[q, q-1], queries q >= 1",
    "first_token": "A[q, 0] (BOS or first token), queries q >= 1",
    "same_token": "sum of A[q, k] over k < q with t[k] = t[q], queries with such a k",
    "induction": "sum of A[q, k] over 1 <= k < q with t[k-1] = t[q], queries with such a k",
}
"""Each score and the attention mass it averages (see the module docstring)."""

DEFAULT_SEQUENCES = 16
"""Random sequences in the default data."""
DEFAULT_LENGTH = 24
"""Random tokens per sequence before it is repeated (48 tokens in all, plus any BOS)."""


def score_masks(
    tokens: Int[Tensor, "batch pos"], real: Bool[Tensor, "batch pos"]
) -> Bool[Tensor, "score batch query_pos key_pos"]:
    """Which keys each query's score sums over, per score (in `SCORES` order).

    A query counts for a score when its row has at least one True key.

    Args:
        tokens: Token ids [batch, pos].
        real: Which positions are real tokens, not padding [batch, pos].
    """
    n = tokens.shape[1]
    position = torch.arange(n, device=tokens.device)
    query, key = position[:, None], position[None, :]
    pair = real[:, :, None] & real[:, None, :]  # [batch, query, key]
    earlier = (key < query)[None]
    previous = pair & (key == query - 1)[None]
    first = pair & ((key == 0) & (query >= 1))[None]
    same = pair & earlier & (tokens[:, None, :] == tokens[:, :, None])
    before_key = torch.cat([tokens.new_full((tokens.shape[0], 1), -1), tokens[:, :-1]], dim=1)
    induction = pair & earlier & (key >= 1)[None] & (before_key[:, None, :] == tokens[:, :, None])
    return torch.stack([previous, first, same, induction])


class HeadScoresReader(Reader):
    """Sums of the four `SCORES` per layer and head over every read token (float64).

    Needs ``positions="all"``. Result: ``(sums [score, layer, head], counts [score])``, the
    counts being how many queries each score covered.

    Args:
        n_layers: Number of layers of the model.
        n_heads: Query heads per layer.
    """

    def __init__(self, n_layers: int, n_heads: int) -> None:
        self.sites = tuple(sites.pattern(layer) for layer in range(n_layers))
        self.sums = torch.zeros(len(SCORES), n_layers, n_heads, dtype=torch.float64)
        self.counts = torch.zeros(len(SCORES), dtype=torch.long)

    def update(self, batch: CapturedBatch) -> None:
        """Fold in one batch.

        Args:
            batch: The activations (and logits) captured for one batch of prompts.
        """
        if not batch.every_token:
            raise InputError("HeadScoresReader reads every token: collect with positions='all'.")
        masks = score_masks(batch.tokens.input_ids, batch.mask)
        counted = masks.any(dim=-1)  # [score, batch, query]
        weights = masks.float()
        for layer, site in enumerate(self.sites):
            pattern = batch[site].float()  # [batch, head, query, key]
            per_query = torch.einsum("bhqk,sbqk->sbhq", pattern, weights)
            self.sums[:, layer] += (
                (per_query * counted[:, :, None, :]).sum(dim=(1, 3)).to("cpu", torch.float64)
            )
        self.counts += counted.sum(dim=(1, 2)).cpu()

    def merge(self, other: Any) -> None:
        """Fold in another `HeadScoresReader` of the same settings that saw other batches.

        Args:
            other: The reader to fold in.
        """
        self._check_kind(other)
        self.sums += other.sums
        self.counts += other.counts

    def result(self) -> tuple[Float[Tensor, "score layer head"], Int[Tensor, " score"]]:
        """The score sums [score, layer, head] (float64) and the queries each covered [score]."""
        return self.sums, self.counts


def _leading_special_ids(model: ModelHandle) -> list[int]:
    """The ids the model's BOS policy puts before a text's own tokens (e.g. ``[bos]``)."""
    probe = "x"
    full = model.tokenize(probe).row(0).tolist()
    plain = model.tokenizer(probe, add_special_tokens=False)["input_ids"]
    if plain and full[len(full) - len(plain) :] == plain:
        return full[: len(full) - len(plain)]
    return []


@checked_arguments
def repeated_random_tokens(
    model: ModelHandle,
    sequences: int = DEFAULT_SEQUENCES,
    length: int = DEFAULT_LENGTH,
    *,
    seed: int = 0,
) -> TokenBatch:
    """``sequences`` random token sequences of ``length`` tokens, each repeated twice.

    Tokens are drawn uniformly with replacement (a ``torch.Generator`` seeded with ``seed``)
    from the ids below both the tokenizer's and the unembedding's size, special and added
    tokens excluded. Each row is the BOS-policy prefix (e.g. ``[bos]``) + s + s.

    Args:
        model: The model whose vocabulary and BOS policy the tokens follow.
        sequences: Number of sequences.
        length: Tokens in the random half of each sequence.
        seed: Seed of the random tokens.

    Returns:
        A `TokenBatch` [sequences, prefix + 2 · length], every row the same length.
    """
    check_integer("sequences", sequences, minimum=1)
    check_integer("length", length, minimum=1)
    check_integer("seed", seed, minimum=0)
    prefix = _leading_special_ids(model)
    if len(prefix) + 2 * length > model.arch.n_ctx:
        raise InputError(
            f"length={length} repeated twice does not fit the model's context of "
            f"{model.arch.n_ctx} tokens; choose length <= {(model.arch.n_ctx - len(prefix)) // 2}."
        )
    tokenizer = model.tokenizer
    excluded = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}))
    size = min(len(tokenizer), model.d_vocab)
    allowed = torch.tensor([i for i in range(size) if i not in excluded], dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    draws = allowed[torch.randint(len(allowed), (sequences, length), generator=generator)]
    rows = [prefix + row + row for row in draws.tolist()]
    return pad_rows(rows, model.pad_token_id)


def _data(
    model: ModelHandle, prompts: Sequence[str] | None, sequences: int, length: int, seed: int
) -> tuple[TokenBatch, int]:
    """The random repeated sequences followed by the user's prompts, and the prompt count."""
    rows: list[list[int]] = []
    if sequences:
        random = repeated_random_tokens(model, sequences, length, seed=seed)
        rows.extend(random.row(i).tolist() for i in range(len(random)))
    texts = check_prompts(prompts) if prompts is not None else []
    if texts:
        batch = model.tokenize(texts)
        rows.extend(batch.row(i).tolist() for i in range(len(batch)))
    if not rows:
        raise InputError(
            "No data to summarise: sequences=0 and no prompts. Give prompts, or keep the random "
            f"repeated sequences (sequences={DEFAULT_SEQUENCES})."
        )
    return pad_rows(rows, model.pad_token_id), len(texts)


@dataclass(frozen=True)
class HeadSummary(Result):
    """Where every head attends, as four mean attention scores per head (see `SCORES`).

    Attributes:
        scores: [score, layer, head] float64 in `SCORES` order; NaN where no query counted.
        score_names: the names of the scores (``SCORES``' keys).
        counts: how many (prompt, query) positions each score averaged over.
        n_kv_heads: key/value heads per layer (the GQA group of head h is
            ``h // (n_heads / n_kv_heads)``).
        model: the model's name.
        settings: the data: random sequences, length, seed, prompts, tokens.
    """

    scores: Float[Tensor, "score layer head"]
    score_names: tuple[str, ...]
    counts: tuple[int, ...]
    n_kv_heads: int
    model: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "score_names", tuple(self.score_names))
        object.__setattr__(self, "counts", tuple(int(c) for c in self.counts))
        object.__setattr__(self, "settings", dict(self.settings))
        if self.scores.dim() != 3 or self.scores.shape[0] != len(self.score_names):
            raise InputError(
                f"HeadSummary scores must be [score, layer, head] with one score per name "
                f"({len(self.score_names)}), got shape {tuple(self.scores.shape)}."
            )

    @property
    def n_layers(self) -> int:
        """Layers summarised."""
        return int(self.scores.shape[1])

    @property
    def n_heads(self) -> int:
        """Query heads per layer."""
        return int(self.scores.shape[2])

    def _score_index(self, score: str) -> int:
        if score not in self.score_names:
            raise InputError(
                f"Unknown score {score!r}; choose one of {', '.join(self.score_names)}."
            )
        return self.score_names.index(score)

    def values(self, score: str) -> Float[Tensor, "layer head"]:
        """One score of every head [layer, head].

        Args:
            score: One of `SCORES`.
        """
        return self.scores[self._score_index(score)]

    def score_of(self, head: str | Head, score: str) -> float:
        """One head's score.

        Args:
            head: The head, as ``"L3H1"`` or a `Head`.
            score: One of `SCORES`.
        """
        component = parse_component(head)
        if not isinstance(component, Head):
            raise InputError(f"{component} is not a head; write heads as L<layer>H<head>.")
        if not (0 <= component.layer < self.n_layers and 0 <= component.head < self.n_heads):
            raise InputError(
                f"{component} is outside this summary ({self.n_layers} layers × {self.n_heads} "
                f"heads)."
            )
        return float(self.values(score)[component.layer, component.head])

    def top(self, score: str, n: int = 5) -> list[tuple[Head, float]]:
        """The ``n`` heads with the highest ``score``, highest first (NaN never ranks).

        Args:
            score: One of `SCORES`.
            n: How many heads to return.
        """
        n = check_integer("n", n, minimum=1)
        values = self.values(score)
        flat = values.flatten()
        order = [int(i) for i in torch.argsort(flat, descending=True, stable=True)]
        ranked = [
            (Head(i // self.n_heads, i % self.n_heads), float(flat[i]))
            for i in order
            if not math.isnan(float(flat[i]))
        ]
        return ranked[:n]

    def to_frame(self) -> pd.DataFrame:
        """One row per head: head (``L3H1``), layer, head index, kv_group, then each score."""
        layer, head = np.divmod(np.arange(self.n_layers * self.n_heads), self.n_heads)
        frame = pd.DataFrame(
            {
                "head": [f"L{a}H{b}" for a, b in zip(layer, head, strict=True)],
                "layer": layer,
                "head_index": head,
                "kv_group": [kv_group(int(b), self.n_heads, self.n_kv_heads) for b in head],
            }
        )
        for index, name in enumerate(self.score_names):
            frame[name] = self.scores[index].flatten().numpy()
        return frame

    def plot(self) -> Figure:
        """One layer × head heatmap per score (attention mass 0 → 1), each with its colour bar."""
        names = self.score_names
        width = 1.2 + 0.32 * self.n_heads
        figure = Figure(
            figsize=(
                min(len(names) * (width + 0.9) + 0.6, 18.0),
                min(2.4 + 0.2 * self.n_layers, 10.0),
            ),
            layout="constrained",
        )
        grid = figure.add_gridspec(
            1, 2 * len(names), width_ratios=[self.n_heads + 1, 0.45] * len(names)
        )
        cmap = colormaps["Blues"].with_extremes(bad="#e6e6e6")
        for index, name in enumerate(names):
            axes = figure.add_subplot(grid[0, 2 * index])
            bar_axes = figure.add_subplot(grid[0, 2 * index + 1])
            image = axes.imshow(
                self.scores[index].numpy(), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto",
                interpolation="nearest",
            )  # fmt: skip
            axes.set_title(name.replace("_", " "), fontsize=10)
            axes.set_xticks(range(self.n_heads), [str(h) for h in range(self.n_heads)], fontsize=8)
            step = 1 if self.n_layers <= 40 else math.ceil(self.n_layers / 30)
            axes.set_yticks(range(0, self.n_layers, step))
            axes.tick_params(axis="y", labelsize=7 if self.n_layers > 20 else 9)
            axes.set_xlabel("query head", fontsize=9)
            if index == 0:
                axes.set_ylabel("layer")
            colorbar = figure.colorbar(image, cax=bar_axes)
            colorbar.set_label("mean attention mass", fontsize=8)
            colorbar.ax.tick_params(labelsize=7)
        model = f"{self.model}: " if self.model else ""
        figure.suptitle(f"{model}where each head attends ({self._data_text()})", fontsize=10)
        return figure

    def _data_text(self) -> str:
        parts = []
        sequences = self.settings.get("sequences", 0)
        if sequences:
            parts.append(
                f"{sequences} random sequences × 2 × {self.settings.get('length')} tokens, "
                f"seed {self.settings.get('seed')}"
            )
        if self.settings.get("prompts"):
            parts.append(f"{self.settings['prompts']} prompts")
        return " + ".join(parts) or "no data recorded"

    def __repr__(self) -> str:
        best = self.top("induction", 1) if "induction" in self.score_names else []
        top = f"; top induction {best[0][0]} {best[0][1]:.2f}" if best else ""
        return (
            f"HeadSummary({self.n_layers} layers × {self.n_heads} heads on "
            f"{self._data_text()}{top})"
        )


@checked_arguments
def head_summary(
    model: ModelHandle,
    prompts: str | Sequence[str] | None = None,
    *,
    sequences: int = DEFAULT_SEQUENCES,
    length: int = DEFAULT_LENGTH,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool = False,
) -> HeadSummary:
    """Score where every head of every layer attends, in one collector pass.

    Reads every layer's pattern at every token and averages the four `SCORES` (see the module
    docstring for their exact definitions) over the data: `repeated_random_tokens`
    (``sequences`` × 2 × ``length`` tokens, ``seed``) followed by ``prompts``.

    Args:
        model: the model handle.
        prompts: your texts, added to the random sequences (``sequences=0``: prompts only).
        sequences: random repeated sequences (default 16; 0 for none).
        length: tokens per random sequence before repetition (default 24).
        seed: the random sequences' seed (default 0).
        batch_size: sequences per forward pass; the pass holds every layer's pattern of a
            batch ([batch, head, pos, pos] per layer), so lower it for long prompts.
        progress: show a progress bar.

    Returns:
        A `HeadSummary` with the scores [score, layer, head].
    """
    check_integer("sequences", sequences, minimum=0)
    check_integer("batch_size", batch_size, minimum=1)
    data, n_prompts = _data(
        model, None if prompts is None else check_prompts(prompts), sequences, length, seed
    )
    reader = HeadScoresReader(model.n_layers, model.n_heads)
    sums, counts = collect(
        model, data, {"scores": reader}, positions=EVERY_TOKEN, batch_size=batch_size,
        progress=progress, desc="head summary",
    )["scores"]  # fmt: skip
    divisor = counts.to(torch.float64).reshape(-1, 1, 1)
    scores = torch.where(divisor > 0, sums / divisor.clamp(min=1), torch.full_like(sums, math.nan))
    return HeadSummary(
        scores=scores,
        score_names=tuple(SCORES),
        counts=tuple(int(c) for c in counts),
        n_kv_heads=model.n_kv_heads,
        model=model.name,
        settings={
            "sequences": sequences,
            "length": length if sequences else None,
            "seed": seed if sequences else None,
            "prompts": n_prompts,
            "tokens": int(data.lengths.sum()),
        },
    )
