"""`LayerScores`: one importance value per layer, its ranking, and which layers k% pruning removes.

Convention: a higher value means a more important layer; pruning removes the lowest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from circuitlab.errors import InputError
from circuitlab.results import Result

__all__ = ["LayerScores", "check_percent", "layers_to_remove"]


def check_percent(percent: float) -> float:
    """``percent`` as a float if it lies strictly between 0 and 100; a clear error otherwise.

    Args:
        percent: the share of layers to prune, in percent.
    """
    if isinstance(percent, bool) or not isinstance(percent, (int, float)):
        raise InputError(f"k must be a percentage (a number in (0, 100)), got {percent!r}.")
    if not math.isfinite(percent) or not 0 < percent < 100:
        raise InputError(
            f"k = {percent}% is outside (0, 100): give the share of layers to prune in "
            f"percent, e.g. 25 for a quarter."
        )
    return float(percent)


def layers_to_remove(n_layers: int, percent: float) -> int:
    """How many of ``n_layers`` layers k% pruning removes: k% of them, rounded, at least one.

    Rounds half up (25% of 30 layers is 7.5 → 8; of 18 layers 4.5 → 5). Refuses a k that
    would remove every layer.

    Args:
        n_layers: number of layers of the model.
        percent: k, the share of the layers to remove, in percent.
    """
    percent = check_percent(percent)
    count = max(1, math.floor(n_layers * percent / 100 + 0.5))
    if count >= n_layers:
        raise InputError(
            f"Pruning {percent:g}% of {n_layers} layers removes {count} of them and leaves no "
            f"layers. Choose a smaller k (below {100 * (n_layers - 0.5) / n_layers:.1f}%)."
        )
    return count


@dataclass(frozen=True)
class LayerScores(Result):
    """Per-layer importance from one method (AVSS, Block Influence, ground truth, ...).

    Attributes:
        method: the scoring method (``"avss"``, ``"block_influence"``, ``"angular_distance"``,
            ``"random"``, ``"drop_last"``, ``"ground_truth"``).
        values: one score per layer, layer order; higher = more important.
        details: further per-layer columns (for AVSS: variance, nav, sparsity, navss, cavss).
        settings: how the scores were computed (data, site, ε, tokens, seed...).
        model: name of the model scored.
        notes: warnings worth keeping with the result (e.g. a sparsity floor was used).
    """

    method: str
    values: tuple[float, ...]
    details: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    model: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        values = tuple(float(value) for value in self.values)
        if not values:
            raise InputError("LayerScores needs one value per layer; got none.")
        if not all(math.isfinite(value) for value in values):
            raise InputError(f"{self.method} scores must be finite, got {list(values)}.")
        object.__setattr__(self, "values", values)
        details = {name: tuple(float(v) for v in column) for name, column in self.details.items()}
        for name, column in details.items():
            if len(column) != len(values):
                raise InputError(
                    f"Detail column {name!r} has {len(column)} entries for {len(values)} layers."
                )
        object.__setattr__(self, "details", details)
        object.__setattr__(self, "settings", dict(self.settings))
        object.__setattr__(self, "notes", tuple(self.notes))

    # --------------------------------------------------------------- ranking
    @property
    def n_layers(self) -> int:
        """Number of layers scored."""
        return len(self.values)

    @property
    def ranking(self) -> tuple[int, ...]:
        """Layers from least to most important (ties keep layer order)."""
        return tuple(int(i) for i in np.argsort(np.asarray(self.values), kind="stable"))

    def lowest(self, percent: float = 25.0) -> tuple[int, ...]:
        """The layers k% pruning removes (the lowest scores), in layer order.

        Args:
            percent: k, the share of the layers in percent, strictly between 0 and 100.
        """
        count = layers_to_remove(self.n_layers, percent)
        return tuple(sorted(self.ranking[:count]))

    def highest(self, percent: float = 25.0) -> tuple[int, ...]:
        """The k% highest-scoring layers, in layer order.

        Args:
            percent: k, the share of the layers in percent, strictly between 0 and 100.
        """
        count = layers_to_remove(self.n_layers, percent)
        return tuple(sorted(self.ranking[-count:]))

    def pruning(self, percent: float = 25.0) -> Any:
        """The `PruneLayers` intervention removing the k% lowest-scoring layers.

        Args:
            percent: k, the share of the layers in percent, strictly between 0 and 100.
        """
        from circuitlab.interventions import PruneLayers

        return PruneLayers(self.lowest(percent))

    def spearman(self, other: LayerScores | Sequence[float]) -> float:
        """Spearman rank correlation with another score of the same layers (NaN if constant).

        Args:
            other: another `LayerScores`, or one value per layer.
        """
        reference = other.values if isinstance(other, LayerScores) else tuple(other)
        if len(reference) != self.n_layers:
            raise InputError(
                f"Cannot correlate {self.n_layers} layer scores with {len(reference)} values."
            )
        if len(set(reference)) < 2 or len(set(self.values)) < 2:
            return math.nan
        return float(spearmanr(self.values, reference).statistic)

    # ---------------------------------------------------------- presentation
    def to_frame(self) -> pd.DataFrame:
        """One row per layer: layer, value, rank (0 = least important) and the details."""
        rank = np.empty(self.n_layers, dtype=int)
        rank[list(self.ranking)] = np.arange(self.n_layers)
        frame = pd.DataFrame(
            {"layer": range(self.n_layers), self.method: self.values, "rank": rank}
        )
        for name, column in self.details.items():
            frame[name] = column
        return frame

    def plot(self, percent: float | None = 25.0, *, title: str | None = None) -> Figure:
        """Bar chart of the scores by layer; the layers k% pruning removes are marked.

        A bar too short to see (a zero score) gets a diamond marker at its value.

        Args:
            percent: k of the pruning marked, in percent (``None``: mark none).
            title: figure title (default: names the method and the model).
        """
        from circuitlab.decomposition.plots import mark_short_bars

        pruned = set(self.lowest(percent)) if percent is not None else set()
        figure = Figure(figsize=(min(3.0 + 0.28 * self.n_layers, 14.0), 3.6), layout="constrained")
        axes = figure.subplots()
        colors = ["#c0392b" if layer in pruned else "#2e6fba" for layer in range(self.n_layers)]
        bars = axes.bar(range(self.n_layers), self.values, color=colors)
        for layer in pruned:
            bars[layer].set_hatch("//")
        values = np.asarray(self.values)
        if values.min() > 0 and values.max() / values.min() > 100:
            axes.set_yscale("log")  # AVSS can span orders of magnitude across depth
        else:
            mark_short_bars(axes, range(self.n_layers), self.values, colors)
        axes.set_xlabel("layer")
        scale = " (log scale)" if axes.get_yscale() == "log" else ""
        axes.set_ylabel(f"{self.method}{scale}\nhigher = more important", fontsize=9)
        axes.set_xticks(range(self.n_layers))
        labels = axes.set_xticklabels([str(layer) for layer in range(self.n_layers)])
        axes.tick_params(axis="x", labelsize=7 if self.n_layers > 20 else 9)
        for layer in pruned:
            labels[layer].set_color("#c0392b")
            labels[layer].set_fontweight("bold")
        heading = title or f"{self.method} by layer ({self.model or 'model'})"
        if pruned:
            heading += f"\nred, hatched: the {len(pruned)} layers {percent:g}% pruning removes"
        axes.set_title(heading, fontsize=9)
        return figure

    def __repr__(self) -> str:
        low = ", ".join(str(layer) for layer in self.ranking[:3])
        return f"LayerScores({self.method!r}, {self.n_layers} layers, least important: {low}, ...)"

    # --------------------------------------------------------------- storage
    @classmethod
    def _from_plain(cls, data: Mapping[str, Any]) -> LayerScores:
        """Rebuild from the plain layout results had before the result protocol."""
        try:
            return cls(
                method=str(data["method"]),
                values=tuple(data["values"]),
                details={k: tuple(v) for k, v in data.get("details", {}).items()},
                settings=data.get("settings", {}),
                model=str(data.get("model", "")),
                notes=tuple(data.get("notes", ())),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"Not LayerScores data ({error!r}).") from error

    @classmethod
    def _from_legacy(cls, data: Mapping[str, Any], tensors: Any, path: Path) -> LayerScores:
        """Files written before the result protocol hold the plain layout."""
        return cls._from_plain(data)
