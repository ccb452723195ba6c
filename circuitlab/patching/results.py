"""Patching results: a layer × position (or layer × head) map, and attribution estimates.

Normalised effect (both directions): ``(m - m_corrupted) / (m_clean - m_corrupted)``, with
``m`` the metric of the patched run. Denoising (clean activations into the corrupted run): 1
means the patch restores the clean behaviour, 0 that it changes nothing. Noising (corrupted
activations into the clean run): 1 means the patch changes nothing, 0 that it destroys the
clean behaviour. A pair whose clean and corrupted metrics are equal gives NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from matplotlib.figure import Figure
from scipy.stats import spearmanr
from torch import Tensor

from circuitlab.components import Component, Head
from circuitlab.errors import InputError
from circuitlab.results import Result

__all__ = ["AttributionPatching", "PatchingMap", "normalised_effect"]


def normalised_effect(
    values: Float[Tensor, "pair ..."],
    clean: Float[Tensor, " pair"],
    corrupted: Float[Tensor, " pair"],
) -> Float[Tensor, "pair ..."]:
    """``(values - corrupted) / (clean - corrupted)`` per pair (NaN where clean == corrupted).

    Args:
        values: the metric of the patched runs [pair, ...] (pair first, any trailing shape).
        clean: the clean run's metric per pair [pair].
        corrupted: the corrupted run's metric per pair [pair].
    """
    shape = (-1,) + (1,) * (values.dim() - 1)
    gap = (clean - corrupted).reshape(shape)
    ratio = (values - corrupted.reshape(shape)) / gap
    return torch.where(gap == 0, torch.full_like(ratio, math.nan), ratio)


def _mean_and_sem(values: Tensor) -> tuple[Tensor, Tensor]:
    """Mean over the pair axis (NaN pairs left out) and its standard error (NaN for one pair)."""
    finite = torch.isfinite(values)
    count = finite.sum(dim=0)
    filled = torch.where(finite, values, torch.zeros_like(values))
    mean = filled.sum(dim=0) / count.clamp(min=1)
    mean = torch.where(count > 0, mean, torch.full_like(mean, math.nan))
    squares = torch.where(finite, (values - mean) ** 2, torch.zeros_like(values)).sum(dim=0)
    variance = squares / (count - 1).clamp(min=1)
    sem = torch.where(count > 1, (variance / count).sqrt(), torch.full_like(mean, math.nan))
    return mean, sem


def _heatmap(matrix: np.ndarray, labels: list[str], layers: tuple[int, ...], **text: str) -> Figure:
    from circuitlab.decomposition.plots import _draw_heatmap, _heatmap_figure

    figure, [(axes, bar)] = _heatmap_figure([(matrix, labels)], len(layers))
    _draw_heatmap(
        figure, axes, bar, matrix, labels, center=0.0,
        colorbar_label=text["colorbar"], xlabel=text["xlabel"],
    )  # fmt: skip
    axes.set_yticks(range(len(layers)), [str(layer) for layer in layers])
    axes.set_ylabel("layer")
    if text["xlabel"] == "position":
        axes.tick_params(axis="x", labelrotation=60)
    axes.set_title(text["title"], fontsize=10)
    return figure


@dataclass(frozen=True)
class PatchingMap(Result):
    """The metric after patching each (layer, position) or (layer, head), for every pair.

    Attributes:
        values: the metric of each patched run [pair, layer, column].
        clean: the clean run's metric per pair [pair].
        corrupted: the corrupted run's metric per pair [pair].
        site: the patched site kind (``resid_pre``, ``attn_out``, ``mlp_out``, ``z``, ...).
        layers: the layer of each row.
        columns: the position (or head) of each column.
        column_kind: ``"position"`` or ``"head"``.
        labels: each column's label: the token at that position (first pair's patched
            prompt) or ``H3``.
        direction: ``"denoise"`` (clean activations into the corrupted run) or ``"noise"``.
        metric: the metric's name.
        patched_positions: for head maps, the positions each head was patched at
            (empty: every position).
        clean_prompts: the clean prompt of each pair.
        corrupted_prompts: the corrupted prompt of each pair.
        model: the model's name.
    """

    values: Tensor
    clean: Tensor
    corrupted: Tensor
    site: str
    layers: tuple[int, ...]
    columns: tuple[int, ...]
    column_kind: str
    labels: tuple[str, ...]
    direction: str
    metric: str
    patched_positions: tuple[int, ...] = ()
    clean_prompts: tuple[str, ...] = ()
    corrupted_prompts: tuple[str, ...] = ()
    model: str = ""

    def __post_init__(self) -> None:
        expected = (len(self.clean), len(self.layers), len(self.columns))
        if tuple(self.values.shape) != expected:
            raise InputError(
                f"PatchingMap values have shape {tuple(self.values.shape)}, expected {expected}."
            )

    @property
    def n_pairs(self) -> int:
        """Number of prompt pairs."""
        return len(self.clean)

    @property
    def normalised(self) -> Float[Tensor, "pair layer column"]:
        """``(m - m_corrupted) / (m_clean - m_corrupted)`` of every patched run."""
        return normalised_effect(self.values, self.clean, self.corrupted)

    def mean(self, *, normalised: bool = True) -> Float[Tensor, "layer column"]:
        """Mean over pairs (pairs with equal clean and corrupted metric left out).

        Args:
            normalised: average the normalised effect; ``False``: the raw metric.
        """
        return _mean_and_sem(self.normalised if normalised else self.values)[0]

    def sem(self, *, normalised: bool = True) -> Float[Tensor, "layer column"]:
        """Standard error of the mean over pairs (NaN with a single pair).

        Args:
            normalised: of the normalised effect; ``False``: of the raw metric.
        """
        return _mean_and_sem(self.normalised if normalised else self.values)[1]

    def top(self, n: int = 5) -> list[tuple[int, int, float]]:
        """The ``n`` (layer, column, mean normalised effect) with the largest effect magnitude
        (for noising: the furthest from 1).

        Args:
            n: how many (layer, column) cells to return.
        """
        mean = self.mean()
        strength = (mean - 1.0).abs() if self.direction == "noise" else mean.abs()
        strength = torch.nan_to_num(strength, nan=-1.0).flatten()
        order = torch.argsort(strength, descending=True, stable=True)[:n]
        n_columns = len(self.columns)
        return [
            (self.layers[i // n_columns], self.columns[i % n_columns], float(mean.flatten()[i]))
            for i in order.tolist()
        ]

    def to_frame(self) -> pd.DataFrame:
        """One row per (layer, column): raw and normalised means with standard errors."""
        raw, raw_sem = _mean_and_sem(self.values)
        norm, norm_sem = _mean_and_sem(self.normalised)
        rows = []
        for i, layer in enumerate(self.layers):
            for j, column in enumerate(self.columns):
                rows.append(
                    {
                        "layer": layer,
                        self.column_kind: column,
                        "label": self.labels[j],
                        "metric": float(raw[i, j]),
                        "metric_sem": float(raw_sem[i, j]),
                        "normalised": float(norm[i, j]),
                        "normalised_sem": float(norm_sem[i, j]),
                    }
                )
        return pd.DataFrame(rows)

    def plot(self, *, normalised: bool = True, title: str | None = None) -> Figure:
        """Layer × column heatmap of the mean (normalised) effect over pairs.

        Args:
            normalised: show the normalised effect; ``False``: the raw metric.
            title: figure title (default: one naming the direction, site, model and metric).
        """
        matrix = self.mean(normalised=normalised).numpy()
        if self.column_kind == "position":
            labels = [
                f"{column}: {label!r}"
                for column, label in zip(self.columns, self.labels, strict=True)
            ]
        else:
            labels = list(self.labels)
        what = "normalised effect" if normalised else self.metric
        heading = title or (
            f"{self.direction} patching of {self.site} ({self.model or 'model'}, "
            f"{self.n_pairs} pair{'s' if self.n_pairs != 1 else ''}, metric {self.metric})"
        )
        return _heatmap(
            matrix, labels, self.layers, colorbar=what, xlabel=self.column_kind, title=heading
        )

    def __repr__(self) -> str:
        best = ", ".join(
            f"L{layer}{'H' if self.column_kind == 'head' else '@'}{column}={value:.2f}"
            for layer, column, value in self.top(3)
        )
        return (
            f"PatchingMap({self.direction} {self.site}, {len(self.layers)} layers × "
            f"{len(self.columns)} {self.column_kind}s, {self.n_pairs} pairs; top: {best})"
        )


@dataclass(frozen=True)
class AttributionPatching(Result):
    """Attribution patching: the gradient estimate of each component's patching effect.

    ``estimate ≈ (a_source - a_run) · ∂metric/∂a`` at the patched run, summed over positions
    (components) or per position (the residual stream), from one clean forward, one corrupted
    forward and one backward pass.

    Attributes:
        estimates: estimated metric change per pair and component [pair, component].
        components: the components (``EMBED``, heads, MLPs).
        residual: estimated change of patching ``resid_pre`` of each layer at each position
            [pair, layer, pos] (zero past a pair's length).
        clean: the metric of the clean run [pair].
        corrupted: the metric of the corrupted run [pair].
        direction: ``"denoise"`` or ``"noise"``.
        metric: the metric's name.
        exact: the exact patching effect of each component [pair, component] (the patched
            metric minus the patched run's baseline), when computed.
        labels: the tokens of the first pair's patched prompt (residual columns).
        clean_prompts: the clean prompt of each pair.
        corrupted_prompts: the corrupted prompt of each pair.
        model: the model's name.
    """

    estimates: Tensor
    components: tuple[Component, ...]
    residual: Tensor
    clean: Tensor
    corrupted: Tensor
    direction: str
    metric: str
    exact: Tensor | None = None
    labels: tuple[str, ...] = ()
    clean_prompts: tuple[str, ...] = ()
    corrupted_prompts: tuple[str, ...] = ()
    model: str = ""

    @property
    def baseline(self) -> Float[Tensor, " pair"]:
        """The metric of the run that is patched (corrupted when denoising)."""
        return self.corrupted if self.direction == "denoise" else self.clean

    def _normalise(self, change: Tensor) -> Tensor:
        return normalised_effect(change + self.baseline[:, None], self.clean, self.corrupted)

    def mean_estimates(self, *, normalised: bool = False) -> Float[Tensor, " component"]:
        """Mean estimate per component over pairs (raw metric change, or normalised).

        Args:
            normalised: normalise the estimates as patched-run effects (see the module).
        """
        values = self._normalise(self.estimates) if normalised else self.estimates
        return _mean_and_sem(values)[0]

    def mean_exact(self, *, normalised: bool = False) -> Float[Tensor, " component"]:
        """Mean exact effect per component over pairs (needs ``exact``).

        Args:
            normalised: normalise the exact effects (see the module docstring).
        """
        if self.exact is None:
            raise InputError(
                "No exact effects were computed; call attribution_patching(exact=True)."
            )
        values = self._normalise(self.exact) if normalised else self.exact
        return _mean_and_sem(values)[0]

    @property
    def spearman(self) -> float:
        """Spearman rank correlation of the mean estimates with the mean exact effects."""
        estimate, exact = self.mean_estimates().numpy(), self.mean_exact().numpy()
        keep = np.isfinite(estimate) & np.isfinite(exact)
        if keep.sum() < 3 or len(set(exact[keep])) < 2 or len(set(estimate[keep])) < 2:
            return math.nan
        return float(spearmanr(estimate[keep], exact[keep]).statistic)

    def spearman_of(self, kind: type[Component]) -> float:
        """Spearman ρ over the components of one kind (``Head`` or ``Mlp``) only.

        Args:
            kind: the component class whose components are compared (needs ``exact``).
        """
        chosen = [i for i, c in enumerate(self.components) if isinstance(c, kind)]
        estimate = self.mean_estimates().numpy()[chosen]
        exact = self.mean_exact().numpy()[chosen]
        if len(chosen) < 3:
            return math.nan
        return float(spearmanr(estimate, exact).statistic)

    def top(self, n: int = 5) -> list[tuple[Component, float]]:
        """The ``n`` components with the largest estimated effect magnitude (mean over pairs).

        Args:
            n: how many components to return.
        """
        mean = self.mean_estimates()
        order = torch.argsort(torch.nan_to_num(mean.abs(), nan=-1.0), descending=True)[:n]
        return [(self.components[i], float(mean[i])) for i in order.tolist()]

    def to_frame(self) -> pd.DataFrame:
        """One row per component: mean estimate (raw, normalised) and, if computed, exact."""
        frame = pd.DataFrame(
            {
                "component": [str(c) for c in self.components],
                "estimate": self.mean_estimates().numpy(),
                "estimate_normalised": self.mean_estimates(normalised=True).numpy(),
            }
        )
        if self.exact is not None:
            frame["exact"] = self.mean_exact().numpy()
            frame["exact_normalised"] = self.mean_exact(normalised=True).numpy()
        return frame

    def plot(self, *, title: str | None = None) -> Figure:
        """Estimate against exact effect per component (or, without exact effects, the head
        estimates as a layer × head heatmap).

        Args:
            title: figure title (default: one naming the direction and Spearman ρ).
        """
        if self.exact is None:
            from circuitlab.decomposition.plots import head_grid, plot_head_heatmap

            mean = self.mean_estimates()
            chosen = [(i, c) for i, c in enumerate(self.components) if isinstance(c, Head)]
            matrix, columns = head_grid(
                [(c.layer, c.head) for _, c in chosen], [float(mean[i]) for i, _ in chosen]
            )
            return plot_head_heatmap(
                matrix,
                title=title or f"attribution patching estimates ({self.model or 'model'})",
                colorbar_label=f"estimated change of {self.metric}",
                heads=columns,
            )
        figure = Figure(figsize=(5.2, 4.6), layout="constrained")
        axes = figure.subplots()
        estimate, exact = self.mean_estimates().numpy(), self.mean_exact().numpy()
        kinds = np.array([type(c).__name__ for c in self.components])
        for kind, color in (("Embedding", "#444444"), ("Head", "#2e6fba"), ("Mlp", "#c0392b")):
            chosen = kinds == kind
            if chosen.any():
                axes.scatter(exact[chosen], estimate[chosen], s=14, color=color, label=kind.lower())
        low = float(np.nanmin(np.concatenate([estimate, exact])))
        high = float(np.nanmax(np.concatenate([estimate, exact])))
        axes.plot([low, high], [low, high], color="#999999", linewidth=0.8, linestyle="--")
        axes.set_xlabel(f"exact patching effect ({self.metric})")
        axes.set_ylabel("attribution patching estimate")
        axes.legend(fontsize=8)
        axes.set_title(
            title or f"{self.direction}: estimate vs exact, Spearman ρ = {self.spearman:.2f}",
            fontsize=10,
        )
        return figure

    def __repr__(self) -> str:
        best = ", ".join(f"{c}={v:+.2f}" for c, v in self.top(3))
        rho = f", ρ={self.spearman:.2f}" if self.exact is not None else ""
        return (
            f"AttributionPatching({self.direction}, {len(self.components)} components, "
            f"{len(self.clean)} pairs{rho}; top: {best})"
        )
