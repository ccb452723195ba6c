"""`HallucinationScores`: every layer ranking of `hallucination_scores`, as one result."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from circuitlab.errors import InputError
from circuitlab.layers.scores import LayerScores
from circuitlab.results import Result

__all__ = ["HallucinationScores", "check_layer_count"]

_TITLES = {
    "eavss": "EAVSS  |log AVSS_h − log AVSS_t|",
    "hsav": "HSAV  |σ²_h − σ²_t| / (σ²_h + σ²_t)",
    "hss": "HSS  |AS_t − AS_h| / (AS_t + AS_h)",
    "probe": "probe accuracy (held-out questions)",
}


def check_layer_count(k: int, n_layers: int) -> int:
    """``k`` if it is a layer count between 1 and ``n_layers``; a clear error otherwise.

    Args:
        k: number of layers to choose.
        n_layers: number of layers of the model.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_layers:
        raise InputError(
            f"k={k!r} layers cannot be chosen from a model with {n_layers} layers; pass k "
            f"between 1 and {n_layers}."
        )
    return int(k)


@dataclass(frozen=True, repr=False)
class HallucinationScores(Result):
    """Per-layer hallucination propensity by several definitions (`hallucination_scores`).

    Attributes:
        scores: ``{method: LayerScores}`` for ``"eavss"``, ``"hsav"``, ``"hss"`` and the
            ``"probe"`` baseline; higher = more hallucination-prone (probe: more separable).
        model: name of the model scored.
        settings: how the scores were computed (site, ε, samples, truthful / hallucinated counts).
    """

    scores: dict[str, LayerScores]
    model: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.scores:
            raise InputError("HallucinationScores needs at least one ranking.")
        sizes = {score.n_layers for score in self.scores.values()}
        if len(sizes) != 1:
            raise InputError(f"The rankings cover different numbers of layers: {sorted(sizes)}.")

    def __getitem__(self, method: str) -> LayerScores:
        if method not in self.scores:
            raise InputError(f"No {method!r} ranking; the rankings are {', '.join(self.scores)}.")
        return self.scores[method]

    def __iter__(self) -> Iterator[str]:
        return iter(self.scores)

    def items(self) -> Any:
        """``(method, LayerScores)`` pairs, like a dict's."""
        return self.scores.items()

    @property
    def n_layers(self) -> int:
        """Number of layers scored."""
        return next(iter(self.scores.values())).n_layers

    @property
    def chance(self) -> float:
        """The probe's chance accuracy (the share of the larger class among its test samples)."""
        return float(self["probe"].settings["chance"])

    def top(self, k: int, method: str = "eavss") -> list[int]:
        """The ``k`` highest-scoring layers of ``method``, in layer order (1 ≤ k ≤ layers).

        Args:
            k: number of layers.
            method: the ranking: ``"eavss"``, ``"hsav"``, ``"hss"`` or ``"probe"``.
        """
        check_layer_count(k, self.n_layers)
        return sorted(self[method].ranking[::-1][:k])

    def to_frame(self) -> pd.DataFrame:
        """One row per layer: every method's score and the signed contrasts and statistics."""
        frame = pd.DataFrame({"layer": range(self.n_layers)})
        for method, score in self.scores.items():
            frame[method] = score.values
        for score in self.scores.values():
            for name, column in score.details.items():
                if name not in frame:
                    frame[name] = column
        return frame

    def plot(self, *, k: int | None = None, title: str | None = None) -> Figure:
        """One panel per method, scores by layer; each method's top ``k`` layers in red
        (default 4, or every layer of a smaller model).

        Args:
            k: number of top layers marked per method.
            title: figure title (default: names the model).
        """
        k = min(4, self.n_layers) if k is None else check_layer_count(k, self.n_layers)
        methods = list(self.scores)
        figure = Figure(
            figsize=(min(3.5 + 0.3 * self.n_layers, 14.0), 1.9 * len(methods) + 0.6),
            layout="constrained",
        )
        panels = figure.subplots(len(methods), 1, sharex=True, squeeze=False)[:, 0]
        layers = np.arange(self.n_layers)
        for axes, method in zip(panels, methods, strict=True):
            values = np.asarray(self.scores[method].values)
            chosen = set(self.top(k, method))
            colors = ["#c0392b" if layer in chosen else "#2e6fba" for layer in layers]
            axes.bar(layers, values, color=colors)
            if method == "probe" and "chance" in self.scores[method].settings:
                axes.axhline(self.chance, color="#555555", linestyle="--", linewidth=1)
                axes.text(
                    self.n_layers - 0.5, self.chance, "chance", ha="right", va="bottom", fontsize=7
                )
                axes.set_ylim(min(values.min(), self.chance) - 0.05, min(1.0, values.max() + 0.05))
            axes.set_title(_TITLES.get(method, method), fontsize=9, loc="left")
            axes.tick_params(labelsize=7)
        panels[-1].set_xlabel("layer")
        panels[-1].set_xticks(layers)
        heading = title or f"Hallucination-prone layers ({self.model or 'model'})"
        heading += f"; red: each score's top {k}"
        figure.suptitle(heading, fontsize=10)
        return figure

    def __repr__(self) -> str:
        ranked = ", ".join(f"{m}: {self.top(min(3, self.n_layers), m)}" for m in self.scores)
        return f"HallucinationScores({self.model!r}, {self.n_layers} layers; top 3 {ranked})"
