"""Component reweighting: one learned weight per component on its label-word contributions.

From "When Parts are Greater Than Sums" (arXiv 2406.13131): with ``g_j`` the direct
contribution of component ``j`` to the label words' logits (see `label_contributions`),
predict with ``softmax(sum_j w_j g_j)`` and learn ``w`` from a few labelled examples,

    loss(w) = mean_i -log softmax(sum_j w_j g_{ij})[y_i]  +  l1 * sum_j |w_j|,

starting from ``w = 1`` (the unweighted sum, i.e. the model's own read-out without the
embedding), full-batch SGD, the model frozen. The authors' code also clips ``w`` to [0, 1]
in the forward pass (``clip=True`` here).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitlab.components import AttnBias, Component, Embedding, Head, Mlp, parse_components
from circuitlab.errors import InputError
from circuitlab.model import ModelHandle, Prompts
from circuitlab.results import read_result_file, write_result_file
from circuitlab.reweighting.contributions import (
    LabelContributions,
    label_contributions,
    model_fingerprint,
)
from circuitlab.training import (
    Stopping,
    TrainingHistory,
    accuracy,
    check_learning_rate,
    check_number,
    classification_objective,
    train,
)

__all__ = ["COMPONENT_SETS", "ComponentReweighting"]

COMPONENT_SETS: dict[str, tuple[type[Component], ...]] = {
    "heads+mlps": (Head, Mlp),
    "all": (Embedding, Head, AttnBias, Mlp),
    "heads": (Head,),
    "mlps": (Mlp,),
}
"""Named component sets: ``heads+mlps`` is the paper's N = L*H + L components."""

_FORMAT = "circuitlab.ComponentReweighting/1"


