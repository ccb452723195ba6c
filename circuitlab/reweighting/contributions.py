"""Cached label-word contributions: what every component writes into each label word's logit.

One streaming pass of direct logit attribution over the prompts gives, per example, a
[component, label] matrix ``g`` (see `circuitlab.direct_logit_attribution`) and the full
model's label-word logits from the same pass. Everything learned on top of them (component
reweighting, calibration) runs on these cached tensors with the model frozen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitlab.checks import checked_arguments
from circuitlab.components import Component
from circuitlab.decomposition.attribution import direct_logit_attribution
from circuitlab.errors import InputError
from circuitlab.fingerprint import model_fingerprint
from circuitlab.model import ModelHandle, Prompts
from circuitlab.results import Result
from circuitlab.tasks import ClassificationTask

__all__ = ["LabelContributions", "label_contributions", "model_fingerprint"]


@dataclass(frozen=True)
class LabelContributions(Result):
    """Each component's direct contribution to each label word's logit, per example.

    Attributes:
        values: contribution of each component to each label word (logits).
        logits: the full model's logits of the label words (same forward pass).
        labels: the gold label index of each example, or ``None`` when unknown.
        components: the components along the component axis (embedding, heads, biases, MLPs).
        label_words: the label words, in label-index order.
        model_name: the model's name (for messages).
        fingerprint: `model_fingerprint` of the model that produced the values.
    """

    values: Float[Tensor, "example component label"]
    logits: Float[Tensor, "example label"]
    labels: Int[Tensor, " example"] | None
    components: tuple[Component, ...]
    label_words: tuple[str, ...]
    model_name: str
    fingerprint: str

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def __repr__(self) -> str:
        labelled = "labelled" if self.labels is not None else "unlabelled"
        return (
            f"LabelContributions({len(self)} {labelled} examples x {len(self.components)} "
            f"components x {len(self.label_words)} label words, model {self.model_name!r})"
        )

    def to_frame(self) -> Any:
        """Long table: one row per (example, component, label word) with the contribution."""
        import pandas as pd

        index = pd.MultiIndex.from_product(
            [range(len(self)), [str(c) for c in self.components], list(self.label_words)],
            names=["example", "component", "label_word"],
        )
        frame = pd.DataFrame({"contribution": self.values.reshape(-1).numpy()}, index=index)
        return frame.reset_index()

    def plot(self, k: int = 15, *, title: str | None = None) -> Any:
        """Bar chart of the ``k`` components that separate the label words most: each one's
        mean contribution to the first label word minus the mean over the others (logits).

        Args:
            k: how many components to draw (largest absolute margin).
            title: figure title (default: one naming the first label word).
        """
        from circuitlab.decomposition.plots import plot_bars

        if len(self.label_words) < 2:
            raise InputError("A plot needs at least two label words to compare.")
        mean = self.values.mean(dim=0)  # [component, label]
        margin = mean[:, 0] - mean[:, 1:].mean(dim=1)
        order = torch.argsort(margin.abs(), descending=True)[:k]
        return plot_bars(
            [str(self.components[int(i)]) for i in order],
            [float(margin[i]) for i in order],
            title=title
            or f"components separating {self.label_words[0]!r} from the other label words",
            value_label=f"mean contribution to {self.label_words[0]!r} minus "
            + (
                f"to {self.label_words[1]!r}"
                if len(self.label_words) == 2
                else "the mean of the others"
            )
            + f" (logits, {len(self)} examples)",
        )

    def subset(self, indices: Sequence[int] | Tensor) -> LabelContributions:
        """The examples at ``indices`` (a list of positions or a boolean mask).

        Args:
            indices: example positions in ``0 .. len - 1``, or a boolean mask [example].
        """
        index = torch.as_tensor(indices)
        if index.dtype != torch.bool:
            index = index.long()
            if index.numel() and not (0 <= int(index.min()) and int(index.max()) < len(self)):
                raise InputError(
                    f"Indices must lie in 0 .. {len(self) - 1} for {len(self)} examples."
                )
        return LabelContributions(
            values=self.values[index],
            logits=self.logits[index],
            labels=None if self.labels is None else self.labels[index],
            components=self.components,
            label_words=self.label_words,
            model_name=self.model_name,
            fingerprint=self.fingerprint,
        )

    def select(self, components: Sequence[Component]) -> Float[Tensor, "example selected label"]:
        """The values of ``components`` only, in that order.

        Args:
            components: components held by these contributions, in the order wanted.
        """
        where = {component: index for index, component in enumerate(self.components)}
        missing = [str(component) for component in components if component not in where]
        if missing:
            raise InputError(
                f"Components {missing[:5]} are not in these contributions (they hold "
                f"{len(self.components)} components of model {self.model_name!r})."
            )
        return self.values[:, [where[component] for component in components]]

    def require_labels(self, what: str) -> Int[Tensor, " example"]:
        """The gold labels, or a clear error saying ``what`` needs them.

        Args:
            what: what needs the labels, named in the error (``"fit()"``).
        """
        if self.labels is None:
            raise InputError(
                f"{what} needs gold labels, but these contributions have none. Build them from "
                f"a labelled task (label_contributions(model, task, ...)) or pass y=..."
            )
        return self.labels


@checked_arguments
def label_contributions(
    model: ModelHandle,
    data: ClassificationTask | Prompts,
    *,
    label_words: Sequence[str] | None = None,
    template: int = 0,
    demos: Sequence[tuple[str, int]] = (),
    batch_size: int = 8,
    progress: bool | None = None,
) -> LabelContributions:
    """Cache every component's contribution to the label words, in one streaming pass.

    Args:
        model: the model handle (frozen; nothing is trained here).
        data: a labelled `ClassificationTask` (its prompts are built with ``template`` and
            ``demos``), or ready prompt texts (then pass ``label_words``; labels stay unknown).
        label_words: the label words, one single token each (default: the task's).
        template: the task template to render (tasks only).
        demos: ``(text, label index)`` demonstrations put in front of every query (tasks only).
        batch_size: prompts per forward pass.
        progress: progress bar (default: shown once the call
            runs past 2 s; ``False`` never; see `circuitlab.progress`).

    Returns:
        `LabelContributions` with values [example, component, label].

    Example:
        >>> train = label_contributions(model, task.subset(range(20)), demos=demos)
        >>> train.values.shape       # 20 examples, 301 components, 2 label words
        torch.Size([20, 301, 2])
    """
    if isinstance(data, ClassificationTask):
        words = tuple(label_words or data.label_words)
        if len(words) != data.n_labels:
            raise InputError(
                f"Task {data.name!r} has {data.n_labels} classes but {len(words)} label words "
                f"were given. Give one label word per class."
            )
        prompts = [data.prompt(text, template=template, demos=demos) for text in data.texts]
        labels: Tensor | None = torch.tensor(data.labels, dtype=torch.long)
    else:
        if label_words is None:
            raise InputError(
                "Prompts without a task need label_words=[...] (one single-token word per "
                "class, e.g. [' negative', ' positive'])."
            )
        if demos:
            raise InputError("demos only apply to a task; put them in the prompt texts yourself.")
        words = tuple(label_words)
        prompts = [data] if isinstance(data, str) else list(data)
        labels = None
    if len(prompts) == 0:
        raise InputError("No examples were given (an empty list). Pass at least one prompt.")
    if len(set(words)) != len(words) or len(words) < 2:
        raise InputError(f"Give at least two distinct label words, got {list(words)}.")
    model.token_ids(words)  # each must be one token: a clear error names the word otherwise
    attribution = direct_logit_attribution(
        model, prompts, list(words), batch_size=batch_size, progress=progress
    )
    return LabelContributions(
        values=attribution.values,
        logits=attribution.logits,
        labels=labels,
        components=attribution.components,
        label_words=words,
        model_name=model.name,
        fingerprint=model_fingerprint(model),
    )
