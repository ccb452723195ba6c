"""Component accuracy on a labelled task, and the paper's component types.

Each component ``j`` predicts the label whose word gets the largest direct logit attribution
``g_j`` from it; its accuracy is the fraction of examples where that is the gold label
("When Parts are Greater Than Sums", arXiv 2406.13131). Good components have the highest
accuracy, bad ones the lowest (below chance), label-biased ones predict the same label for
every example.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitlab.checks import checked_arguments
from circuitlab.components import Component
from circuitlab.decomposition.attribution import direct_logit_attribution
from circuitlab.decomposition.results import ComponentTable
from circuitlab.errors import InputError
from circuitlab.model import ModelHandle
from circuitlab.tasks import ClassificationTask

__all__ = ["ComponentAccuracy", "component_accuracy"]


@dataclass(frozen=True)
class ComponentAccuracy(ComponentTable):
    """Accuracy of every component (and of the full model) on a classification task.

    Attributes:
        accuracy: fraction of examples each component classifies correctly (0..1).
        predictions: the label index each component predicts for each example.
        labels: the gold label index of each example.
        model_predictions: the full model's prediction (argmax of the label-word logits).
        components: the components along the component axis.
        label_words: the label words, in label-index order.
        task: the task's name.
    """

    accuracy: Float[Tensor, " component"]
    predictions: Int[Tensor, "example component"]
    labels: Int[Tensor, " example"]
    model_predictions: Int[Tensor, " example"]
    components: tuple[Component, ...]
    label_words: tuple[str, ...]
    task: str = "task"

    score_name: ClassVar[str] = "accuracy (fraction correct)"
    score_short: ClassVar[str] = "accuracy"

    def __repr__(self) -> str:
        best, value = self.top(1)[0]
        return (
            f"ComponentAccuracy({self.task!r}: {len(self.labels)} examples, "
            f"{len(self.components)} components; model {self.model_accuracy:.3f}, "
            f"best {best} {value:.3f}, chance {self.chance:.3f})"
        )

    @property
    def score_center(self) -> float:  # type: ignore[override]
        """Chance accuracy (the heatmap's white point)."""
        return self.chance

    @property
    def chance(self) -> float:
        """Accuracy of a uniform random guess: 1 / number of labels."""
        return 1.0 / len(self.label_words)

    @property
    def model_accuracy(self) -> float:
        """Accuracy of the full model (argmax over the label words' logits)."""
        return float((self.model_predictions == self.labels).float().mean())

    def scores(self, column: int | str = 0) -> Float[Tensor, " component"]:
        """Each component's accuracy (``column`` is ignored: there is one score per component).

        Args:
            column: Accepted for the shared table interface and ignored (one accuracy per
                component).
        """
        return self.accuracy

    def _column_label(self, column: int | str) -> str:
        return f"task {self.task}, {len(self.labels)} examples, chance {self.chance:.2f}"

    def good(self, k: int = 1) -> list[tuple[Component, float]]:
        """The ``k`` most accurate components (ORACLE-T1 is ``good(1)``).

        Args:
            k: How many components to return.
        """
        return self.top(k)

    def bad(self, k: int = 1) -> list[tuple[Component, float]]:
        """The ``k`` least accurate components (ORACLE-B1 is ``bad(1)``).

        Args:
            k: How many components to return.
        """
        return self.bottom(k)

    def majority_label(self) -> tuple[Int[Tensor, " component"], Float[Tensor, " component"]]:
        """Each component's most predicted label and the fraction of examples it predicts it for."""
        counts = torch.nn.functional.one_hot(self.predictions, len(self.label_words)).sum(dim=0)
        top = counts.max(dim=1)
        return top.indices, top.values.float() / len(self.labels)

    def label_biased(self) -> list[tuple[Component, str]]:
        """Components that predict the same label for every example, with that label word."""
        label, fraction = self.majority_label()
        return [
            (component, self.label_words[int(label[i])])
            for i, component in enumerate(self.components)
            if fraction[i] == 1.0
        ]

    def component_types(self) -> dict[str, Any]:
        """The paper's summary: good, bad and label-biased components, and how many are biased."""
        biased = self.label_biased()
        return {
            "model_accuracy": self.model_accuracy,
            "chance": self.chance,
            "good": [(str(c), v) for c, v in self.good(1)],
            "bad": [(str(c), v) for c, v in self.bad(1)],
            "bad_below_chance": self.bad(1)[0][1] < self.chance,
            "label_biased": [(str(c), word) for c, word in biased],
            "label_biased_fraction": len(biased) / len(self.components),
        }

    def to_frame(self) -> Any:
        """One row per component: accuracy, majority label and whether it is label-biased."""
        import pandas as pd

        label, fraction = self.majority_label()
        return pd.DataFrame(
            {
                "component": [str(c) for c in self.components],
                "accuracy": self.accuracy.numpy(),
                "majority_label": [self.label_words[int(i)] for i in label],
                "majority_fraction": fraction.numpy(),
                "label_biased": (fraction == 1.0).numpy(),
            }
        )


@checked_arguments
def component_accuracy(
    model: ModelHandle,
    task: ClassificationTask,
    *,
    template: int = 0,
    k_shot: int = 0,
    demo_pool: ClassificationTask | None = None,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool | None = None,
) -> ComponentAccuracy:
    """Score every component's accuracy on ``task`` from its direct logit attribution.

    Args:
        model: the model handle.
        task: a labelled classification task (see `circuitlab.tasks`).
        template: which of the task's prompt templates to use.
        k_shot: number of in-context demonstrations in every prompt.
        demo_pool: where demonstrations come from (default: the task itself, never the query).
        seed: seed for drawing demonstrations.
        batch_size: prompts per forward pass.
        progress: progress bar (default: shown once the call
            runs past 2 s; ``False`` never; see `circuitlab.progress`).

    Returns:
        A `ComponentAccuracy`.

    Example:
        >>> result = component_accuracy(model, load_task("sentiment"), k_shot=4)
        >>> result.good(1), result.bad(1), len(result.label_biased())
    """
    if len(task) == 0:
        raise InputError(f"Task {task.name!r} has no examples.")
    model.token_ids(task.label_words)  # every label word must be one token: clear error if not
    prompts = task.prompts(template=template, k_shot=k_shot, demo_pool=demo_pool, seed=seed)
    attribution = direct_logit_attribution(
        model, prompts, list(task.label_words), batch_size=batch_size, progress=progress
    )
    labels = torch.tensor(task.labels, dtype=torch.long)
    predictions = attribution.values.argmax(dim=-1)  # [example, component]
    return ComponentAccuracy(
        accuracy=(predictions == labels[:, None]).float().mean(dim=0),
        predictions=predictions,
        labels=labels,
        model_predictions=attribution.logits.argmax(dim=-1),
        components=attribution.components,
        label_words=tuple(task.label_words),
        task=task.name,
    )
