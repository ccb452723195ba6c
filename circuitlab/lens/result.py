"""`LogitLens`: what the logit lens read per prompt × read position × layer, as tensors, a
table and a layer × position heatmap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import Tensor

from circuitlab.errors import InputError
from circuitlab.results import Result

__all__ = ["EMBED", "LogitLens"]

EMBED = "embed"
"""The label of the lens row that reads the embedding output (``resid_pre`` of block 0)."""

_ANNOTATE_CELLS = 400  # annotate the top-1 token in heatmaps of at most this many cells


@dataclass(frozen=True, repr=False)
class LogitLens(Result):
    """The logit lens of some prompts (`circuitlab.lens.logit_lens`).

    ``S`` is the most positions read in one prompt (1 unless every token was read); entries
    at read indices past a prompt's ``lengths`` are padding (ids and ranks -1, values 0).

    Attributes:
        top_ids: the k most likely tokens [prompt, S, layer, k], most likely first.
        top_probs: their probabilities [prompt, S, layer, k].
        target_logprobs: each target's log-probability (nats) [prompt, S, layer, target].
        target_logits: each target's logit [prompt, S, layer, target].
        target_ranks: each target's rank [prompt, S, layer, target]: how many tokens have a
            strictly larger logit (0 = the top token).
        positions: the token position of each read index [prompt, S] (-1 on padding).
        lengths: how many positions were read in each prompt [prompt].
        layers: the label of each layer row: ``"embed"`` (the embedding output), then the
            index of each block whose output was read (``"0"``, ``"1"``, ...).
        targets: the targets' labels (``"' Paris'"``).
        target_ids: the targets' token ids.
        tokens: each prompt's tokens (text) at its read positions.
        vocabulary: ``(id, text)`` of every token among the top tokens.
        prompts: the prompt texts (empty when a token batch came without them).
        model: the model's name.
    """

    top_ids: Tensor
    top_probs: Tensor
    target_logprobs: Tensor
    target_logits: Tensor
    target_ranks: Tensor
    positions: Tensor
    lengths: Tensor
    layers: tuple[str, ...]
    targets: tuple[str, ...] = ()
    target_ids: tuple[int, ...] = ()
    tokens: tuple[tuple[str, ...], ...] = ()
    vocabulary: tuple[tuple[int, str], ...] = ()
    prompts: tuple[str, ...] = ()
    model: str = ""

    # ------------------------------------------------------------------ facts
    @property
    def n_prompts(self) -> int:
        """Number of prompts."""
        return int(self.top_ids.shape[0])

    @property
    def n_layers(self) -> int:
        """Number of layer rows (the embedding output counts as one)."""
        return len(self.layers)

    @property
    def k(self) -> int:
        """Top tokens kept per prompt, position and layer."""
        return int(self.top_ids.shape[-1])

    @property
    def valid(self) -> Bool[Tensor, "prompt S"]:
        """True at the read indices that hold a read position (not padding)."""
        return torch.arange(self.top_ids.shape[1])[None, :] < self.lengths[:, None]

    @property
    def target_probs(self) -> Float[Tensor, "prompt S layer target"]:
        """Each target's probability [prompt, S, layer, target] (0 on padding)."""
        probs = self.target_logprobs.exp()
        return torch.where(self.valid[:, :, None, None], probs, torch.zeros_like(probs))

    def token_text(self, token_id: int) -> str:
        """The text of a token among the kept top tokens.

        Args:
            token_id: a token id that appears among the kept top tokens.
        """
        texts = dict(self.vocabulary)
        if token_id not in texts:
            raise InputError(f"Token id {token_id} is not among this lens's top tokens.")
        return texts[token_id]

    # ----------------------------------------------------------- choosing
    def _prompt(self, prompt: int) -> int:
        if not -self.n_prompts <= prompt < self.n_prompts:
            raise InputError(
                f"Prompt {prompt} is out of range: this lens read {self.n_prompts} prompt(s) "
                f"(0 .. {self.n_prompts - 1})."
            )
        return prompt % self.n_prompts

    def _read_index(self, prompt: int, position: int) -> int:
        count = int(self.lengths[prompt])
        if not -count <= position < count:
            raise InputError(
                f"Read position {position} is out of range: prompt {prompt} was read at "
                f"{count} position(s) (0 .. {count - 1}, or -1 for the last one read)."
            )
        return position % count

    def _layer(self, layer: int | str) -> int:
        label = layer if isinstance(layer, str) else str(layer)
        if label not in self.layers:
            raise InputError(
                f"Layer {layer!r} is not in this lens; it read the layers "
                f"{', '.join(self.layers)} ({EMBED!r} is the embedding output)."
            )
        return self.layers.index(label)

    def _target(self, target: int | str) -> int:
        if not self.targets:
            raise InputError("This lens follows no target; pass targets= to logit_lens.")
        if isinstance(target, str):
            for label in (target, repr(target)):
                if label in self.targets:
                    return self.targets.index(label)
            raise InputError(f"Target {target!r} is not one of {', '.join(self.targets)}.")
        if not 0 <= target < len(self.targets):
            raise InputError(
                f"Target index {target} is out of range: this lens follows "
                f"{len(self.targets)} target(s) ({', '.join(self.targets)})."
            )
        return target

    # ---------------------------------------------------------- read-outs
    def top(self, layer: int | str, prompt: int = 0, position: int = -1) -> list[tuple[str, float]]:
        """The top-k tokens and their probabilities read at one layer.

        Args:
            layer: a block index (its output) or ``"embed"``.
            prompt: the prompt's index.
            position: the index among the prompt's read positions (-1: the last one read).
        """
        p = self._prompt(prompt)
        s = self._read_index(p, position)
        row = self._layer(layer)
        ids = self.top_ids[p, s, row].tolist()
        probs = self.top_probs[p, s, row].tolist()
        return [(self.token_text(i), float(q)) for i, q in zip(ids, probs, strict=True)]

    def layer_table(self, prompt: int = 0, position: int = -1) -> pd.DataFrame:
        """One row per layer at one read position: the top token, its probability and each
        target's probability and rank (the CLI's table).

        Args:
            prompt: the prompt's index.
            position: the index among the prompt's read positions (-1: the last one read).
        """
        p = self._prompt(prompt)
        s = self._read_index(p, position)
        texts = dict(self.vocabulary)
        frame = pd.DataFrame(
            {
                "layer": list(self.layers),
                "top_token": [texts[int(i)] for i in self.top_ids[p, s, :, 0]],
                "top_prob": self.top_probs[p, s, :, 0].numpy(),
            }
        )
        for index, label in enumerate(self.targets):
            frame[f"{label} prob"] = self.target_logprobs[p, s, :, index].exp().numpy()
            frame[f"{label} rank"] = self.target_ranks[p, s, :, index].numpy()
        return frame

    # ------------------------------------------------------- presentation
    def to_frame(self) -> pd.DataFrame:
        """One row per prompt × read position × layer.

        Columns: ``prompt`` (index), ``position`` (token position), ``token`` (the token
        there), ``layer`` (label), ``top_1 .. top_k`` (tokens) and ``prob_1 .. prob_k``, and
        per target ``<label> prob``, ``<label> logprob`` (nats), ``<label> logit``,
        ``<label> rank`` (0 = top).
        """
        prompt_index, read_index = self.valid.nonzero(as_tuple=True)
        n_rows = self.n_layers
        repeat = lambda values: np.repeat(np.asarray(values), n_rows)  # noqa: E731
        frame = pd.DataFrame(
            {
                "prompt": repeat(prompt_index.numpy()),
                "position": repeat(self.positions[prompt_index, read_index].numpy()),
                "token": repeat(
                    [
                        self.tokens[p][s]
                        for p, s in zip(prompt_index.tolist(), read_index.tolist(), strict=True)
                    ]
                ),
                "layer": np.tile(np.asarray(self.layers, dtype=object), len(prompt_index)),
            }
        )
        texts = dict(self.vocabulary)
        ids = self.top_ids[prompt_index, read_index].reshape(-1, self.k)
        probs = self.top_probs[prompt_index, read_index].reshape(-1, self.k)
        for rank in range(self.k):
            frame[f"top_{rank + 1}"] = [texts[int(i)] for i in ids[:, rank]]
        for rank in range(self.k):
            frame[f"prob_{rank + 1}"] = probs[:, rank].numpy()
        selected = {
            "logprob": self.target_logprobs,
            "logit": self.target_logits,
            "rank": self.target_ranks,
        }
        for index, label in enumerate(self.targets):
            columns = {
                name: values[prompt_index, read_index, :, index].reshape(-1).numpy()
                for name, values in selected.items()
            }
            frame[f"{label} prob"] = np.exp(columns["logprob"])
            for name, column in columns.items():
                frame[f"{label} {name}"] = column
        return frame

    def plot(
        self,
        prompt: int = 0,
        target: int | str | None = None,
        *,
        top: bool = False,
        annotate: bool | None = None,
        title: str | None = None,
    ) -> Figure:
        """A layer × position heatmap of one prompt: a target's probability, or (``top=True``,
        or when the lens follows no target) the top-1 token's probability.

        Args:
            prompt: the prompt's index.
            target: the target's index or token (default: the first target).
            top: show the top-1 probability even when the lens follows targets.
            annotate: write the top-1 token in each cell (default: when at most 400 cells).
            title: the figure's title.
        """
        p = self._prompt(prompt)
        count = int(self.lengths[p])
        if top and target is not None:
            raise InputError("Pass target= or top=True, not both.")
        if top or (not self.targets and target is None):
            values, what = self.top_probs[p, :count, :, 0], "top-1 probability"
        else:
            column = self._target(0 if target is None else target)
            values = self.target_logprobs[p, :count, :, column].exp()
            what = f"P({self.targets[column]})"
        matrix = values.T.float().numpy()  # [layer, position]
        width = min(3.2 + 0.55 * count, 18.0)
        height = min(1.8 + 0.28 * self.n_layers, 12.0)
        figure = Figure(figsize=(width, height), layout="constrained")
        axes = figure.subplots()
        image = axes.imshow(
            matrix,
            cmap=colormaps["viridis"],
            vmin=0.0,
            vmax=1.0,
            aspect="auto",
            origin="lower",
            interpolation="nearest",
        )
        axes.set_yticks(range(self.n_layers), list(self.layers), fontsize=7)
        tokens = [
            f"{int(position)} {_short(token, 12)}"
            for position, token in zip(
                self.positions[p, :count].tolist(), self.tokens[p], strict=True
            )
        ]
        axes.set_xticks(range(count), tokens, rotation=90, fontsize=7)
        axes.set_xlabel("read position (token there)", fontsize=8)
        axes.set_ylabel("layer (embed: embedding output)", fontsize=8)
        if annotate is None:
            annotate = matrix.size <= _ANNOTATE_CELLS
        if annotate:
            texts = dict(self.vocabulary)
            for s in range(count):
                for row in range(self.n_layers):
                    axes.text(
                        s,
                        row,
                        _short(texts[int(self.top_ids[p, s, row, 0])], 8),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="black" if matrix[row, s] > 0.6 else "white",
                    )
        colorbar = figure.colorbar(image, ax=axes)
        colorbar.set_label(what + (" (text: top-1 token)" if annotate else ""), fontsize=8)
        prompt_text = _short(self.prompts[p], 60) if self.prompts else f"prompt {p}"
        heading = title or f"Logit lens: {what} by layer — {self.model or 'model'}"
        axes.set_title(f"{heading}\n{prompt_text}", fontsize=9)
        return figure

    def __repr__(self) -> str:
        reads = int(self.lengths.max()) if self.n_prompts else 0
        per_prompt = "1 position" if reads == 1 else f"up to {reads} positions"
        targets = ", ".join(self.targets[:3]) + (", ..." if len(self.targets) > 3 else "")
        return (
            f"LogitLens({self.model!r}: {self.n_prompts} prompt(s), {self.n_layers} layers "
            f"{self.layers[0]}..{self.layers[-1]}, {per_prompt} per prompt, top {self.k}"
            + (f", targets {targets}" if self.targets else "")
            + ")"
        )


def _short(text: Any, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters."""
    flat = str(text).replace("\n", "\\n")
    return flat if len(flat) <= width else flat[: width - 1] + "…"
