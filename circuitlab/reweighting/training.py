"""Full-batch gradient descent with the reference code's early stopping.

Both learned read-outs of this package (component weights and Calib+ class weights) are tiny
(one weight per component or class) and train on every example at once, as in the authors'
code: plain SGD, stopping after ``patience`` epochs whose cross-entropy failed to beat the best
so far (counted in total, not in a row), or when every training example is classified
correctly (checked every ``check_every`` epochs), or after ``max_epochs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitlab.errors import InputError

__all__ = ["FitHistory", "check_settings", "fit_full_batch"]


@dataclass(frozen=True)
class FitHistory:
    """How a fit went.

    Attributes:
        epochs: gradient steps taken.
        stopped: why training stopped: ``"patience"``, ``"perfect_train_accuracy"`` or
            ``"max_epochs"``.
        losses: training cross-entropy (nats, mean over examples) before each step.
        train_accuracy: training accuracy of the final weights (0..1).
    """

    epochs: int
    stopped: str
    losses: tuple[float, ...]
    train_accuracy: float

    def to_dict(self) -> dict[str, object]:
        """Plain data (JSON-serialisable)."""
        return {
            "epochs": self.epochs,
            "stopped": self.stopped,
            "losses": list(self.losses),
            "train_accuracy": self.train_accuracy,
        }


def check_settings(
    *, learning_rate: float, max_epochs: int, patience: int, l1: float = 0.0
) -> None:
    """Refuse settings that cannot train (each error names the setting and a valid value)."""
    checks = [
        ("l1", l1, l1 >= 0, "0 or more (0.01 in the authors' code, 0.1 in the paper)"),
        ("learning_rate", learning_rate, learning_rate > 0, "positive, e.g. 0.05"),
        ("max_epochs", max_epochs, max_epochs >= 1, "at least 1, e.g. 2000"),
        ("patience", patience, patience >= 1, "at least 1, e.g. 3"),
    ]
    for name, value, ok, valid in checks:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{name} must be a number, got {value!r}.")
        if not math.isfinite(value) or not ok:
            raise InputError(f"{name}={value!r} is invalid: it must be {valid}.")


def fit_full_batch(
    parameter: Tensor,
    scores: Callable[[Tensor], Float[Tensor, "example label"]],
    labels: Int[Tensor, " example"],
    *,
    learning_rate: float,
    max_epochs: int,
    patience: int,
    penalty: Callable[[Tensor], Tensor] | None = None,
    check_every: int = 100,
) -> FitHistory:
    """Train ``parameter`` in place so that ``scores(parameter)`` classifies ``labels``.

    Args:
        parameter: the weights to learn (updated in place; requires no grad on entry).
        scores: maps the weights to class scores (logits) [example, label].
        labels: gold label indices.
        learning_rate: SGD step size.
        max_epochs: most steps.
        patience: how many non-improving epochs (in total) end training.
        penalty: an extra term added to the loss (e.g. ``l1 * |w|_1``); not used for stopping.
        check_every: epochs between checks for 100% training accuracy.

    Returns:
        The `FitHistory`.
    """
    parameter.requires_grad_(True)
    optimizer = torch.optim.SGD([parameter], lr=learning_rate)
    losses: list[float] = []
    best, strikes, stopped = math.inf, 0, "max_epochs"
    for epoch in range(max_epochs):
        optimizer.zero_grad()
        logits = scores(parameter)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        losses.append(float(loss.detach()))
        if epoch % check_every == 0 and bool((logits.argmax(dim=-1) == labels).all()):
            stopped = "perfect_train_accuracy"
            break
        total = loss if penalty is None else loss + penalty(parameter)
        total.backward()
        optimizer.step()
        if losses[-1] >= best:
            strikes += 1
        else:
            best = losses[-1]
        if strikes >= patience:
            stopped = "patience"
            break
    parameter.requires_grad_(False)
    with torch.no_grad():
        accuracy = float((scores(parameter).argmax(dim=-1) == labels).float().mean())
    return FitHistory(
        epochs=len(losses) - (stopped == "perfect_train_accuracy"),
        stopped=stopped,
        losses=tuple(losses),
        train_accuracy=accuracy,
    )
