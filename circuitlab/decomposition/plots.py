"""Static matplotlib figures of component scores (offline, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg") if matplotlib.get_backend().lower() == "agg" else None
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["plot_bars", "plot_head_heatmap"]


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
    width = min(3.0 + 0.45 * n_heads, 14.0)
    height = min(2.0 + 0.28 * n_layers, 14.0)
    figure, axes = plt.subplots(figsize=(width, height), layout="constrained")
    image = axes.imshow(matrix, cmap="RdBu_r", norm=norm, aspect="auto", interpolation="nearest")
    axes.set_xlabel("head")
    axes.set_ylabel("layer")
    axes.set_xticks(range(n_heads))
    step = max(1, n_layers // 15)
    axes.set_yticks(range(0, n_layers, step))
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label=colorbar_label)
    return figure


def plot_bars(
    labels: Sequence[str], values: Sequence[float], *, title: str, value_label: str
) -> Figure:
    """Horizontal bar chart, largest first, positive bars red and negative blue."""
    figure, axes = plt.subplots(figsize=(7.0, 1.2 + 0.32 * len(labels)), layout="constrained")
    positions = np.arange(len(labels))[::-1]
    colors = ["#c0392b" if value >= 0 else "#2e6fba" for value in values]
    axes.barh(positions, values, color=colors)
    axes.set_yticks(positions, labels)
    axes.axvline(0.0, color="black", linewidth=0.8)
    axes.set_xlabel(value_label)
    axes.set_title(title)
    return figure
