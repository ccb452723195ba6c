"""Objectives for `circuitlab.training.train`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitlab.training.loop import Step

__all__ = ["accuracy", "classification_objective"]


def classification_objective(
    scores: Callable[[], Float[Tensor, "example label"]], labels: Int[Tensor, " example"]
) -> Callable[[Any], Step]:
    """Full-batch cross-entropy (nats, mean over examples) of ``scores()`` against ``labels``.

    The step's ``done`` signal is "every example is classified correctly".

    Args:
        scores: a function returning the current class scores (logits) [example, label],
            computed from the parameters being trained.
        labels: the gold class index of each example [example].
    """

    def objective(batch: Any) -> Step:
        logits = scores()
        return Step(
            torch.nn.functional.cross_entropy(logits, labels),
            done=lambda: bool((logits.argmax(dim=-1) == labels).all()),
        )

    return objective


def accuracy(logits: Float[Tensor, "example label"], labels: Int[Tensor, " example"]) -> float:
    """Share of examples whose largest score is the gold label (0..1).

    Args:
        logits: class scores [example, label].
        labels: the gold class index of each example [example].
    """
    return float((logits.argmax(dim=-1) == labels).float().mean())
