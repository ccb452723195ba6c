"""How often a model hallucinates: accuracy, hallucination rate and abstentions on questions.

On held-out questions, the model answers greedily (the QA harness of
`circuitlab.evaluation.qa`); each answer is right (the gold answer or an alias appears in it as
whole words), *hallucinated* (a non-empty answer that is not right) or empty (an abstention).
The three rates sum to 1.

`choice_accuracy` needs no generation: the share of questions whose correct answer the model
finds more likely (mean log-probability per token) than every incorrect answer it is given
(TruthfulQA's MC1 rule); it scores externally labelled data as well as graded answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from circuitlab.checks import checked_arguments
from circuitlab.errors import InputError
from circuitlab.evaluation.data import FactualQuestion
from circuitlab.evaluation.qa import QA_DEMOS, qa_accuracy
from circuitlab.hallucination.contrastive import continuation_logprobs, contrastive_pairs
from circuitlab.hallucination.data import AnswerSet
from circuitlab.model import ModelHandle

__all__ = ["ChoiceAccuracy", "HallucinationRates", "choice_accuracy", "hallucination_rates"]


@dataclass(frozen=True)
class HallucinationRates:
    """Shares of questions (0..1) answered right, hallucinated and left empty, with every
    prediction.

    Attributes:
        accuracy: share of questions answered right (0..1).
        hallucination_rate: share answered with a non-empty wrong answer (0..1).
        abstention_rate: share left unanswered (an empty answer) (0..1).
        predictions: the model's answer to each question (cut at the first newline).
        correct: whether each answer is right.
    """

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
    """Answer ``questions`` greedily and grade them (module docstring).

    Args:
        model: The model that answers.
        questions: Held-out questions, with gold answers and aliases to grade against.
        demos: Few-shot ``(question, answer)`` demonstrations in front of each question.
        max_new_tokens: Most tokens generated per answer.
        batch_size: Questions per forward pass.
        progress: Progress bar (default: shown once the call runs past 2 s).
    """
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


@dataclass(frozen=True)
class ChoiceAccuracy:
    """How often the correct answer beats every incorrect one (`choice_accuracy`).

    Attributes:
        accuracy: share of the scored questions (0..1).
        questions: questions scored (those with at least one incorrect answer).
        margins: per scored question, ℓ(correct) − max ℓ(incorrect) in nats per token.
    """

    accuracy: float
    questions: int
    margins: tuple[float, ...]


@checked_arguments
def choice_accuracy(
    model: ModelHandle, answers: AnswerSet, *, batch_size: int = 16
) -> ChoiceAccuracy:
    """Score every question of ``answers`` that has an incorrect answer: is the gold answer's
    mean token log-probability above every incorrect answer's (module docstring)?

    Args:
        model: The model that scores the answers.
        answers: Answers grouped by question; questions without an incorrect one are skipped.
        batch_size: Prompt-and-answer texts per forward pass.
    """
    pairs = [pair for pair in contrastive_pairs(answers) if pair.incorrect]
    if not pairs:
        raise InputError(
            "No question has an incorrect answer to compare with; choice accuracy needs "
            "hallucinated (or labelled incorrect) answers."
        )
    prompts: list[str] = []
    texts: list[str] = []
    for pair in pairs:
        prompts += [pair.prompt] * (1 + len(pair.incorrect))
        texts += [pair.correct, *pair.incorrect]
    scores = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            logprobs, _ = continuation_logprobs(
                model, prompts[start : start + batch_size], texts[start : start + batch_size]
            )
            scores += logprobs.tolist()
    margins = []
    row = 0
    for pair in pairs:
        correct, incorrect = scores[row], scores[row + 1 : row + 1 + len(pair.incorrect)]
        margins.append(correct - max(incorrect))
        row += 1 + len(pair.incorrect)
    wins = sum(margin > 0 for margin in margins)
    return ChoiceAccuracy(wins / len(pairs), len(pairs), tuple(margins))
