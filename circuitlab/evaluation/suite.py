"""The evaluation suite of the pruning study: question answering, perplexity, sentiment.

`EvaluationSuite.evaluate` measures a model (with whatever interventions are active) on the
three task kinds of the AVSS paper; `retention` compares two such measurements.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

from circuitlab.checks import check_integer
from circuitlab.errors import InputError
from circuitlab.evaluation.classification import classification_accuracy
from circuitlab.evaluation.data import FactualQuestion, load_factual_qa, load_heldout_prose
from circuitlab.evaluation.language_model import perplexity
from circuitlab.evaluation.qa import qa_accuracy
from circuitlab.model import ModelHandle
from circuitlab.tasks import ClassificationTask, load_task
from circuitlab.vocabulary import EVALUATION_TASKS

__all__ = ["EVALUATION_TASKS", "EvaluationSuite", "retention"]

LOWER_IS_BETTER = frozenset({"perplexity"})


@dataclass(frozen=True)
class EvaluationSuite:
    """Which tasks to run, and how much of each.

    Attributes:
        tasks: any of `EVALUATION_TASKS`.
        qa_questions: first N shipped questions, balanced over categories (None: all 240).
        perplexity_tokens: predicted tokens of held-out prose (None: the whole evaluation
            split, ~26k tokens on SmolLM2).
        sentiment_examples: balanced sample of the sentiment task (None: all 200).
        k_shot: demonstrations per sentiment prompt.
        window: tokens per perplexity window (capped at the model's context).
        batch_size: prompts (or windows) per forward pass.
        seed: seed of the sentiment sample and demonstrations.
    """

    tasks: tuple[str, ...] = EVALUATION_TASKS
    qa_questions: int | None = None
    perplexity_tokens: int | None = None
    sentiment_examples: int | None = None
    k_shot: int = 4
    window: int = 256
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        tasks = (self.tasks,) if isinstance(self.tasks, str) else tuple(self.tasks)
        unknown = [task for task in tasks if task not in EVALUATION_TASKS]
        if not tasks or unknown:
            raise InputError(
                f"Unknown or no evaluation task(s) {unknown or list(tasks)}. Choose from "
                f"{', '.join(EVALUATION_TASKS)}."
            )
        object.__setattr__(self, "tasks", tuple(dict.fromkeys(tasks)))
        for name in ("qa_questions", "perplexity_tokens", "sentiment_examples"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(
                    self, name, check_integer(f"{name} (or None for all)", value, minimum=1)
                )
        for name, minimum in (("k_shot", 0), ("window", 2), ("batch_size", 1), ("seed", 0)):
            object.__setattr__(
                self, name, check_integer(name, getattr(self, name), minimum=minimum)
            )

    def settings(self) -> dict[str, Any]:
        """The suite as plain data (what a checkpoint must match)."""
        data = {item.name: getattr(self, item.name) for item in fields(self)}
        data["tasks"] = list(self.tasks)
        return data

    def evaluate(self, model: ModelHandle, *, progress: bool | None = None) -> dict[str, float]:
        """Measure the model: ``{"qa": ..., "qa_exact": ..., "perplexity": ..., "sentiment": ...}``.

        ``qa`` is the contains-gold accuracy and ``qa_exact`` the exact match (fractions);
        ``perplexity`` is in the usual units (lower is better); ``sentiment`` is accuracy.

        Args:
            model: The model to evaluate (with any interventions in force).
            progress: Show progress bars (default: only on a terminal).
        """
        metrics: dict[str, float] = {}
        if "qa" in self.tasks:
            result = qa_accuracy(
                model, self.questions, batch_size=4 * self.batch_size, progress=progress
            )
            metrics["qa"] = result.contains
            metrics["qa_exact"] = result.exact_match
        if "perplexity" in self.tasks:
            metrics["perplexity"] = perplexity(
                model,
                self.prose,
                window=min(self.window, model.arch.n_ctx),
                max_tokens=self.perplexity_tokens,
                batch_size=max(1, self.batch_size // 2),
                progress=progress,
            ).perplexity
        if "sentiment" in self.tasks:
            metrics["sentiment"] = classification_accuracy(
                model,
                self.sentiment_task,
                k_shot=self.k_shot,
                seed=self.seed,
                batch_size=self.batch_size,
                progress=progress,
            )
        return metrics

    @cached_property
    def questions(self) -> list[FactualQuestion]:
        """The QA questions this suite asks (loaded once)."""
        questions = load_factual_qa()
        if self.qa_questions is not None:
            questions = _interleaved(questions, self.qa_questions)
        return questions

    @cached_property
    def prose(self) -> list[str]:
        """The held-out documents perplexity is measured on (loaded once)."""
        return load_heldout_prose("evaluation")

    @cached_property
    def sentiment_task(self) -> ClassificationTask:
        """The sentiment examples this suite classifies (loaded once)."""
        task = load_task("sentiment")
        if self.sentiment_examples is not None and self.sentiment_examples < len(task):
            task = task.balanced_sample(self.sentiment_examples, seed=self.seed)
        return task


def _interleaved(questions: list[FactualQuestion], n: int) -> list[FactualQuestion]:
    """The first ``n`` questions taking categories in turn (so a subset stays balanced)."""
    by_category: dict[str, list[FactualQuestion]] = {}
    for question in questions:
        by_category.setdefault(question.category, []).append(question)
    order = [q for group in zip(*by_category.values(), strict=False) for q in group]
    return order[:n]


def retention(original: Mapping[str, float], pruned: Mapping[str, float]) -> dict[str, float]:
    """Performance retained per task: pruned / original (original / pruned for perplexity).

    1.0 means nothing lost; values can exceed 1. A task whose original score is 0 gives NaN.

    Args:
        original: Score per task of the intact model.
        pruned: Score per task of the edited model.
    """
    result = {}
    for task, before in original.items():
        after = pruned[task]
        if task in LOWER_IS_BETTER:
            value = before / after if after > 0 else math.nan
        else:
            value = after / before if before > 0 else math.nan
        result[task] = value
    return result
