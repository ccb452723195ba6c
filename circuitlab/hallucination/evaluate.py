"""How often a model hallucinates: accuracy, hallucination rate and abstentions on questions.

On held-out questions, the model answers greedily (the QA harness of
`circuitlab.evaluation.qa`); each answer is right (the gold answer or an alias appears in it as
whole words), *hallucinated* (a non-empty answer that is not right) or empty (an abstention).
The three rates sum to 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from circuitlab.checks import checked_arguments
from circuitlab.errors import InputError
from circuitlab.evaluation.data import FactualQuestion
from circuitlab.evaluation.qa import QA_DEMOS, qa_accuracy
from circuitlab.model import ModelHandle

__all__ = ["HallucinationRates", "hallucination_rates"]


@dataclass(frozen=True)
class HallucinationRates:
    """Shares of questions (0..1) answered right, hallucinated and left empty, with every
    prediction."""

    accuracy: float
    hallucination_rate: float
    abstention_rate: float
    predictions: tuple[str, ...]
    correct: tuple[bool, ...]

    def as_dict(self) -> dict[str, float]:
        """The three rates."""
        return {
            "accuracy": self.accuracy,
            "hallucination_rate": self.hallucination_rate,
            "abstention_rate": self.abstention_rate,
        }


@checked_arguments
def hallucination_rates(
    model: ModelHandle,
    questions: Sequence[FactualQuestion],
    *,
    demos: Sequence[tuple[str, str]] = QA_DEMOS,
    max_new_tokens: int = 8,
    batch_size: int = 16,
    progress: bool | None = None,
) -> HallucinationRates:
    """Answer ``questions`` greedily and grade them (module docstring)."""
    questions = list(questions)
    if not questions:
        raise InputError("No questions to evaluate; pass at least one FactualQuestion.")
    graded = qa_accuracy(
        model,
        questions,
        demos=demos,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
    )
    n = len(questions)
    empty = sum(not text for text in graded.predictions)
    right = sum(graded.correct)
    return HallucinationRates(
        accuracy=right / n,
        hallucination_rate=(n - right - empty) / n,
        abstention_rate=empty / n,
        predictions=graded.predictions,
        correct=graded.correct,
    )