class ComponentReweighting:
    """Few-shot learned weights on component contributions (scikit-learn style).

    Args:
        l1: L1 penalty on the weights (0.1 in the paper, 0.01 in the authors' code).
        learning_rate: SGD step size (0.05, the paper's).
        max_epochs: most full-batch steps (2000, the paper's).
        patience: non-improving epochs, counted in total, that stop training (3, the code's).
        clip: clip weights to [0, 1] in the forward pass (the authors' code does).
        components: which components get a weight: ``"heads+mlps"`` (the paper), ``"all"``
            (adds the embedding and attention-output biases), ``"heads"``, ``"mlps"``, or an
            explicit list such as ``["L3H1", "MLP7"]``.

    Attributes (after `fit`):
        weights_: the learned weight of each component.
        components_: the weighted components, in order.
        label_words_: the label words the weights were fitted for.
        fingerprint_: `model_fingerprint` of the model the contributions came from.
        model_name_: that model's name.
        history_: the `circuitlab.training.TrainingHistory` (its ``metrics`` hold
            ``train_accuracy``).

    Example:
        >>> train = label_contributions(model, train_task, demos=demos)
        >>> test = label_contributions(model, test_task, demos=demos)
        >>> rw = ComponentReweighting().fit(train)
        >>> rw.score(test), rw.top_components(3)
    """

    def __init__(
        self,
        *,
        l1: float = 0.1,
        learning_rate: float = 0.05,
        max_epochs: int = 2000,
        patience: int = 3,
        clip: bool = False,
        components: str | Sequence[str | Component] = "heads+mlps",
    ) -> None:
        check_number(
            "l1", l1, lambda v: v >= 0, "0 or more (0.01 in the authors' code, 0.1 in the paper)"
        )
        check_learning_rate(learning_rate)
        Stopping(max_epochs=max_epochs, patience=patience)  # validates both
        if isinstance(components, str) and components not in COMPONENT_SETS:
            raise InputError(
                f"Unknown component set {components!r}. Use one of {sorted(COMPONENT_SETS)} "
                f"or a list of components such as ['L3H1', 'MLP7']."
            )
        self.l1 = float(l1)
        self.learning_rate = float(learning_rate)
        self.max_epochs = int(max_epochs)
        self.patience = int(patience)
        self.clip = bool(clip)
        self.components = components if isinstance(components, str) else tuple(components)

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return (
            f"ComponentReweighting(l1={self.l1}, learning_rate={self.learning_rate}, "
            f"max_epochs={self.max_epochs}, patience={self.patience}, clip={self.clip}, "
            f"components={self.components!r}; {state})"
        )

    # ---------------------------------------------------------------- fitting
    @property
    def is_fitted(self) -> bool:
        """Whether `fit` (or `load`) has set the weights."""
        return hasattr(self, "weights_")

    def _chosen(self, X: LabelContributions) -> tuple[Component, ...]:
        if isinstance(self.components, str):
            kinds = COMPONENT_SETS[self.components]
            chosen = tuple(c for c in X.components if isinstance(c, kinds))
        else:
            chosen = tuple(parse_components(list(self.components)))
        if not chosen:
            raise InputError(
                f"No components of the set {self.components!r} are in these contributions."
            )
        return chosen

    def fit(self, X: LabelContributions, y: Int[Tensor, " example"] | None = None) -> Any:
        """Learn the component weights from labelled contributions.

        Args:
            X: `LabelContributions` of the training examples (from `label_contributions`).
            y: gold label indices; default ``X.labels``.

        Returns:
            ``self``.
        """
        _check_contributions(X)
        labels = _labels(X, y, "fit()")
        n_labels = len(X.label_words)
        absent = sorted(set(range(n_labels)) - set(labels.tolist()))
        if absent:
            raise InputError(
                f"The training examples have no example of class(es) "
                f"{[X.label_words[i] for i in absent]}; every class needs at least one to learn "
                f"weights for it. Add examples of that class (a balanced draw: "
                f"task.balanced_sample)."
            )
        components = self._chosen(X)
        values = X.select(components).to(torch.float32)
        weights = torch.ones(len(components), dtype=torch.float32)
        penalty = (lambda: self.l1 * weights.abs().sum()) if self.l1 > 0 else None
        history = train(
            [weights],
            classification_objective(lambda: self._combine(values, weights), labels),
            learning_rate=self.learning_rate,
            stopping=Stopping(self.max_epochs, self.patience, check_done_every=100),
            penalty=penalty,
            done_reason="perfect_train_accuracy",
        )
        with torch.no_grad():
            history = history.with_metrics(
                train_accuracy=accuracy(self._combine(values, weights), labels)
            )
        self.weights_ = weights.detach()
        self.components_ = components
        self.label_words_ = X.label_words
        self.fingerprint_ = X.fingerprint
        self.model_name_ = X.model_name
        self.history_ = history
        return self

    def _combine(
        self, values: Float[Tensor, "example component label"], weights: Tensor
    ) -> Float[Tensor, "example label"]:
        used = weights.clamp(0.0, 1.0) if self.clip else weights
        return torch.einsum("ecl,c->el", values, used)

    # ------------------------------------------------------------- predicting
    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise InputError(
                "This ComponentReweighting is not fitted yet. Call fit(train_contributions) "
                "or ComponentReweighting.load(path) first."
            )

    def _check_same_model(self, X: LabelContributions) -> None:
        self._require_fitted()
        _check_contributions(X)
        if X.fingerprint != self.fingerprint_:
            raise InputError(
                f"These contributions come from a different model ({X.model_name!r}, "
                f"fingerprint {X.fingerprint}) than the one the weights were fitted on "
                f"({self.model_name_!r}, fingerprint {self.fingerprint_}). Component weights do "
                f"not transfer between models; fit new weights on this model."
            )
        if tuple(X.label_words) != tuple(self.label_words_):
            raise InputError(
                f"These contributions are for the label words {list(X.label_words)}, but the "
                f"weights were fitted for {list(self.label_words_)}. Build them with the same "
                f"label words."
            )

    def decision_function(self, X: LabelContributions) -> Float[Tensor, "example label"]:
        """The reweighted label-word scores ``sum_j w_j g_j`` (logits) for each example.

        Args:
            X: `LabelContributions` of the examples (same model and label words as the fit).
        """
        self._check_same_model(X)
        return self._combine(X.select(self.components_).to(torch.float32), self.weights_)

    def predict_proba(self, X: LabelContributions) -> Float[Tensor, "example label"]:
        """Class probabilities: the softmax of `decision_function` over the label words.

        Args:
            X: `LabelContributions` of the examples (same model and label words as the fit).
        """
        return torch.softmax(self.decision_function(X), dim=-1)

    def predict(self, X: LabelContributions) -> Int[Tensor, " example"]:
        """The predicted label index of each example.

        Args:
            X: `LabelContributions` of the examples (same model and label words as the fit).
        """
        return self.decision_function(X).argmax(dim=-1)

    def score(self, X: LabelContributions, y: Int[Tensor, " example"] | None = None) -> float:
        """Accuracy (0..1) on labelled contributions (``y`` defaults to ``X.labels``).

        Args:
            X: `LabelContributions` of the examples (same model and label words as the fit).
            y: gold label indices [example]; default ``X.labels``.
        """
        labels = _labels(X, y, "score()")
        return float((self.predict(X) == labels).float().mean())

    def predict_prompts(
        self,
        model: ModelHandle,
        prompts: Prompts,
        *,
        batch_size: int = 8,
        proba: bool = False,
    ) -> Tensor:
        """Predict label indices (or probabilities) for new prompts on ``model``.

        The model must be the one the weights were fitted on (checked by fingerprint before
        any forward pass).

        Args:
            model: the model handle the weights were fitted on.
            prompts: prompt texts (or a tokenized batch) to classify.
            batch_size: prompts per forward pass.
            proba: return class probabilities [prompt, label] instead of label indices
                [prompt].
        """
        self._require_fitted()
        fingerprint = model_fingerprint(model)
        if fingerprint != self.fingerprint_:
            raise InputError(
                f"Model {model.name!r} (fingerprint {fingerprint}) is not the model these weights "
                f"were fitted on ({self.model_name_!r}, fingerprint {self.fingerprint_}). "
                f"Component weights do not transfer between models; fit new weights on it."
            )
        contributions = label_contributions(
            model, prompts, label_words=self.label_words_, batch_size=batch_size
        )
        return self.predict_proba(contributions) if proba else self.predict(contributions)

    # ------------------------------------------------------------ inspection
    @property
    def effective_weights_(self) -> Float[Tensor, " component"]:
        """The weights as used in prediction (clipped to [0, 1] when ``clip``)."""
        self._require_fitted()
        return self.weights_.clamp(0.0, 1.0) if self.clip else self.weights_

    def top_components(self, k: int = 10) -> list[tuple[Component, float]]:
        """The ``k`` components with the largest (effective) weights, largest first.

        Args:
            k: how many components to return (≥ 1).
        """
        weights = self.effective_weights_
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}.")
        order = torch.argsort(weights, descending=True, stable=True)[:k]
        return [(self.components_[int(i)], float(weights[i])) for i in order]

    def weight_of(self, component: str | Component) -> float:
        """The learned weight of one component (``"L12H3"``, ``"MLP7"``...).

        Args:
            component: a fitted component, as a string or a component value.
        """
        self._require_fitted()
        wanted = parse_components([component])[0]
        if wanted not in self.components_:
            raise InputError(f"{wanted} has no weight in this reweighting.")
        return float(self.effective_weights_[self.components_.index(wanted)])

    def to_frame(self) -> Any:
        """One row per component: its weight (pandas DataFrame)."""
        import pandas as pd

        self._require_fitted()
        return pd.DataFrame(
            {
                "component": [str(c) for c in self.components_],
                "weight": self.effective_weights_.numpy(),
            }
        )

    # --------------------------------------------------------------- storage
    def get_params(self) -> dict[str, Any]:
        """The constructor settings."""
        components = self.components
        return {
            "l1": self.l1,
            "learning_rate": self.learning_rate,
            "max_epochs": self.max_epochs,
            "patience": self.patience,
            "clip": self.clip,
            "components": components
            if isinstance(components, str)
            else [str(c) for c in components],
        }

    def save(self, path: str | Path) -> Path:
        """Write the fitted weights to a ``.safetensors`` file (settings and history as JSON
        metadata under the result header of `circuitlab.results`).

        The write is atomic: an interrupted save leaves any earlier file intact.

        Args:
            path: the file to write (``.safetensors`` is appended when missing).

        Returns:
            The file written.
        """
        self._require_fitted()
        target = Path(path)
        if target.suffix != ".safetensors":
            target = target.with_suffix(target.suffix + ".safetensors")
        fields = {
            "weights": self.weights_.contiguous(),
            "params": self.get_params(),
            "components": tuple(self.components_),
            "label_words": self.label_words_,
            "history": self.history_.to_dict(),
        }
        facts = {"model": self.model_name_, "model_fingerprint": self.fingerprint_}
        return write_result_file(target, "ComponentReweighting", fields, facts)

    @classmethod
    def load(cls, path: str | Path) -> ComponentReweighting:
        """Read weights written by `save` (no pickle: safetensors plus JSON).

        Args:
            path: a file written by `save`.
        """
        fields, raw, tensors = read_result_file(path, "ComponentReweighting")
        if fields is None:  # written before the result header
            if raw.get("format") != _FORMAT:
                raise InputError(
                    f"{path} does not hold a ComponentReweighting (format {raw.get('format')!r})."
                )
            fields = {**raw, "components": tuple(parse_components(raw["components"]))}
            fields["weights"] = tensors["weights"]
        else:
            fields["model_name"] = raw["header"]["model"]
            fields["fingerprint"] = raw["header"]["model_fingerprint"]
        rw = cls(**fields["params"])
        rw.weights_ = fields["weights"]
        rw.components_ = tuple(fields["components"])
        rw.label_words_ = tuple(fields["label_words"])
        rw.fingerprint_ = fields["fingerprint"]
        rw.model_name_ = fields["model_name"]
        rw.history_ = TrainingHistory.from_dict(fields["history"])
        return rw


def _check_contributions(X: object) -> None:
    if not isinstance(X, LabelContributions):
        raise InputError(
            f"Expected LabelContributions (from circuitlab.label_contributions), got "
            f"{type(X).__name__}. For prompt texts use predict_prompts(model, prompts)."
        )
    if len(X) == 0:
        raise InputError("The contributions hold no examples. Pass at least one example.")


def _labels(X: LabelContributions, y: Tensor | Sequence[int] | None, what: str) -> Tensor:
    labels = X.require_labels(what) if y is None else torch.as_tensor(y, dtype=torch.long)
    if labels.shape != (len(X),):
        raise InputError(
            f"Got {labels.numel()} labels for {len(X)} examples; give one per example."
        )
    n_labels = len(X.label_words)
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < n_labels):
        raise InputError(f"Labels must lie in 0 .. {n_labels - 1} ({list(X.label_words)}).")
    return labels
