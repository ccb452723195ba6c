"""Result objects of the decomposition: tensors plus component labels, tables, files, figures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitlab.components import Component, Head, parse_components
from circuitlab.errors import InputError
from circuitlab.results import Result

__all__ = ["Attribution", "ComponentTable"]


class ComponentTable(Result, abstract=True):
    """Shared behaviour of results that give each component a score.

    Subclasses define ``components`` and ``scores(column)`` ([component] tensor). Saving,
    loading and the notebook view come from `circuitlab.results.Result`.
    """

    components: tuple[Component, ...]
    score_name: ClassVar[str] = "score"
    score_short: ClassVar[str] = "score"
    score_center: ClassVar[float] = 0.0

    def scores(self, column: int | str = 0) -> Float[Tensor, " component"]:  # pragma: no cover
        """One score per component [component], from one column of the result.

        Args:
            column: The score column, by index or label.
        """
        raise NotImplementedError

    def _ranked(self, k: int, column: int | str, descending: bool) -> list[tuple[Component, float]]:
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}.")
        values = self.scores(column)
        order = torch.argsort(values, descending=descending, stable=True)[:k]
        return [(self.components[int(i)], float(values[i])) for i in order]

    def top(self, k: int = 10, column: int | str = 0) -> list[tuple[Component, float]]:
        """The ``k`` components with the highest score, highest first.

        Args:
            k: How many components to return.
            column: The score column, by index or label.
        """
        return self._ranked(k, column, descending=True)

    def bottom(self, k: int = 10, column: int | str = 0) -> list[tuple[Component, float]]:
        """The ``k`` components with the lowest score, lowest first.

        Args:
            k: How many components to return.
            column: The score column, by index or label.
        """
        return self._ranked(k, column, descending=False)

    def score_of(self, component: Component | str, column: int | str = 0) -> float:
        """The score of one component (``"L12H3"`` or a `Head`...).

        Args:
            component: The component, as a value or a string such as ``"L3H1"``.
            column: The score column, by index or label.
        """
        wanted = parse_components([component])[0]
        try:
            index = self.components.index(wanted)
        except ValueError:
            raise InputError(f"Component {wanted} is not part of this result.") from None
        return float(self.scores(column)[index])

    def head_matrix(self, column: int | str = 0) -> Float[Tensor, "layer head_index"]:
        """Scores of the attention heads arranged as [layer, head].

        Args:
            column: The score column, by index or label.
        """
        heads = [(i, c) for i, c in enumerate(self.components) if isinstance(c, Head)]
        if not heads:
            raise InputError("This result has no attention-head components.")
        n_layers = max(c.layer for _, c in heads) + 1
        n_heads = max(c.head for _, c in heads) + 1
        matrix = torch.full((n_layers, n_heads), float("nan"))
        values = self.scores(column)
        for index, component in heads:
            matrix[component.layer, component.head] = values[index]
        return matrix

    def plot_heads(self, column: int | str = 0, *, title: str | None = None) -> Any:
        """Layer x head heatmap of the scores (matplotlib Figure).

        One column per head index measured, labelled with its real index (a subset of heads
        shows those heads); cells not measured are hatched.

        Args:
            column: The score column, by index or label.
            title: Figure title.
        """
        from circuitlab.decomposition.plots import head_grid, plot_head_heatmap

        heads = [(i, c) for i, c in enumerate(self.components) if isinstance(c, Head)]
        if not heads:
            raise InputError("This result has no attention-head components.")
        values = self.scores(column)
        matrix, columns = head_grid(
            [(c.layer, c.head) for _, c in heads], [float(values[i]) for i, _ in heads]
        )
        return plot_head_heatmap(
            matrix,
            heads=columns,
            title=title or f"{self.score_short} per head\n{self._column_label(column)}",
            colorbar_label=self.score_name,
            center=self.score_center,
        )

    def plot(self, k: int = 15, column: int | str = 0, *, title: str | None = None) -> Any:
        """Bar chart of the ``k`` components with the largest absolute score (matplotlib Figure).

        Args:
            k: How many components to draw.
            column: The score column, by index or label.
            title: Figure title.
        """
        from circuitlab.decomposition.plots import plot_bars

        values = self.scores(column)
        center = self.score_center
        order = torch.argsort((values - center).abs(), descending=True)[:k]
        ranked_by = f"|{self.score_short}|" if center == 0 else f"|{self.score_short} - chance|"
        return plot_bars(
            [str(self.components[int(i)]) for i in order],
            [float(values[i]) for i in order],
            title=title
            or f"top {len(order)} components by {ranked_by}\n{self._column_label(column)}",
            value_label=self.score_name,
            center=center,
            center_label=None if center == 0 else f"chance {center:.2g}",
        )

    def _column_label(self, column: int | str) -> str:
        return str(column)

    @classmethod
    def _from_legacy(
        cls, data: Mapping[str, Any], tensors: Mapping[str, Tensor], path: Path
    ) -> Any:
        """Files of the first format: field tensors by name, the rest and ``kind`` as JSON."""
        meta = dict(data)
        if meta.pop("kind", None) != cls.__name__:
            raise InputError(f"{path} does not hold a circuitlab {cls.__name__}.")
        meta["components"] = tuple(parse_components(meta["components"]))
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in meta.items()}
        return cls(**tensors, **values)


@dataclass(frozen=True)
class Attribution(ComponentTable):
    """Direct logit attribution of every component to every target, per prompt.

    Attributes:
        values: each component's contribution to each target's logit, in logits.
        constant: the part no component owns (final-norm bias through ``W_U``, ``b_U``).
        logits: the model's own logits of the targets (= values summed + constant).
        components: the components along ``values``' second axis.
        targets: a label per target column (``"' Paris'"``, ``"' Yes' - ' No'"``); with
            one target per prompt, the single column ``"per-prompt target"``.
        positions: the position read in each prompt.
        prompts: the prompts, when given as text.
        prompt_targets: with one target per prompt, each prompt's own target label.
    """

    values: Float[Tensor, "batch component target"]
    constant: Float[Tensor, "batch target"]
    logits: Float[Tensor, "batch target"]
    components: tuple[Component, ...]
    targets: tuple[str, ...]
    positions: Int[Tensor, " batch"]
    prompts: tuple[str, ...] = ()
    prompt_targets: tuple[str, ...] = ()

    score_name: ClassVar[str] = "direct logit attribution (logits)"
    score_short: ClassVar[str] = "direct logit attribution"

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def __repr__(self) -> str:
        if self.prompt_targets:
            shown = list(dict.fromkeys(self.prompt_targets))
            more = ", ..." if len(shown) > 3 else ""
            return (
                f"Attribution({len(self)} prompts x {len(self.components)} components, one target "
                f"per prompt [{', '.join(shown[:3])}{more}])"
            )
        return (
            f"Attribution({len(self)} prompts x {len(self.components)} components x "
            f"{len(self.targets)} targets {list(self.targets)})"
        )

    def _column(self, column: int | str) -> int:
        if isinstance(column, str):
            labels = [label.strip("'\"") for label in self.targets]
            for candidates in (list(self.targets), labels):
                if column in candidates:
                    return candidates.index(column)
            raise InputError(f"Unknown target {column!r}; this result has {list(self.targets)}.")
        if not -len(self.targets) <= column < len(self.targets):
            raise InputError(f"Target index {column} is out of range for {len(self.targets)}.")
        return column % len(self.targets)

    def _column_label(self, column: int | str) -> str:
        plural = "s" if len(self) != 1 else ""
        if self.prompt_targets:
            return f"each prompt's own target, mean of {len(self)} prompt{plural}"
        return f"target {self.targets[self._column(column)]}, mean of {len(self)} prompt{plural}"

    def scores(self, column: int | str = 0) -> Float[Tensor, " component"]:
        """Mean attribution over prompts of each component to one target (index or label).

        Args:
            column: The target, by index or label.
        """
        return self.values[:, :, self._column(column)].mean(dim=0)

    def reconstruction_error(self) -> float:
        """Largest |sum of attributions + constant - model logit| over prompts and targets."""
        return float((self.values.sum(dim=1) + self.constant - self.logits).abs().max())

    def to_frame(self) -> Any:
        """Long table: one row per (prompt, component, target) with the attribution."""
        import pandas as pd

        batch = self.values.shape[0]
        index = pd.MultiIndex.from_product(
            [range(batch), [str(c) for c in self.components], list(self.targets)],
            names=["prompt", "component", "target"],
        )
        frame = pd.DataFrame({"attribution": self.values.reshape(-1).numpy()}, index=index)
        frame = frame.reset_index()
        if self.prompt_targets:  # one column: each prompt's own target
            frame["target"] = [self.prompt_targets[row] for row in frame["prompt"]]
        return frame
