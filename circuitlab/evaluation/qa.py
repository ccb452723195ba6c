"""Factual question answering: greedy short answers after a few-shot prompt, scored two ways.

A prediction is the generated text up to the first newline. After SQuAD-style normalisation
(lower case, punctuation and the articles a/an/the removed, whitespace collapsed):

- exact match: the prediction equals the answer or an alias;
- contains: the answer or an alias appears in the prediction as whole words.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

from circuitlab.checks import checked_arguments
from circuitlab.errors import InputError
from circuitlab.evaluation.data import FactualQuestion, load_factual_qa
from circuitlab.evaluation.generation import greedy_continuations
from circuitlab.model import ModelHandle

__all__ = ["QA_DEMOS", "QAResult", "answer_matches", "normalize_answer", "qa_accuracy", "qa_prompt"]

QA_DEMOS: tuple[tuple[str, str], ...] = (
    ("What is the capital of France?", "Paris"),
    ('Who wrote "The Old Man and the Sea"?', "Ernest Hemingway"),
    ("How many sides does a hexagon have?", "6"),
)
"""The fixed demonstrations in front of every question (none of them is in the shipped set)."""

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans({character: " " for character in string.punctuation})


def normalize_answer(text: str) -> str:
    """Lower case; punctuation and the articles a/an/the removed; whitespace collapsed.

    Args:
        text: An answer.
    """
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_matches(prediction: str, golds: Sequence[str]) -> tuple[bool, bool]:
    """``(exact match, contains)`` of a prediction against the gold answer and aliases.

    Args:
        prediction: The model's answer.
        golds: The accepted answers (the answer and its aliases).
    """
    predicted = normalize_answer(prediction)
    normalized = [normalize_answer(gold) for gold in golds if normalize_answer(gold)]
    exact = predicted in normalized
    padded = f" {predicted} "
    contains = any(f" {gold} " in padded for gold in normalized)
    return exact, contains


def qa_prompt(question: str, demos: Sequence[tuple[str, str]] = QA_DEMOS) -> str:
    """``Q: ...\\nA: ...`` blocks for the demonstrations, then the question and ``A:``.

    Args:
        question: The question.
        demos: Demonstration (question, answer) pairs placed before it.
    """
    blocks = [f"Q: {q}\nA: {a}" for q, a in demos]
    return "\n\n".join([*blocks, f"Q: {question}\nA:"])


@dataclass(frozen=True)
class QAResult:
    """Scores over a question set (fractions in [0, 1]) and every prediction.

    Attributes:
        exact_match: fraction of predictions equal to a gold answer (after `normalize_answer`).
        contains: fraction of predictions containing a gold answer as whole words.
        predictions: each question's generated answer, stripped, in question order.
        correct: whether each prediction contains a gold answer (the ``contains`` test).
    """

    exact_match: float
    contains: float
    predictions: tuple[str, ...]
    correct: tuple[bool, ...]

    def __len__(self) -> int:
        return len(self.predictions)


@checked_arguments
def qa_accuracy(
    model: ModelHandle,
    questions: Sequence[FactualQuestion] | None = None,
    *,
    demos: Sequence[tuple[str, str]] = QA_DEMOS,
    max_new_tokens: int = 8,
    batch_size: int = 16,
    progress: bool | None = None,
) -> QAResult:
    """Answer each question greedily after the demonstrations; exact-match and contains scores.

    Args:
        model: the model handle (interventions active on it apply).
        questions: the questions (default: the 240 shipped ones).
        demos: (question, answer) demonstrations in front of every question.
        max_new_tokens: longest answer generated, in tokens.
        batch_size: questions decoded together.
        progress: progress bar (default: shown once the call
            runs past 2 s; ``False`` never; see `circuitlab.progress`).
    """
    questions = load_factual_qa() if questions is None else list(questions)
    if not questions:
        raise InputError("No questions were given. Pass at least one FactualQuestion.")
    prompts = [qa_prompt(question.question, demos) for question in questions]
    predictions = greedy_continuations(
        model,
        prompts,
        max_new_tokens=max_new_tokens,
        stop="\n",
        batch_size=batch_size,
        progress=progress,
    )
    matches = [
        answer_matches(text, question.golds)
        for text, question in zip(predictions, questions, strict=True)
    ]
    n = len(questions)
    return QAResult(
        exact_match=sum(exact for exact, _ in matches) / n,
        contains=sum(contains for _, contains in matches) / n,
        predictions=tuple(text.strip() for text in predictions),
        correct=tuple(contains for _, contains in matches),
    )
