"""The one training loop: it minimises, stops by its rules, and leaves the parameters as found."""

from __future__ import annotations

import pytest
import torch

from circuitlab import InputError
from circuitlab.training import (
    Step,
    Stopping,
    TrainingHistory,
    accuracy,
    classification_objective,
    train,
)


def _least_squares() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=generator, dtype=torch.float64)
    y = x @ torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64)
    return x, y, torch.linalg.lstsq(x, y[:, None]).solution[:, 0]


def test_full_batch_gradient_descent_reaches_the_least_squares_solution() -> None:
    x, y, solution = _least_squares()
    w = torch.zeros(3, dtype=torch.float64)
    history = train(
        [w],
        lambda batch: Step(((x @ w) - y).pow(2).mean()),
        learning_rate=0.2,
        stopping=Stopping(max_epochs=2000),
    )
    torch.testing.assert_close(w, solution, atol=1e-8, rtol=0)
    assert history.stopped == "max_epochs" and history.epochs == 2000
    assert history.losses[0] > history.losses[-1] >= 0
    assert not w.requires_grad and w.grad is None


def test_mini_batches_take_one_step_each_and_average_the_epoch_loss() -> None:
    x, y, solution = _least_squares()
    w = torch.zeros(3, dtype=torch.float64)
    chunks = list(zip(x.split(16), y.split(16), strict=True))
    seen: list[int] = []

    def objective(batch: tuple[torch.Tensor, torch.Tensor]) -> Step:
        seen.append(len(batch[0]))
        return Step(((batch[0] @ w) - batch[1]).pow(2).mean())

    history = train([w], objective, chunks, learning_rate=0.1, stopping=Stopping(max_epochs=300))
    assert seen[:4] == [16, 16, 16, 16] and len(seen) == 4 * 300
    torch.testing.assert_close(w, solution, atol=1e-6, rtol=0)
    # the first epoch's loss is the mean of its batches' losses before their steps
    assert history.losses[0] > 0


def test_patience_counts_non_improving_epochs_in_total() -> None:
    w = torch.ones(1)
    losses = iter([3.0, 2.0, 2.5, 1.0, 1.5, 1.25, 0.5, 9.0])

    def objective(batch: object) -> Step:
        return Step(w.sum() * 0 + next(losses))

    history = train([w], objective, learning_rate=0.1, stopping=Stopping(10, patience=3))
    # strikes at 2.5, 1.5 and 1.25 (each no better than the best so far)
    assert history.stopped == "patience" and history.losses == (3.0, 2.0, 2.5, 1.0, 1.5, 1.25)
    assert history.epochs == 6


def test_the_done_signal_is_consulted_only_on_its_epochs() -> None:
    w = torch.ones(1)
    consulted: list[int] = []

    def objective(batch: object) -> Step:
        epoch = len(consulted_or_steps)
        consulted_or_steps.append(epoch)
        return Step(w.sum(), done=lambda: consulted.append(epoch) or epoch >= 5)

    consulted_or_steps: list[int] = []
    history = train(
        [w],
        objective,
        learning_rate=0.1,
        stopping=Stopping(max_epochs=20, check_done_every=3),
        done_reason="perfect",
    )
    assert consulted == [0, 3, 6]
    assert history.stopped == "perfect" and history.epochs == 6 and len(history.losses) == 7


def test_classification_objective_and_penalty() -> None:
    scores = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5]])
    labels = torch.tensor([0, 1, 1])
    w = torch.ones(2)
    history = train(
        [w],
        classification_objective(lambda: scores * w, labels),
        learning_rate=0.05,
        stopping=Stopping(max_epochs=1),
        penalty=lambda: 0.1 * w.abs().sum(),
    )
    p = torch.softmax(scores, dim=-1)
    gradient = ((p - torch.nn.functional.one_hot(labels, 2)) * scores).mean(dim=0) + 0.1
    torch.testing.assert_close(w, 1 - 0.05 * gradient, atol=1e-6, rtol=0)
    assert history.epochs == 1
    assert accuracy(scores, labels) == pytest.approx(2 / 3)


