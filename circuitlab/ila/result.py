"""ILA's results: a layer ranking by learned gates (`ILARanking`) and the overlap of several
rankings' top layers (`RankingOverlap`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from peft import LoraConfig

from circuitlab.errors import InputError
from circuitlab.hallucination.result import check_layer_count
from circuitlab.layers.scores import LayerScores, layers_to_remove
from circuitlab.model import ModelHandle
from circuitlab.results import Result

__all__ = ["ILARanking", "RankingOverlap", "jaccard", "layer_budget", "ranking_overlap"]


def layer_budget(n_layers: int, k: int | None = None, percent: float | None = None) -> int:
    """How many layers a budget names: ``k`` layers, or ``percent`` of ``n_layers`` (rounded
    half up, at least one, fewer than all). A clear error for 0, for more layers than exist, or
    for both or neither given.

    Args:
        n_layers: number of layers of the model.
        k: number of layers.
        percent: share of ``n_layers`` instead of ``k``, in percent.
    """
    if (k is None) == (percent is None):
        raise InputError("Give the budget as k (a number of layers) or percent, not both.")
    if k is not None:
        return check_layer_count(k, n_layers)
    return layers_to_remove(n_layers, float(percent))  # type: ignore[arg-type]


def jaccard(first: set[int] | tuple[int, ...], second: set[int] | tuple[int, ...]) -> float:
    """|A ∩ B| / |A ∪ B| (1 for two empty sets).

    Args:
        first: the first set of layers (A).
        second: the second set of layers (B).
    """
    a, b = set(first), set(second)
    return len(a & b) / len(a | b) if a | b else 1.0


@dataclass(frozen=True, repr=False)
class ILARanking(Result):
    """Layers ranked by their learned LoRA gates γ (`circuitlab.ila.ila_rank`).

    Attributes:
        scores: γ per layer (``method="ila"``; higher = the update matters more for the
            instruction loss), with one detail column per LoRA matrix for unit "matrix".
        data: the name of the instruction set the adapter and gates trained on.
        stage1: how stage 1 went (``steps``, ``stopped``, ``seconds``, ``step_losses``).
        stage2: how stage 2 went (``steps``, ``seconds``, ``step_losses``).
        model: name of the model ranked.
        settings: every setting of both stages (and the seed).
        fingerprint: the model's fingerprint before stage 1 (`circuitlab.model_fingerprint`).
    """

    scores: LayerScores
    data: str = ""
    stage1: dict[str, Any] = field(default_factory=dict)
    stage2: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""

    @property
    def n_layers(self) -> int:
        """Number of layers ranked."""
        return self.scores.n_layers

    @property
    def gamma(self) -> tuple[float, ...]:
        """γ per layer."""
        return self.scores.values

    def top(self, k: int | None = None, *, percent: float | None = None) -> tuple[int, ...]:
        """The ``k`` (or ``percent``%) layers with the highest γ, in layer order.

        Args:
            k: number of layers.
            percent: share of the layers instead of ``k``, in percent.
        """
        count = layer_budget(self.n_layers, k, percent)
        return tuple(sorted(self.scores.ranking[::-1][:count]))

    def bottom(self, k: int | None = None, *, percent: float | None = None) -> tuple[int, ...]:
        """The ``k`` (or ``percent``%) layers with the lowest γ, in layer order.

        Args:
            k: number of layers.
            percent: share of the layers instead of ``k``, in percent.
        """
        count = layer_budget(self.n_layers, k, percent)
        return tuple(sorted(self.scores.ranking[:count]))

    def lora_config(
        self,
        model: ModelHandle,
        k: int | None = None,
        *,
        percent: float | None = None,
        modules: Any = None,
        r: int = 8,
        alpha: float = 16.0,
    ) -> LoraConfig:
        """A ``peft`` `LoraConfig` on the top ``k`` (or ``percent``%) layers
        (``layers_to_transform``), for ``peft.get_peft_model`` on the plain HF model.

        Args:
            model: the model the ranking was computed on.
            k: number of layers.
            percent: share of the layers instead of ``k``, in percent.
            modules: module names, e.g. ``("q_proj", "v_proj")``; default every linear map of
                the layer (attention and MLP).
            r: LoRA rank.
            alpha: LoRA scaling numerator (the update is scaled by ``alpha / r``).
        """
        from circuitlab.lora import lora_config

        if model.n_layers != self.n_layers:
            raise InputError(
                f"This ranking covers {self.n_layers} layers but {model.name} has "
                f"{model.n_layers}; use the model it was computed on."
            )
        return lora_config(model, self.top(k, percent=percent), modules, r=r, alpha=alpha)

    def to_frame(self) -> pd.DataFrame:
        """One row per layer: γ, its rank (0 = lowest) and per-matrix γ for unit "matrix"."""
        return self.scores.to_frame().rename(columns={"ila": "gamma"})

    def plot(self, *, percent: float = 25.0, title: str | None = None) -> Figure:
        """γ by layer (the top ``percent`` in red) over the two stages' loss curves.

        Args:
            percent: share of the layers marked as the top, in percent.
            title: figure title (default: names the model and the data).
        """
        top = set(self.top(percent=percent))
        figure = Figure(figsize=(min(4.0 + 0.3 * self.n_layers, 14.0), 5.2), layout="constrained")
        gamma_axes, loss_axes = figure.subplots(2, 1, height_ratios=[3, 2])
        layers = np.arange(self.n_layers)
        colors = ["#c0392b" if layer in top else "#2e6fba" for layer in layers]
        gamma_axes.bar(layers, self.gamma, color=colors)
        gamma_axes.set_ylim(0, 1)
        gamma_axes.set_xticks(layers)
        gamma_axes.tick_params(axis="x", labelsize=7 if self.n_layers > 20 else 9)
        gamma_axes.set_xlabel("layer")
        gamma_axes.set_ylabel("γ = σ(s)")
        heading = title or f"ILA gates by layer ({self.model or 'model'}, {self.data or 'data'})"
        gamma_axes.set_title(f"{heading}\nred: the top {len(top)} ({percent:g}%)", fontsize=9)
        for stage, color in (("stage1", "#2e6fba"), ("stage2", "#c0392b")):
            losses = getattr(self, stage).get("step_losses", [])
            if losses:
                loss_axes.plot(range(1, len(losses) + 1), losses, color=color, label=stage)
        loss_axes.set_xlabel("step")
        loss_axes.set_ylabel("instruction loss\n(nats / token)", fontsize=8)
        loss_axes.legend(fontsize=8)
        return figure

    def __repr__(self) -> str:
        top = ", ".join(str(layer) for layer in self.top(min(4, self.n_layers)))
        return (
            f"ILARanking({self.model!r}, {self.data!r}, {self.n_layers} layers; top 4: {top}; "
            f"stage 1 {self.stage1.get('steps', '?')} steps, stage 2 "
            f"{self.stage2.get('steps', '?')})"
        )


@dataclass(frozen=True, repr=False)
class RankingOverlap(Result):
    """Jaccard overlap of several layer rankings' top layers (`ranking_overlap`).

    Attributes:
        rankings: name → the ranking's `LayerScores` (γ per layer for ILA).
        k: how many top layers each ranking contributes.
        matrix: Jaccard overlap of every pair (rankings' order), 1 on the diagonal.
    """

    rankings: dict[str, LayerScores]
    k: int
    matrix: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        if len(self.rankings) < 2:
            raise InputError("An overlap needs at least two rankings.")
        object.__setattr__(self, "matrix", tuple(tuple(map(float, r)) for r in self.matrix))

    @property
    def names(self) -> list[str]:
        """The rankings' names, in matrix order."""
        return list(self.rankings)

    def top(self, name: str) -> tuple[int, ...]:
        """The top-k layers of one ranking, in layer order.

        Args:
            name: the ranking's name (one of `names`).
        """
        return tuple(sorted(self.rankings[name].ranking[::-1][: self.k]))

    @property
    def mean(self) -> float:
        """Mean overlap over the distinct pairs."""
        n = len(self.names)
        pairs = [self.matrix[i][j] for i in range(n) for j in range(i + 1, n)]
        return float(np.mean(pairs))

    def to_frame(self) -> pd.DataFrame:
        """The overlap matrix, one row and one column per ranking."""
        return pd.DataFrame(self.matrix, index=self.names, columns=self.names)

    def plot(self, *, title: str | None = None) -> Figure:
        """γ (or score) by layer per ranking, beside the overlap matrix.

        Args:
            title: figure title (default: none).
        """
        n_layers = next(iter(self.rankings.values())).n_layers
        figure = Figure(figsize=(11.0, 3.8), layout="constrained")
        curves, heat = figure.subplots(1, 2, width_ratios=[3, 2])
        for name, scores in self.rankings.items():
            curves.plot(range(n_layers), scores.values, marker="o", markersize=3, label=name)
        curves.set_xlabel("layer")
        curves.set_ylabel("score (γ for ILA)")
        curves.legend(fontsize=7)
        curves.set_title("scores by layer", fontsize=9)
        matrix = np.asarray(self.matrix)
        image = heat.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        ticks = range(len(self.names))
        heat.set_xticks(ticks, self.names, rotation=45, ha="right", fontsize=7)
        heat.set_yticks(ticks, self.names, fontsize=7)
        for i in ticks:
            for j in ticks:
                heat.text(
                    j,
                    i,
                    f"{matrix[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if matrix[i, j] < 0.6 else "black",
                )
        figure.colorbar(image, ax=heat, shrink=0.8)
        heat.set_title(f"Jaccard of the top {self.k} layers (mean {self.mean:.2f})", fontsize=9)
        if title:
            figure.suptitle(title, fontsize=10)
        return figure

    def __repr__(self) -> str:
        return (
            f"RankingOverlap({len(self.names)} rankings, top {self.k}, mean Jaccard "
            f"{self.mean:.2f})"
        )


def ranking_overlap(
    rankings: Mapping[str, ILARanking | LayerScores],
    *,
    k: int | None = None,
    percent: float | None = None,
) -> RankingOverlap:
    """Jaccard overlap of the top ``k`` (or ``percent``%, default 25%) layers of every pair.

    Args:
        rankings: name → an `ILARanking` or any `LayerScores` of the same layers.
        k: number of top layers per ranking.
        percent: share of the layers instead of ``k``, in percent.
    """
    scores = {
        name: ranking.scores if isinstance(ranking, ILARanking) else ranking
        for name, ranking in rankings.items()
    }
    if len(scores) < 2:
        raise InputError(f"Give at least two rankings to compare, got {len(scores)}.")
    sizes = {score.n_layers for score in scores.values()}
    if len(sizes) != 1:
        raise InputError(f"The rankings cover different numbers of layers: {sorted(sizes)}.")
    n_layers = sizes.pop()
    if k is None and percent is None:
        percent = 25.0
    count = layer_budget(n_layers, k, percent)
    tops = {name: set(score.ranking[::-1][:count]) for name, score in scores.items()}
    names = list(scores)
    matrix = tuple(tuple(jaccard(tops[a], tops[b]) for b in names) for a in names)
    return RankingOverlap(rankings=scores, k=count, matrix=matrix)
