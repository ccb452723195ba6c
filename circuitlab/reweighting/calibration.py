"""Calib+: per-class weights on the full model's label probabilities (the paper's baseline).

With ``p = softmax(label-word logits)`` of the full model, Calib+ predicts with
``softmax(v * p)`` and learns one weight ``v_c`` per class (initialised to 1) with the same
full-batch training as component reweighting, on the same labelled examples. It can correct
a label bias of the model but, unlike component reweighting, cannot look inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitlab.errors import InputError
from circuitlab.training import (
    Stopping,
    accuracy,
    check_learning_rate,
    classification_objective,
    train,
)

__all__ = ["CalibPlus"]


def _as_logits(X: Any) -> Float[Tensor, "example label"]:
    from circuitlab.reweighting.contributions import LabelContributions

    logits = X.logits if isinstance(X, LabelContributions) else torch.as_tensor(X)
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] < 2:
        raise InputError(
            f"Calib+ needs label-word logits of shape [example, label] with at least one example "
            f"and two labels, got shape {tuple(logits.shape)}."
        )
    return logits.to(torch.float32)


class CalibPlus:
    """Per-class weights on the model's label-word probabilities (scikit-learn style).

    Args:
        learning_rate: SGD step size (0.05, as the reference code).
        max_epochs: most full-batch steps (5000, as the reference code).
        patience: non-improving epochs, counted in total, that stop training.

    ``X`` is either `LabelContributions` (its ``logits`` are used) or a [example, label] tensor
    of the full model's label-word logits.

    Example:
        >>> calib = CalibPlus().fit(train_contributions)
        >>> calib.score(test_contributions)
    """

    def __init__(
        self, *, learning_rate: float = 0.05, max_epochs: int = 5000, patience: int = 3
    ) -> None:
        check_learning_rate(learning_rate)
        Stopping(max_epochs=max_epochs, patience=patience)  # validates both
        self.learning_rate = float(learning_rate)
        self.max_epochs = int(max_epochs)
        self.patience = int(patience)

    def __repr__(self) -> str:
        fitted = f"weights {self.weights_.tolist()}" if hasattr(self, "weights_") else "not fitted"
        return (
            f"CalibPlus(learning_rate={self.learning_rate}, max_epochs={self.max_epochs}; {fitted})"
        )

    def fit(self, X: Any, y: Int[Tensor, " example"] | Sequence[int] | None = None) -> CalibPlus:
        """Learn the class weights from labelled examples (``y`` defaults to ``X.labels``).

        Args:
            X: `LabelContributions` (its ``logits`` are used) or the full model's label-word
                logits [example, label].
            y: the gold label index of each example [example] (default: ``X.labels``).

        Returns:
            ``self``, fitted (``weights_``, ``history_``).
        """
        probabilities = torch.softmax(_as_logits(X), dim=-1)
        labels = _gold(X, y, len(probabilities))
        absent = sorted(set(range(probabilities.shape[1])) - set(labels.tolist()))
        if absent:
            raise InputError(
                f"The training examples have no example of class index(es) {absent}; Calib+ "
                f"needs every class. Add examples of those classes."
            )
        weights = torch.ones(probabilities.shape[1])
        history = train(
            [weights],
            classification_objective(lambda: probabilities * weights, labels),
            learning_rate=self.learning_rate,
            stopping=Stopping(self.max_epochs, self.patience, check_done_every=100),
            done_reason="perfect_train_accuracy",
        )
        self.history_ = history.with_metrics(
            train_accuracy=accuracy(probabilities * weights, labels)
        )
        self.weights_ = weights.detach()
        return self

    def predict_proba(self, X: Any) -> Float[Tensor, "example label"]:
        """Calibrated class probabilities ``softmax(v * p)`` [example, label].

        Args:
            X: `LabelContributions` (its ``logits`` are used) or the full model's label-word
                logits [example, label].
        """
        if not hasattr(self, "weights_"):
            raise InputError("This CalibPlus is not fitted yet. Call fit(...) first.")
        probabilities = torch.softmax(_as_logits(X), dim=-1)
        if probabilities.shape[1] != len(self.weights_):
            raise InputError(
                f"Got {probabilities.shape[1]} labels; these weights are for {len(self.weights_)}."
            )
        return torch.softmax(probabilities * self.weights_, dim=-1)

    def predict(self, X: Any) -> Int[Tensor, " example"]:
        """The predicted label index of each example [example].

        Args:
            X: `LabelContributions` (its ``logits`` are used) or the full model's label-word
                logits [example, label].
        """
        return self.predict_proba(X).argmax(dim=-1)

    def score(self, X: Any, y: Int[Tensor, " example"] | Sequence[int] | None = None) -> float:
        """Accuracy (0..1).

        Args:
            X: `LabelContributions` (its ``logits`` are used) or the full model's label-word
                logits [example, label].
            y: the gold label index of each example [example] (default: ``X.labels``).
        """
        predictions = self.predict(X)
        return float((predictions == _gold(X, y, len(predictions))).float().mean())


def _gold(X: Any, y: Any, n: int) -> Tensor:
    if y is None:
        labels = getattr(X, "labels", None)
        if labels is None:
            raise InputError("Pass the gold labels y (these inputs carry none).")
    else:
        labels = torch.as_tensor(y, dtype=torch.long)
    if labels.shape != (n,):
        raise InputError(f"Got {labels.numel()} labels for {n} examples; give one per example.")
    return labels