def test_history_round_trips_through_plain_data() -> None:
    history = TrainingHistory(3, "patience", (1.0, 0.5, 0.7)).with_metrics(train_accuracy=0.75)
    assert history.metrics == {"train_accuracy": 0.75}
    assert history.to_dict()["train_accuracy"] == 0.75
    assert TrainingHistory.from_dict(history.to_dict()) == history


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda w: train([], lambda b: Step(w.sum()), learning_rate=0.1,
                         stopping=Stopping(1)), "no parameters"),
        (lambda w: train([w], lambda b: Step(w.sum()), [], learning_rate=0.1,
                         stopping=Stopping(1)), "no batches"),
        (lambda w: train([w], lambda b: Step(w.sum()), learning_rate=0.0,
                         stopping=Stopping(1)), "learning_rate=0.0 is invalid"),
        (lambda w: Stopping(0), "max_epochs=0 is invalid"),
        (lambda w: Stopping(5, patience=0), "patience=0 is invalid"),
        (lambda w: Stopping("5"), "max_epochs must be a number"),
        (lambda w: Stopping(5, max_steps=0), "max_steps=0 is invalid"),
        (lambda w: Stopping(5, stable=0.0), "stable=0.0 is invalid"),
        (lambda w: Stopping(5, stable=0.1, window=0), "window=0 is invalid"),
    ],
)  # fmt: skip
def test_bad_settings_are_clear_errors(call: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call(torch.ones(1))  # type: ignore[operator]


def test_a_checkpointed_run_resumes_from_its_last_epoch(tmp_path) -> None:
    x, y, _ = _least_squares()

    def run(w: torch.Tensor, epochs: int, checkpoint=None, stop_after: int | None = None):
        calls = [0]

        def objective(batch: torch.Tensor) -> Step:
            calls[0] += 1
            if stop_after is not None and calls[0] > stop_after:
                raise KeyboardInterrupt  # killed mid-run, between epochs' checkpoints
            return Step(((x[batch] @ w) - y[batch]).pow(2).mean())

        def batches(epoch: int) -> list[torch.Tensor]:
            order = torch.randperm(64, generator=torch.Generator().manual_seed(epoch))
            return list(order.split(16))

        return train(
            [w],
            objective,
            batches,
            learning_rate=0.05,
            stopping=Stopping(epochs),
            optimizer=torch.optim.Adam,
            checkpoint=checkpoint,
            scope={"data": "toy"},
        )

    straight = torch.zeros(3, dtype=torch.float64)
    expected = run(straight, 6)
    state = tmp_path / "state.safetensors"
    interrupted = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(KeyboardInterrupt):
        run(interrupted, 6, state, stop_after=4 * 3 + 2)  # dies in epoch 4
    resumed = torch.zeros(3, dtype=torch.float64)
    history = run(resumed, 6, state)
    assert history == expected
    torch.testing.assert_close(resumed, straight, rtol=0, atol=0)
    with pytest.raises(InputError, match="belongs to another run"):
        run(torch.zeros(3, dtype=torch.float64), 7, state)
    (tmp_path / "junk.safetensors").write_bytes(b"not a state")
    with pytest.raises(InputError, match="not a circuitlab training state"):
        run(torch.zeros(3, dtype=torch.float64), 6, tmp_path / "junk.safetensors")


def test_step_budget_and_stability_stop_mid_epoch() -> None:
    x, y, _ = _least_squares()
    w = torch.zeros(3, dtype=torch.float64)
    chunks = list(torch.arange(64).split(8))  # 8 steps per epoch

    def objective(batch: torch.Tensor) -> Step:
        return Step(((x[batch] @ w) - y[batch]).pow(2).mean())

    history = train([w], objective, chunks, learning_rate=0.01, stopping=Stopping(10, max_steps=13))
    assert history.stopped == "max_steps" and history.steps == 13 and history.epochs == 2
    assert len(history.losses) == 2  # the second epoch ran 5 of its 8 steps
    assert TrainingHistory.from_dict(history.to_dict()) == history
    stopping = Stopping(100, stable=1e-3, window=4)
    v = torch.zeros(1)
    flat = train(
        [v], lambda b: Step(1.0 + 0 * v.sum()), [None] * 3, learning_rate=0.1, stopping=stopping
    )
    assert flat.stopped == "stable" and flat.steps == 8  # two windows of 4 equal losses
    assert stopping.is_stable([1.0] * 4 + [1.0005] * 4)
    assert not stopping.is_stable([1.0] * 4 + [0.9] * 4)
    assert not stopping.is_stable([1.0] * 7)
