"""`attention_pattern`: the attention probabilities of chosen heads on one prompt.

The pattern is read at each layer's ``hook_pattern`` (`circuitlab.sites.pattern`) in one
collector pass: [head, query_pos, key_pos], each row a probability distribution over the keys
at or before the query (zero above the diagonal). Under grouped-query attention the pattern is
per query head; the key/value group each head reads is recorded beside it
(`circuitlab.attention.heads`).

Example:
    >>> view = attention_pattern(model, "When Mary and John went to the store, John gave", "L3H1")
    >>> view.pattern.shape                                    # [head, query_pos, key_pos]
    torch.Size([1, 13, 13])
    >>> view.to_frame().head()                                # head, query, key, weight...
    >>> view.plot()                                           # heatmap, tokens on both axes
    >>> view.save_html("l3h1.html")                           # self-contained, hover for values
    >>> attention_pattern(model, "The cat sat", layer=3)      # every head of layer 3
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import Tensor

from circuitlab import sites
from circuitlab.attention.heads import HeadSpec, kv_group, resolve_heads
from circuitlab.checks import check_integer, check_text, checked_arguments
from circuitlab.collector import EVERY_TOKEN, collect
from circuitlab.components import Head
from circuitlab.errors import InputError
from circuitlab.files import output_file
from circuitlab.model import ModelHandle
from circuitlab.readers import Keep
from circuitlab.results import Result

__all__ = ["AttentionPattern", "attention_pattern", "shown_token"]


def shown_token(token: str) -> str:
    """A token as printed in figures and tables: control characters made visible (``\\n``).

    Args:
        token: The token's text.
    """
    return "".join(
        repr(character)[1:-1] if not character.isprintable() and character != " " else character
        for character in token
    )


@dataclass(frozen=True)
class AttentionPattern(Result):
    """The attention probabilities of some heads on one prompt.

    Attributes:
        pattern: [head, query_pos, key_pos] float32; row ``q`` of head ``i`` is how much
            ``heads[i]`` at token ``q`` attends to each key (sums to 1 over keys ``0 .. q``,
            zero above the diagonal).
        tokens: the prompt's tokens as strings (BOS included under the model's policy).
        heads: the heads shown, in model order.
        n_heads: query heads per layer.
        n_kv_heads: key/value heads per layer (fewer than ``n_heads`` under GQA).
        prompt: the prompt text.
        model: the model's name.
    """

    pattern: Float[Tensor, "head query_pos key_pos"]
    tokens: tuple[str, ...]
    heads: tuple[Head, ...]
    n_heads: int
    n_kv_heads: int
    prompt: str = ""
    model: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(self.tokens))
        object.__setattr__(self, "heads", tuple(self.heads))
        n = len(self.tokens)
        if self.pattern.shape != (len(self.heads), n, n):
            raise InputError(
                f"An AttentionPattern of {len(self.heads)} heads on {n} tokens needs a pattern "
                f"of shape {(len(self.heads), n, n)}, got {tuple(self.pattern.shape)}."
            )

    # ------------------------------------------------------------------ facts
    @property
    def kv_groups(self) -> tuple[int, ...]:
        """The key/value head each shown head reads (its GQA group), in ``heads`` order."""
        return tuple(kv_group(h.head, self.n_heads, self.n_kv_heads) for h in self.heads)

    def _index(self, head: str | Head) -> int:
        if isinstance(head, str):
            head = head.strip().upper()
        found = next((i for i, shown in enumerate(self.heads) if str(shown) == str(head)), None)
        if found is None:
            raise InputError(
                f"{head} is not in this view; it shows {', '.join(map(str, self.heads))}."
            )
        return found

    def weights(self, head: str | Head) -> Float[Tensor, "query_pos key_pos"]:
        """One head's pattern [query_pos, key_pos].

        Args:
            head: The head, as ``"L3H1"`` or a `Head` of this pattern.
        """
        return self.pattern[self._index(head)]

    def strongest_keys(self, head: str | Head) -> list[tuple[int, int, float]]:
        """For each query position, the key it attends to most: ``(query, key, weight)``.

        Ties go to the earliest key.

        Args:
            head: The head, as ``"L3H1"`` or a `Head` of this pattern.
        """
        weights = self.weights(head)
        values, keys = weights.max(dim=-1)
        return [(q, int(k), float(v)) for q, (k, v) in enumerate(zip(keys, values, strict=True))]

    # ----------------------------------------------------------- presentation
    def to_frame(self) -> pd.DataFrame:
        """Long form, one row per head and causal (query, key) pair (``key <= query``).

        Columns: head (``L3H1``), layer, head_index, kv_group, query_pos, query_token,
        key_pos, key_token, weight.
        """
        n = len(self.tokens)
        query, key = np.tril_indices(n)
        values = self.pattern.detach().float().cpu().numpy()
        frames = []
        for index, (head, group) in enumerate(zip(self.heads, self.kv_groups, strict=True)):
            frames.append(
                pd.DataFrame(
                    {
                        "head": str(head),
                        "layer": head.layer,
                        "head_index": head.head,
                        "kv_group": group,
                        "query_pos": query,
                        "query_token": [self.tokens[q] for q in query],
                        "key_pos": key,
                        "key_token": [self.tokens[k] for k in key],
                        "weight": values[index][query, key],
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def plot(self, columns: int | None = None) -> Figure:
        """One heatmap panel per head: query tokens down, key tokens across, weight 0 → 1.

        Args:
            columns: panels per row (default up to 3).

        Cells above the diagonal (future keys, masked) are grey; each panel's title names the
        head and its key/value group.
        """
        n_panels = len(self.heads)
        columns = (
            min(n_panels, 3) if columns is None else check_integer("columns", columns, minimum=1)
        )
        columns = min(columns, n_panels)
        rows = math.ceil(n_panels / columns)
        n = len(self.tokens)
        side = min(max(2.2 + 0.16 * n, 3.0), 9.0)
        figure = Figure(figsize=(side * columns + 0.8, side * rows + 0.3), layout="constrained")
        grid = figure.subplots(rows, columns, squeeze=False)
        cmap = colormaps["Blues"].with_extremes(bad="#e6e6e6")
        future = np.triu(np.ones((n, n), dtype=bool), k=1)
        labels = [_axis_label(position, token) for position, token in enumerate(self.tokens)]
        step = 1 if n <= 48 else math.ceil(n / 40)
        size = 8 if n <= 20 else 6 if n <= 48 else 5
        image = None
        for index, axes in enumerate(grid.flat):
            if index >= n_panels:
                axes.set_axis_off()
                continue
            head, group = self.heads[index], self.kv_groups[index]
            matrix = self.pattern[index].detach().float().cpu().numpy().copy()
            matrix[future] = np.nan
            image = axes.imshow(matrix, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ticks = list(range(0, n, step))
            axes.set_xticks(ticks, [labels[t] for t in ticks], rotation=90, fontsize=size)
            axes.set_yticks(ticks, [labels[t] for t in ticks], fontsize=size)
            axes.set_xlabel("key (attended to)", fontsize=8)
            axes.set_ylabel("query (attending)", fontsize=8)
            axes.set_title(f"{head} · {self._group_text(group)}", fontsize=9)
        assert image is not None
        colorbar = figure.colorbar(image, ax=grid.ravel().tolist(), shrink=0.8)
        colorbar.set_label("attention weight (grey: future keys, masked)", fontsize=8)
        model = f" — {self.model}" if self.model else ""
        figure.suptitle(f"Attention patterns on {n} tokens{model}", fontsize=10)
        return figure

    def _group_text(self, group: int) -> str:
        if self.n_kv_heads == self.n_heads:
            return "own key/value head"
        return f"KV group {group} of {self.n_kv_heads}"

    def to_html(self) -> str:
        """A self-contained HTML view (a fragment: inline CSS, no scripts, fonts or links).

        One colour grid per head (rows: query tokens, columns: key tokens); hovering a cell
        (tapping, on a phone) shows ``query token → key token: weight``. Wide prompts scroll
        horizontally with the query tokens pinned on the left.
        """
        from circuitlab.attention.html import pattern_html

        return pattern_html(self)

    def _repr_html_(self) -> str:
        return self.to_html()

    def save_html(self, path: str | os.PathLike[str]) -> Path:
        """Write `to_html` as a complete HTML page (UTF-8), atomically; returns the path.

        Args:
            path: The HTML file to write.
        """
        from circuitlab.attention.html import html_page

        target = Path(path)
        page = html_page(self.to_html(), title=f"Attention patterns — {self.model or 'circuitlab'}")
        with output_file(target) as tmp:
            tmp.write_text(page, encoding="utf-8")
        return target

    def __repr__(self) -> str:
        names = ", ".join(str(head) for head in self.heads[:4])
        more = f", ... ({len(self.heads)} heads)" if len(self.heads) > 4 else ""
        model = f", model {self.model!r}" if self.model else ""
        return f"AttentionPattern({names}{more} on {len(self.tokens)} tokens{model})"


def _axis_label(position: int, token: str) -> str:
    """``"3 ' Paris'"``-style tick label; ``$`` escaped so matplotlib shows it verbatim."""
    text = shown_token(token)
    text = text if len(text) <= 14 else text[:13] + "…"
    return f"{position} {text}".replace("$", r"\$")


@checked_arguments
def attention_pattern(
    model: ModelHandle,
    prompt: str,
    heads: HeadSpec | None = None,
    *,
    layer: int | None = None,
) -> AttentionPattern:
    """The attention probabilities of ``heads`` (and/or every head of ``layer``) on ``prompt``.

    One collector pass reads ``hook_pattern`` at every layer involved, at every token.

    Args:
        model: the model handle.
        prompt: one text (tokenized under the model's BOS policy).
        heads: ``"L3H1"``, a `circuitlab.components.Head`, or a list of them. Head indices
            count query heads (0 .. n_heads − 1), also under grouped-query attention.
        layer: show every head of this layer (with ``heads``: both).

    Returns:
        An `AttentionPattern` with the pattern [head, query_pos, key_pos], the tokens and each
        head's key/value group.

    Raises:
        InputError: an empty prompt, a component that is not a head, or a head or layer the
            model does not have.
    """
    check_text("prompt", prompt)
    if not prompt:
        raise InputError("The prompt is empty: give the text whose attention to show.")
    chosen = resolve_heads(model.arch, heads, layer)
    layers = sorted({head.layer for head in chosen})
    tokens = model.tokenize(prompt)
    readers = {str(index): Keep(sites.pattern(index)) for index in layers}
    captured = collect(model, tokens, readers, positions=EVERY_TOKEN, batch_size=1)
    n = int(tokens.lengths[0])
    by_layer = {index: captured[str(index)].values[0, :, :n, :n] for index in layers}
    pattern = torch.stack([by_layer[head.layer][head.head] for head in chosen])
    return AttentionPattern(
        pattern=pattern.detach().float().cpu().contiguous(),
        tokens=tuple(model.tokenizer.decode([token]) for token in tokens.row(0).tolist()),
        heads=chosen,
        n_heads=model.n_heads,
        n_kv_heads=model.n_kv_heads,
        prompt=prompt,
        model=model.name,
    )
