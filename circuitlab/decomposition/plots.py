"""Static matplotlib figures of component scores (offline, no display needed).

Figures are built with matplotlib's object API (no pyplot state, no GUI backend): save them
with ``figure.savefig("out.png", dpi=150)``; notebooks display them inline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

__all__ = ["plot_bars", "plot_head_heatmap", "plot_layer_panels"]


def plot_head_heatmap(
    matrix: np.ndarray,
    *,
    title: str,
    colorbar_label: str,
    center: float = 0.0,
) -> Figure:
    """Layer x head heatmap with a diverging colour map centred on ``center``.

    Args:
        matrix: values of shape [layer, head].
        title: figure title.
        colorbar_label: what the colours measure (with units).
        center: value drawn white (0 for attributions, chance for accuracies).
    """
    n_layers, n_heads = matrix.shape
    spread = float(np.nanmax(np.abs(matrix - center))) or 1.0
    norm = TwoSlopeNorm(vcenter=center, vmin=center - spread, vmax=center + spread)
    width = min(4.0 + 0.45 * n_heads, 14.0)
    height = min(2.2 + 0.22 * n_layers, 12.0)
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="RdBu_r", norm=norm, aspect="auto", interpolation="nearest")
    axes.set_xlabel("head")
    axes.set_ylabel("layer")
    axes.set_xticks(range(n_heads))
    step = max(1, n_layers // 15)
    axes.set_yticks(range(0, n_layers, step))
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, label=colorbar_label)
    return figure


def plot_bars(
    labels: Sequence[str], values: Sequence[float], *, title: str, value_label: str
) -> Figure:
    """Horizontal bar chart, largest first, positive bars red and negative blue."""
    figure = Figure(figsize=(7.0, 1.2 + 0.32 * len(labels)), layout="constrained")
    axes = figure.subplots()
    positions = np.arange(len(labels))[::-1]
    colors = ["#c0392b" if value >= 0 else "#2e6fba" for value in values]
    axes.barh(positions, values, color=colors)
    axes.set_yticks(positions, labels)
    axes.axvline(0.0, color="black", linewidth=0.8)
    axes.set_xlabel(value_label)
    axes.set_title(title, fontsize=10)
    return figure


def plot_layer_panels(
    panels: Sequence[tuple[str, np.ndarray, Sequence[str]]],
    *,
    title: str,
    colorbar_label: str,
) -> Figure:
    """Side-by-side layer-row heatmaps, each with its own colour scale centred on 0.

    Args:
        panels: ``(name, matrix [layer, column], column labels)`` per panel, e.g. the heads
            ([layer, head]) beside the MLPs and whole layers ([layer, 2]).
        title: figure title.
        colorbar_label: what the colours measure (with units).
    """
    n_layers = max(matrix.shape[0] for _, matrix, _ in panels)
    widths = [max(matrix.shape[1], 1) + 1.5 for _, matrix, _ in panels]
    figure = Figure(
        figsize=(min(3.0 + 0.45 * sum(widths), 16.0), min(2.4 + 0.22 * n_layers, 12.0)),
        layout="constrained",
    )
    axes_row = figure.subplots(1, len(panels), width_ratios=widths, squeeze=False)[0]
    step = max(1, n_layers // 15)
    cmap = colormaps["RdBu_r"].with_extremes(bad="#d9d9d9")  # grey: not measured
    for axes, (name, matrix, labels) in zip(axes_row, panels, strict=True):
        spread = float(np.nanmax(np.abs(matrix))) if np.isfinite(matrix).any() else 0.0
        spread = spread or 1.0
        norm = TwoSlopeNorm(vcenter=0.0, vmin=-spread, vmax=spread)
        image = axes.imshow(matrix, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
        axes.set_title(name, fontsize=10)
        axes.set_xticks(range(len(labels)), labels)
        axes.set_yticks(range(0, n_layers, step))
        if axes is axes_row[0]:
            axes.set_ylabel("layer")
        figure.colorbar(image, ax=axes, label=colorbar_label if axes is axes_row[-1] else None)
    figure.suptitle(title, fontsize=10)
    return figure
