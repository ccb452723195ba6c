"""The result of an ablation study: a metric per example with each component knocked out."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from circuitlab.components import Component, Head, Layer, Mlp
from circuitlab.decomposition.results import ComponentTable

__all__ = ["AblationEffects"]


@dataclass(frozen=True)
class AblationEffects(ComponentTable):
    """Effect of ablating each component, one at a time, on a metric.

    A component's score (`effects`) is the mean metric with it ablated minus the mean metric
    of the intact model: negative means the component helps.

    Attributes:
        ablated: the metric of each example with each component ablated.
        baseline: the metric of each example with nothing ablated.
        components: the ablated components, along the component axis.
        metric: the metric's name (see `circuitlab.ablation.METRICS`).
        method: the ablation method (``zero``, ``mean`` or ``resample``).
        data: what was measured (the task's name, or ``prompts``).
    """

    ablated: Float[Tensor, "example component"]
    baseline: Float[Tensor, " example"]
    components: tuple[Component, ...]
    metric: str
    method: str
    data: str = "prompts"

    score_name: ClassVar[str] = "effect (ablated - intact metric)"
    score_short: ClassVar[str] = "effect"

    def __len__(self) -> int:
        return int(self.baseline.shape[0])

    def __repr__(self) -> str:
        worst, value = self.bottom(1)[0]
        return (
            f"AblationEffects({self.data!r}: {len(self)} example{'s' * (len(self) != 1)}, "
            f"{len(self.components)} "
            f"components, {self.method} ablation; {self.metric} {self.baseline_value:.4g} intact, "
            f"most negative effect {worst} {value:+.4g})"
        )

    @property
    def baseline_value(self) -> float:
        """The intact model's mean metric."""
        return float(self.baseline.mean())

    @property
    def effects(self) -> Float[Tensor, " component"]:
        """Mean metric with each component ablated, minus the intact mean."""
        return self.ablated.mean(dim=0) - self.baseline.mean()

    @property
    def standard_errors(self) -> Float[Tensor, " component"]:
        """Standard error of each effect (paired over examples; 0 for a single example)."""
        if len(self) < 2:
            return torch.zeros(len(self.components))
        differences = self.ablated - self.baseline[:, None]
        return differences.std(dim=0) / math.sqrt(len(self))

    def scores(self, column: int | str = 0) -> Float[Tensor, " component"]:
        """The effects (``column`` is ignored: one score per component).

        Args:
            column: Accepted for the shared table interface and ignored.
        """
        return self.effects

    def _column_label(self, column: int | str) -> str:
        return (
            f"{self.method} ablation on {self.data} ({len(self)} example"
            f"{'' if len(self) == 1 else 's'}), {self.metric} "
            f"intact {self.baseline_value:.3g}"
        )

    def to_frame(self) -> Any:
        """One row per component: kind, layer, head, ablated metric, effect and its error."""
        import pandas as pd

        return pd.DataFrame(
            {
                "component": [str(c) for c in self.components],
                "kind": [type(c).__name__.lower() for c in self.components],
                "layer": [getattr(c, "layer", -1) for c in self.components],
                "head": [getattr(c, "head", -1) for c in self.components],
                f"{self.metric}_ablated": self.ablated.mean(dim=0).numpy(),
                f"{self.metric}_intact": self.baseline_value,
                "effect": self.effects.numpy(),
                "standard_error": self.standard_errors.numpy(),
            }
        )

    def plot(self, *, title: str | None = None) -> Any:
        """Heatmaps of the effects: layer x head, and the MLPs and whole layers beside it.

        Each panel has its own colour scale and colour bar (a whole layer's effect dwarfs a
        head's). The head columns are the heads measured, by their real index; unmeasured
        cells are hatched.

        Args:
            title: Figure title (default: one naming the metric and the method).
        """
        from circuitlab.decomposition.plots import head_grid, plot_layer_panels

        n_layers = max(getattr(c, "layer", 0) for c in self.components) + 1
        effects = self.effects.numpy()
        panels = []
        xlabels = []
        heads = [(i, c) for i, c in enumerate(self.components) if isinstance(c, Head)]
        if heads:
            matrix, columns = head_grid(
                [(c.layer, c.head) for _, c in heads], [effects[i] for i, _ in heads], n_layers
            )
            panels.append(("heads", matrix, [str(h) for h in columns]))
            contiguous = columns == list(range(len(columns)))
            xlabels.append("head" if contiguous else "head (only the heads measured)")
        for kind, name in ((Mlp, "MLP"), (Layer, "layer")):
            column = np.full((n_layers, 1), np.nan)
            found = False
            for index, component in enumerate(self.components):
                if isinstance(component, kind):
                    column[component.layer, 0] = effects[index]
                    found = True
            if found:
                panels.append((name, column, [name]))
                xlabels.append("")
        return plot_layer_panels(
            panels,
            title=title
            or f"effect of ablating each component on {self.metric}\n{self._column_label(0)}",
            colorbar_label=f"{self.score_short} on {self.metric}",
            xlabels=xlabels,
        )
