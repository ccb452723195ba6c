"""Static matplotlib figures of component scores (offline, no display needed).

Figures are built with matplotlib's object API (no pyplot state, no GUI backend): save them
with ``figure.savefig("out.png", dpi=150)``; notebooks display them inline.

Conventions shared by every figure of the package:

- heatmaps label every layer row (up to 40 layers) and every column with its real index, so a
  subset of heads shows the heads that were measured, not ``0 .. n``; cells that were not
  measured are hatched grey and the axis label says so;
- each heatmap panel has its own colour bar, full height, right beside it;
- a bar too short to see (a zero value) gets a marker, so it does not vanish.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = [
    "NOT_MEASURED",
    "ZERO_BAR",
    "head_grid",
    "mark_short_bars",
    "plot_bars",
    "plot_head_heatmap",
    "plot_layer_panels",
]

NOT_MEASURED = "hatched: not measured"
ZERO_BAR = "zero-bar"  # gid of the markers drawn on bars too short to see
_SHORT = 0.01  # a bar shorter than this fraction of the largest one is marked
_ANNOTATE_MAX = 40  # annotate the values of a sparse panel with at most this many cells


def head_grid(
    heads: Sequence[tuple[int, int]], values: Sequence[float], n_layers: int | None = None
) -> tuple[np.ndarray, list[int]]:
    """Arrange head scores as [layer, measured head]: one column per head index measured.

    Args:
        heads: ``(layer, head)`` of each value.
        values: one value per head.
        n_layers: rows of the grid (default: the highest layer + 1).

    Returns:
        The matrix (NaN where a layer's head was not measured) and the real head index of
        each column, ascending.
    """
    columns = sorted({head for _, head in heads})
    where = {head: index for index, head in enumerate(columns)}
    rows = n_layers if n_layers is not None else max(layer for layer, _ in heads) + 1
    matrix = np.full((rows, len(columns)), np.nan)
    for (layer, head), value in zip(heads, values, strict=True):
        matrix[layer, where[head]] = value
    return matrix, columns


def mark_short_bars(
    axes: Axes,
    positions: Sequence[float],
    values: Sequence[float],
    colors: Sequence[object],
    *,
    horizontal: bool = False,
    base: float = 0.0,
) -> int:
    """Draw a marker on every bar too short to see (a zero value), at the bar's end.

    The markers carry the gid `ZERO_BAR`. Returns how many bars were marked.
    """
    lengths = np.abs(np.asarray(values, dtype=float) - base)
    finite = lengths[np.isfinite(lengths)]
    largest = float(finite.max()) if finite.size else 0.0
    marked = 0
    for position, value, length, color in zip(positions, values, lengths, colors, strict=True):
        if not np.isfinite(length) or length > _SHORT * largest:
            continue
        x, y = (value, position) if horizontal else (position, value)
        axes.plot(
            [x], [y], marker="D", markersize=5, color=color, markeredgecolor="black",
            markeredgewidth=0.8, linestyle="none", clip_on=False, zorder=4, gid=ZERO_BAR,
        )  # fmt: skip
        marked += 1
    return marked


def _layer_ticks(axes: Axes, n_layers: int) -> None:
    """Label every layer row (every few when there are more than 40)."""
    step = 1 if n_layers <= 40 else -(-n_layers // 30)
    axes.set_yticks(range(0, n_layers, step))
    axes.tick_params(axis="y", labelsize=7 if n_layers > 20 else 9)


def _draw_heatmap(
    figure: Figure,
    axes: Axes,
    colorbar_axes: Axes,
    matrix: np.ndarray,
    labels: Sequence[str],
    *,
    center: float,
    colorbar_label: str | None,
    xlabel: str,
) -> None:
    """One heatmap panel and its colour bar in ``colorbar_axes``; NaN cells hatched."""
    n_rows, n_columns = matrix.shape
    finite = np.isfinite(matrix)
    spread = float(np.max(np.abs(matrix[finite] - center))) if finite.any() else 0.0
    spread = spread or 1.0
    norm = TwoSlopeNorm(vcenter=center, vmin=center - spread, vmax=center + spread)
    cmap = colormaps["RdBu_r"].with_extremes(bad=(0.0, 0.0, 0.0, 0.0))  # NaN: see the hatching
    missing = not finite.all()
    if missing:
        axes.add_patch(
            Rectangle(
                (-0.5, -0.5), n_columns, n_rows, facecolor="#ececec", edgecolor="#b0b0b0",
                hatch="///", linewidth=0.0, zorder=0,
            )
        )  # fmt: skip
    image = axes.imshow(
        matrix, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest", zorder=1
    )
    axes.set_xticks(range(n_columns), labels, fontsize=7 if n_columns > 16 else 9)
    _layer_ticks(axes, n_rows)
    if missing:
        xlabel = f"{xlabel}\n({NOT_MEASURED})" if xlabel else NOT_MEASURED
    axes.set_xlabel(xlabel, fontsize=9)
    if missing and finite.sum() <= _ANNOTATE_MAX:  # a sparse panel: write the values in
        for row, column in zip(*np.nonzero(finite), strict=True):
            value = float(matrix[row, column])
            dark = abs(value - center) > 0.6 * spread
            axes.text(
                column, row, f"{value:.2g}", ha="center", va="center", fontsize=7,
                color="white" if dark else "black", zorder=2,
            )  # fmt: skip
    colorbar = figure.colorbar(image, cax=colorbar_axes)
    colorbar.set_label(colorbar_label or "", fontsize=9)
    colorbar.ax.tick_params(labelsize=8)


def _heatmap_figure(
    panels: Sequence[tuple[np.ndarray, Sequence[str]]], n_layers: int
) -> tuple[Figure, list[tuple[Axes, Axes]]]:
    """A row of (heatmap, colour bar) pairs, each colour bar right beside its own panel."""
    widths = [max(matrix.shape[1], 1) + 1.5 for matrix, _ in panels]
    bar = 0.35  # colour-bar width, in the same units as a heatmap column
    figure = Figure(
        figsize=(
            min(2.5 + 0.45 * sum(widths) + 0.9 * len(panels), 16.0),
            min(2.6 + 0.24 * n_layers, 12.0),
        ),
        layout="constrained",
    )
    ratios = [value for width in widths for value in (width, bar)]
    grid = figure.add_gridspec(1, len(ratios), width_ratios=ratios)
    pairs = [
        (figure.add_subplot(grid[0, 2 * i]), figure.add_subplot(grid[0, 2 * i + 1]))
        for i in range(len(panels))
    ]
    return figure, pairs


def plot_head_heatmap(
    matrix: np.ndarray,
    *,
    title: str,
    colorbar_label: str,
    center: float = 0.0,
    heads: Sequence[int] | None = None,
) -> Figure:
    """Layer x head heatmap with a diverging colour map centred on ``center``.

    Args:
        matrix: values of shape [layer, head column]; NaN where not measured (hatched).
        title: figure title.
        colorbar_label: what the colours measure (with units).
        center: value drawn white (0 for attributions, chance for accuracies).
        heads: the real head index of each column (default ``0 .. n - 1``); `head_grid`
            builds the matrix and these from a subset of heads.
    """
    n_layers, n_heads = matrix.shape
    heads = list(range(n_heads)) if heads is None else list(heads)
    figure, [(axes, colorbar_axes)] = _heatmap_figure([(matrix, heads)], n_layers)
    contiguous = heads == list(range(len(heads)))
    _draw_heatmap(
        figure,
        axes,
        colorbar_axes,
        matrix,
        [str(head) for head in heads],
        center=center,
        colorbar_label=colorbar_label,
        xlabel="head" if contiguous else "head (only the heads measured)",
    )
    axes.set_ylabel("layer")
    axes.set_title(title, fontsize=10)
    return figure


def plot_bars(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    value_label: str,
    center: float = 0.0,
    center_label: str | None = None,
) -> Figure:
    """Horizontal bar chart, largest first, drawn from ``center``: red above, blue below.

    Args:
        labels: one label per bar, in order (top first).
        values: the bar values.
        title: figure title.
        value_label: what the values measure (with units).
        center: where the bars start (0, or chance for accuracies).
        center_label: legend text of the line at ``center`` (e.g. ``"chance 0.50"``).
    """
    figure = Figure(figsize=(7.0, 1.4 + 0.32 * len(labels)), layout="constrained")
    axes = figure.subplots()
    positions = np.arange(len(labels))[::-1]
    colors = ["#c0392b" if value >= center else "#2e6fba" for value in values]
    offsets = [value - center for value in values]
    axes.barh(positions, offsets, left=center, color=colors)
    mark_short_bars(axes, positions, values, colors, horizontal=True, base=center)
    axes.set_yticks(positions, labels)
    axes.axvline(center, color="black", linewidth=0.8, label=center_label)
    if center_label:
        axes.legend(loc="best", fontsize=8)
    axes.set_xlabel(value_label)
    axes.set_title(title, fontsize=10)
    return figure


def plot_layer_panels(
    panels: Sequence[tuple[str, np.ndarray, Sequence[str]]],
    *,
    title: str,
    colorbar_label: str,
    xlabels: Sequence[str] | None = None,
) -> Figure:
    """Side-by-side layer-row heatmaps, each with its own colour scale centred on 0.

    Each panel's colour bar sits right beside it, full height, labelled with the panel's name.

    Args:
        panels: ``(name, matrix [layer, column], column labels)`` per panel, e.g. the heads
            ([layer, measured head]) beside the MLPs and whole layers ([layer, 1] each).
        title: figure title.
        colorbar_label: what the colours measure (with units).
        xlabels: an x-axis label per panel (default: none but the hatching note).
    """
    n_layers = max(matrix.shape[0] for _, matrix, _ in panels)
    figure, pairs = _heatmap_figure([(matrix, labels) for _, matrix, labels in panels], n_layers)
    xlabels = list(xlabels) if xlabels is not None else [""] * len(panels)
    for (axes, colorbar_axes), (name, matrix, labels), xlabel in zip(
        pairs, panels, xlabels, strict=True
    ):
        if matrix.shape[0] < n_layers:
            padding = np.full((n_layers - matrix.shape[0], matrix.shape[1]), np.nan)
            matrix = np.vstack([matrix, padding])
        _draw_heatmap(
            figure,
            axes,
            colorbar_axes,
            matrix,
            labels,
            center=0.0,
            colorbar_label=f"{name}: {colorbar_label}",
            xlabel=xlabel,
        )
        axes.set_title(name, fontsize=10)
        if axes is pairs[0][0]:
            axes.set_ylabel("layer")
    figure.suptitle(title, fontsize=10)
    return figure
