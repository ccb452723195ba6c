"""The training loop: parameters, batches, an objective and a stopping rule in; a history out.

Every learned thing in circuitlab trains here: component weights and Calib+ class weights
(full batch: one batch, the whole training set), and what comes later (probes, masks, LoRA
updates through the model). The loop takes the parameters to learn, the batches of one epoch,
an objective that maps a batch to a `Step` (the loss, and optionally the objective's own
signal that training is done), and a `Stopping` rule:

- ``max_epochs``: the most epochs;
- ``patience``: stop once this many epochs (counted in total, not in a row) failed to beat
  the best epoch loss so far, as the component-reweighting authors' code does;
- ``check_done_every``: epochs between looks at the objective's ``done`` signal (a done
  signal stops training before that batch's step);
- ``max_steps``: the most optimiser steps (batches), wherever in an epoch the budget runs out;
- ``stable`` (ε) with ``window`` (w): stop once the training loss is ε-stable, i.e. after at
  least 2w steps the mean loss of the last w steps differs from the mean of the w steps before
  by at most ε times the latter: |L̄_last − L̄_before| ≤ ε·L̄_before. Batch losses are noisy;
  comparing window means rather than single steps keeps one lucky batch from ending the run.

With ``checkpoint=PATH`` the run's state (parameters, optimiser, counters) is written after
every epoch (`circuitlab.training.state`); the same call with the same path resumes a run that
was killed, from its last finished epoch, and returns what an uninterrupted run returns.
Batches that change per epoch should then come from a function of the epoch index
(``batches(epoch)``), so that a resumed run draws the same ones.

`classification_objective` (in `circuitlab.training.objectives`) is the cross-entropy
objective of the classifiers; its ``done`` is "every training example right".

Example:
    >>> w = torch.ones(3)
    >>> history = train([w], lambda batch: Step(((x @ w) - y).pow(2).mean()),
    ...                 learning_rate=0.1, stopping=Stopping(max_epochs=200, patience=5))
    >>> history.stopped
    'patience'
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import torch
from torch import Tensor

from circuitlab.checks import check_number
from circuitlab.errors import InputError

__all__ = ["Step", "Stopping", "TrainingHistory", "check_learning_rate", "check_number", "train"]


class Step(NamedTuple):
    """What an objective returns for one batch (a named tuple: built once per step, cheaply).

    Attributes:
        loss: the scalar loss to minimise; its value is what the stopping rule watches.
        done: the objective's own signal that nothing is left to learn (e.g. every training
            example classified correctly), or a function computing it, called only on the
            epochs the stopping rule consults it (every ``check_done_every``).
    """

    loss: Tensor
    done: bool | Callable[[], bool] = False


def check_learning_rate(learning_rate: float) -> None:
    """Refuse a learning rate that cannot train (the error names a valid value).

    Args:
        learning_rate: the optimiser's step size; it must be a positive number.
    """
    check_number("learning_rate", learning_rate, lambda v: v > 0, "positive, e.g. 0.05")


@dataclass(frozen=True)
class Stopping:
    """When training stops (see the module docstring). Validated on construction.

    Args:
        max_epochs: the most epochs (≥ 1).
        patience: stop once this many epochs, counted in total, failed to beat the best epoch
            loss so far (≥ 1; ``None``: never).
        check_done_every: epochs between looks at the objective's ``done`` signal (≥ 1).
        max_steps: the most optimiser steps, wherever in an epoch the budget runs out (≥ 1;
            ``None``: no limit).
        stable: ε of the ε-stable loss rule, a relative change (> 0; ``None``: never).
        window: w, the steps in each of the two window means ``stable`` compares (≥ 1).
    """

    max_epochs: int
    patience: int | None = None
    check_done_every: int = 1
    max_steps: int | None = None
    stable: float | None = None
    window: int = 10

    def __post_init__(self) -> None:
        check_number("max_epochs", self.max_epochs, lambda v: v >= 1, "at least 1, e.g. 2000")
        if self.patience is not None:
            check_number("patience", self.patience, lambda v: v >= 1, "at least 1, e.g. 3")
        check_number("check_done_every", self.check_done_every, lambda v: v >= 1, "at least 1")
        if self.max_steps is not None:
            check_number("max_steps", self.max_steps, lambda v: v >= 1, "at least 1, e.g. 100")
        if self.stable is not None:
            check_number("stable", self.stable, lambda v: v > 0, "positive, e.g. 0.02")
        check_number("window", self.window, lambda v: v >= 1, "at least 1, e.g. 10")

    def is_stable(self, step_losses: Sequence[float]) -> bool:
        """Whether ``step_losses`` end ε-stable (module docstring); never without ``stable``.

        Args:
            step_losses: the loss of every optimiser step so far, in order.
        """
        w = self.window
        if self.stable is None or len(step_losses) < 2 * w:
            return False
        last = sum(step_losses[-w:]) / w
        before = sum(step_losses[-2 * w : -w]) / w
        return abs(last - before) <= self.stable * abs(before)


@dataclass(frozen=True)
class TrainingHistory:
    """How a training run went.

    Attributes:
        epochs: epochs whose steps were taken.
        stopped: why training stopped: ``"patience"``, ``"done"`` (the objective's signal;
            callers may name it, e.g. ``"perfect_train_accuracy"``), ``"max_epochs"``,
            ``"max_steps"`` or ``"stable"`` (the loss became ε-stable).
        losses: the epoch loss (mean over its batches, before their steps) of every epoch run.
        metrics: measurements taken after training (e.g. ``train_accuracy``, 0..1).
        step_losses: the loss of every optimiser step, in order.
    """

    epochs: int
    stopped: str
    losses: tuple[float, ...]
    metrics: Mapping[str, float] = field(default_factory=dict)
    step_losses: tuple[float, ...] = ()

    @property
    def steps(self) -> int:
        """Optimiser steps taken."""
        return len(self.step_losses)

    def with_metrics(self, **metrics: float) -> TrainingHistory:
        """The same history with more after-training measurements.

        Args:
            **metrics: measurements by name (e.g. ``train_accuracy=0.95``); they replace
                earlier ones of the same name.
        """
        return replace(self, metrics={**self.metrics, **metrics})

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-serialisable); metrics sit beside the other fields."""
        return {
            "epochs": self.epochs,
            "stopped": self.stopped,
            "losses": list(self.losses),
            "step_losses": list(self.step_losses),
            **self.metrics,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingHistory:
        """Inverse of `to_dict`.

        Args:
            data: a mapping written by `to_dict` (keys beyond the core fields are metrics).
        """
        core = {"epochs", "stopped", "losses", "step_losses"}
        return cls(
            epochs=int(data["epochs"]),
            stopped=str(data["stopped"]),
            losses=tuple(float(loss) for loss in data["losses"]),
            metrics={key: float(value) for key, value in data.items() if key not in core},
            step_losses=tuple(float(loss) for loss in data.get("step_losses", ())),
        )


def _is_done(step: Step) -> bool:
    return bool(step.done() if callable(step.done) else step.done)


def train(
    parameters: Sequence[Tensor],
    objective: Callable[[Any], Step],
    batches: Iterable[Any] | Callable[[], Iterable[Any]] = (None,),
    *,
    learning_rate: float,
    stopping: Stopping,
    penalty: Callable[[], Tensor] | None = None,
    optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.SGD,
    done_reason: str = "done",
    checkpoint: str | os.PathLike[str] | None = None,
    scope: Mapping[str, Any] | None = None,
) -> TrainingHistory:
    """Train ``parameters`` in place to minimise ``objective`` over ``batches``.

    Args:
        parameters: the tensors to learn (leaf tensors; gradients are switched on for the run
            and their former ``requires_grad`` restored after).
        objective: maps one batch to a `Step`.
        batches: the batches of one epoch, or a function returning them afresh each epoch,
            called with the epoch index if it takes an argument (default: one ``None`` batch,
            for full-batch objectives that close over their data).
        learning_rate: the optimiser's step size.
        stopping: the `Stopping` rule.
        penalty: an extra term added to every batch's loss for the gradient (e.g. an L1 norm
            of the weights); the stopping rule does not see it.
        optimizer: builds the optimiser from ``(parameters, lr=learning_rate)`` (SGD).
        done_reason: the ``stopped`` value recorded when the objective signals done.
        checkpoint: a file keeping the run's state after every epoch; an existing one is
            resumed (a finished run returns its history at once).
        scope: what the run depends on (model and data fingerprints, settings); a checkpoint
            of another scope is refused.

    Returns:
        The `TrainingHistory`.
    """
    check_learning_rate(learning_rate)
    parameters = list(parameters)
    if not parameters:
        raise InputError("train() got no parameters to learn.")
    grad_before = [parameter.requires_grad for parameter in parameters]
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimiser = optimizer(parameters, lr=learning_rate)
    losses: list[float] = []
    step_losses: list[float] = []
    best, strikes, stopped, steps = math.inf, 0, "max_epochs", 0
    check_every, patience = stopping.check_done_every, stopping.patience
    first_epoch = 0
    run_scope = {**dict(scope or {}), "stopping": repr(stopping), "learning_rate": learning_rate}
    if checkpoint is not None and os.path.exists(checkpoint):
        from circuitlab.training.state import load_training_state

        saved = load_training_state(checkpoint, parameters, optimiser, run_scope)
        losses = [float(loss) for loss in saved["losses"]]
        step_losses = [float(loss) for loss in saved.get("step_losses", ())]
        best = math.inf if saved["best"] is None else float(saved["best"])
        strikes, steps, first_epoch = int(saved["strikes"]), int(saved["steps"]), len(losses)
        if saved["stopped"] is not None:
            for parameter, before in zip(parameters, grad_before, strict=True):
                parameter.requires_grad_(before)
            return TrainingHistory(
                epochs=steps,
                stopped=saved["stopped"],
                losses=tuple(losses),
                step_losses=tuple(step_losses),
            )
    takes_epoch = callable(batches) and _takes_an_argument(batches)

    def save(stopped_by: str | None) -> None:
        progress = {
            "losses": losses,
            "step_losses": step_losses,
            "best": None if math.isinf(best) else best,
            "strikes": strikes,
            "steps": steps,
            "stopped": stopped_by,
        }
        from circuitlab.training.state import save_training_state

        save_training_state(checkpoint, parameters, optimiser, progress, run_scope)

    finished: str | None = None
    try:
        for epoch in range(first_epoch, stopping.max_epochs):
            if callable(batches):
                epoch_batches = batches(epoch) if takes_epoch else batches()
            else:
                epoch_batches = batches
            loss_sum, n_batches = 0.0, 0
            done: str | None = None
            for batch in epoch_batches:
                optimiser.zero_grad()
                step = objective(batch)
                loss = float(step.loss.detach())
                loss_sum += loss
                n_batches += 1
                if epoch % check_every == 0 and _is_done(step):
                    done = done_reason
                    break
                total = step.loss if penalty is None else step.loss + penalty()
                total.backward()
                optimiser.step()
                step_losses.append(loss)
                if stopping.max_steps is not None and len(step_losses) >= stopping.max_steps:
                    done = "max_steps"
                elif stopping.is_stable(step_losses):
                    done = "stable"
                if done is not None:
                    break
            if not n_batches:
                raise InputError("train() got an epoch with no batches; pass at least one.")
            losses.append(loss_sum / n_batches)
            if done is not None:
                stopped = done
                if done != done_reason:  # a budget or stability stop: this epoch's steps ran
                    steps += 1
                break
            steps += 1
            if losses[-1] >= best:
                strikes += 1
            else:
                best = losses[-1]
            if patience is not None and strikes >= patience:
                stopped = "patience"
                break
            if checkpoint is not None:
                save(None)
        finished = stopped
    finally:
        for parameter, before in zip(parameters, grad_before, strict=True):
            parameter.requires_grad_(before)
            parameter.grad = None
    if checkpoint is not None and finished is not None:
        save(finished)
    return TrainingHistory(
        epochs=steps, stopped=stopped, losses=tuple(losses), step_losses=tuple(step_losses)
    )


def _takes_an_argument(function: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters
    )
