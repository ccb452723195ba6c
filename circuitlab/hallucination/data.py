"""Truthful and hallucinated answers: the samples the hallucination analysis contrasts.

An `AnswerSet` holds answers to questions, each marked *truthful* or *hallucinated*, as
(prompt, answer continuation) pairs: the prompt is the few-shot QA prompt of
`circuitlab.evaluation.qa` ending in ``"A:"``, the answer is the text that follows it. Two
sources:

- `label_model_answers`: the model answers every question greedily (the QA harness) and each
  answer is graded against the gold answer and its aliases: right is truthful, wrong is
  hallucinated. Questions the model leaves unanswered (an empty answer) are dropped and
  counted.
- `load_labelled_answers`: externally labelled data in the shape of TruthfulQA (a question, its
  correct answers, its incorrect answers) from JSONL/JSON/CSV: every correct answer is a
  truthful sample and every incorrect one a hallucinated sample.

Splits go by question (`AnswerSet.split`), so no question's answers are in two splits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from circuitlab.checks import check_number, checked_arguments
from circuitlab.errors import InputError, NoContrastError
from circuitlab.evaluation.data import FactualQuestion
from circuitlab.evaluation.qa import QA_DEMOS, qa_accuracy, qa_prompt
from circuitlab.files import read_records, read_text_file
from circuitlab.model import ModelHandle

__all__ = [
    "AnswerSet",
    "label_model_answers",
    "load_labelled_answers",
    "load_questions",
]

_SUFFIXES = (".jsonl", ".json", ".csv")


@dataclass(frozen=True)
class AnswerSet:
    """Answers to questions, each truthful or hallucinated (see the module docstring).

    Attributes:
        prompts: the prompt in front of each answer (ends with ``"A:"``).
        answers: each answer continuation (starts with a space).
        truthful: whether each answer is right.
        question: the index of each sample's question in ``questions``.
        questions: the question texts.
        golds: per question, the correct answers (the first is the training target).
        source: ``"generated"`` (the model's own answers) or ``"labelled"`` (a file).
        settings: how the set was made (model, counts of dropped questions, ...).
    """

    prompts: tuple[str, ...]
    answers: tuple[str, ...]
    truthful: tuple[bool, ...]
    question: tuple[int, ...]
    questions: tuple[str, ...]
    golds: tuple[tuple[str, ...], ...]
    source: str = "generated"
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.prompts)
        if not (len(self.answers) == len(self.truthful) == len(self.question) == n):
            raise InputError("An AnswerSet needs one answer, label and question per prompt.")
        if len(self.golds) != len(self.questions):
            raise InputError("An AnswerSet needs the gold answers of every question.")
        if n and not 0 <= min(self.question) <= max(self.question) < len(self.questions):
            raise InputError("A sample refers to a question the set does not have.")

    def __len__(self) -> int:
        return len(self.prompts)

    def __repr__(self) -> str:
        truthful, hallucinated = self.counts()
        return (
            f"AnswerSet({self.source}: {len(self.questions)} questions, {truthful} truthful and "
            f"{hallucinated} hallucinated answers)"
        )

    def counts(self) -> tuple[int, int]:
        """``(truthful, hallucinated)`` sample counts."""
        truthful = sum(self.truthful)
        return truthful, len(self) - truthful

    @property
    def labels(self) -> torch.Tensor:
        """1 for a hallucinated sample, 0 for a truthful one [sample] (long)."""
        return torch.tensor([0 if right else 1 for right in self.truthful], dtype=torch.long)

    def texts(self) -> list[str]:
        """Prompt and answer of every sample, joined: what a forward pass reads."""
        return [prompt + answer for prompt, answer in zip(self.prompts, self.answers, strict=True)]

    def check_contrast(self, what: str = "this analysis") -> None:
        """Raise a clear error unless both truthful and hallucinated samples exist.

        Args:
            what: What needs both kinds of samples, named in the error.
        """
        truthful, hallucinated = self.counts()
        if not truthful or not hallucinated:
            every = "right" if not hallucinated else "wrong"
            raise NoContrastError(
                f"Every one of the {len(self)} answers is {every} ({truthful} truthful, "
                f"{hallucinated} hallucinated), so {what} has nothing to contrast. Use more or "
                f"harder (or easier) questions, or labelled data with both kinds of answer."
            )

    def subset(self, questions: Sequence[int]) -> AnswerSet:
        """The samples of the given questions (renumbered in the order given).

        Args:
            questions: Indices into ``questions`` of the questions to keep, in the new order.
        """
        order = [int(q) for q in questions]
        new_index = {old: new for new, old in enumerate(order)}
        keep = [i for i, q in enumerate(self.question) if q in new_index]
        keep.sort(key=lambda i: (new_index[self.question[i]], i))
        return replace(
            self,
            prompts=tuple(self.prompts[i] for i in keep),
            answers=tuple(self.answers[i] for i in keep),
            truthful=tuple(self.truthful[i] for i in keep),
            question=tuple(new_index[self.question[i]] for i in keep),
            questions=tuple(self.questions[q] for q in order),
            golds=tuple(self.golds[q] for q in order),
        )

    def split(
        self, fractions: Sequence[float] = (0.6, 0.2, 0.2), *, seed: int = 0
    ) -> tuple[AnswerSet, ...]:
        """Disjoint sets of questions in these proportions (seeded), stratified so that each
        split gets its share of the questions with and without a hallucinated answer.

        Args:
            fractions: Fractions of the questions in each part (summing to 1).
            seed: Seed of the shuffle.
        """
        return tuple(self.subset(part) for part in self.split_questions(fractions, seed=seed))

    def split_questions(
        self, fractions: Sequence[float] = (0.6, 0.2, 0.2), *, seed: int = 0
    ) -> tuple[list[int], ...]:
        """The question indices of each part of `split` (ascending).

        Args:
            fractions: Fractions of the questions in each part (summing to 1).
            seed: Seed of the shuffle.
        """
        fractions = [
            check_number("fraction", f, lambda v: 0 < v < 1, "between 0 and 1") for f in fractions
        ]
        if len(fractions) < 2 or abs(sum(fractions) - 1) > 1e-6:
            raise InputError(f"Give two or more fractions that sum to 1; got {fractions}.")
        hallucinated = {
            q for q, right in zip(self.question, self.truthful, strict=True) if not right
        }
        generator = torch.Generator().manual_seed(seed)
        parts: list[list[int]] = [[] for _ in fractions]
        for stratum in (
            sorted(hallucinated),
            sorted(set(range(len(self.questions))) - hallucinated),
        ):
            order = [stratum[i] for i in torch.randperm(len(stratum), generator=generator).tolist()]
            bounds = [round(sum(fractions[: i + 1]) * len(order)) for i in range(len(fractions))]
            start = 0
            for part, end in zip(parts, bounds, strict=True):
                part.extend(order[start:end])
                start = end
        empty = [i for i, part in enumerate(parts) if not part]
        if empty:
            raise InputError(
                f"{len(self.questions)} questions are too few for {len(fractions)} splits "
                f"(split {empty[0]} would be empty); use more questions or fewer splits."
            )
        return tuple(sorted(part) for part in parts)


@checked_arguments
def label_model_answers(
    model: ModelHandle,
    questions: Sequence[FactualQuestion],
    *,
    demos: Sequence[tuple[str, str]] = QA_DEMOS,
    max_new_tokens: int = 8,
    batch_size: int = 16,
    progress: bool | None = None,
) -> AnswerSet:
    """The model's greedy answers to ``questions``, graded: right is truthful, wrong is
    hallucinated (module docstring). Unanswered questions are dropped and counted in
    ``settings["unanswered"]``.

    Args:
        model: The model that answers.
        questions: The questions, with gold answers and aliases to grade against.
        demos: Few-shot ``(question, answer)`` demonstrations in front of each question.
        max_new_tokens: Most tokens generated per answer.
        batch_size: Questions per forward pass.
        progress: Progress bar (default: shown once the call runs past 2 s).
    """
    questions = list(questions)
    if not questions:
        raise InputError("No questions were given; pass at least one FactualQuestion.")
    for number, question in enumerate(questions):
        if not question.answer.strip():
            raise InputError(
                f"Question {number} ({question.question[:50]!r}) has no gold answer; answers "
                f"are graded against it. Give every question an answer (and any aliases)."
            )
    graded = qa_accuracy(
        model,
        questions,
        demos=demos,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
    )
    kept = [i for i, text in enumerate(graded.predictions) if text]
    return AnswerSet(
        prompts=tuple(qa_prompt(questions[i].question, demos) for i in kept),
        answers=tuple(" " + graded.predictions[i] for i in kept),
        truthful=tuple(graded.correct[i] for i in kept),
        question=tuple(range(len(kept))),
        questions=tuple(questions[i].question for i in kept),
        golds=tuple(questions[i].golds for i in kept),
        source="generated",
        settings={
            "model": model.name,
            "max_new_tokens": max_new_tokens,
            "unanswered": len(questions) - len(kept),
        },
    )


@checked_arguments
def load_labelled_answers(
    path: str | os.PathLike[str],
    *,
    question_field: str = "question",
    correct_field: str = "correct_answers",
    incorrect_field: str = "incorrect_answers",
    demos: Sequence[tuple[str, str]] = QA_DEMOS,
) -> AnswerSet:
    """Questions with correct and incorrect answers (TruthfulQA's shape) from a file.

    ``.jsonl`` / ``.json`` hold objects whose answer fields are lists of strings (a single
    string is one answer); a ``.csv`` has a header row and answers separated by ``;``.
    Every correct answer becomes a truthful sample and every incorrect one a hallucinated
    sample; each question needs at least one correct answer.

    Args:
        path: The ``.jsonl``, ``.json`` or ``.csv`` file.
        question_field: The field holding the question text.
        correct_field: The field holding the correct answers (the first is the gold answer).
        incorrect_field: The field holding the incorrect answers (optional per row).
        demos: Few-shot ``(question, answer)`` demonstrations in front of each question.
    """
    source = Path(path)
    if source.suffix.lower() not in _SUFFIXES:
        raise InputError(
            f"{source} is not a labelled-answer file: use .jsonl, .json or .csv (with the "
            f"fields {question_field!r}, {correct_field!r}, {incorrect_field!r})."
        )
    text = read_text_file(source, "labelled-answer file")
    rows = read_records(source, text)
    if not rows:
        raise InputError(f"{source} holds no questions; add at least one row.")
    prompts, answers, truthful, index, texts, golds = [], [], [], [], [], []
    for number, row in enumerate(rows, start=1):
        where = f"{source} row {number}"
        if not isinstance(row, dict):
            raise InputError(f"{where} is not an object with the answer fields.")
        missing = [key for key in (question_field, correct_field) if key not in row]
        if missing:
            raise InputError(
                f"{where} has no {missing[0]!r} field (it has {sorted(row)}); pass "
                f"question_field=/correct_field= to name yours."
            )
        question = str(row[question_field]).strip()
        correct = _answers(row.get(correct_field), source.suffix.lower())
        incorrect = _answers(row.get(incorrect_field), source.suffix.lower())
        if not question:
            raise InputError(f"{where} has an empty question.")
        if not correct:
            raise InputError(
                f"{where} ({question[:50]!r}) has no correct answer; every question needs one "
                f"(the gold answer the others are graded against)."
            )
        prompt = qa_prompt(question, demos)
        for answer, right in [(a, True) for a in correct] + [(a, False) for a in incorrect]:
            prompts.append(prompt)
            answers.append(" " + answer)
            truthful.append(right)
            index.append(len(texts))
        texts.append(question)
        golds.append(tuple(correct))
    return AnswerSet(
        prompts=tuple(prompts),
        answers=tuple(answers),
        truthful=tuple(truthful),
        question=tuple(index),
        questions=tuple(texts),
        golds=tuple(golds),
        source="labelled",
        settings={"file": str(source)},
    )


@checked_arguments
def load_questions(
    path: str | os.PathLike[str],
    *,
    question_field: str = "question",
    answer_field: str = "answer",
    aliases_field: str = "aliases",
) -> list[FactualQuestion]:
    """Questions with gold answers (and optional aliases) from a ``.jsonl`` / ``.json`` /
    ``.csv`` file, for `label_model_answers` to grade the model's own answers against. In a CSV,
    aliases are separated by ``;``. A question without a gold answer is an error.

    Args:
        path: The ``.jsonl``, ``.json`` or ``.csv`` file.
        question_field: The field holding the question text.
        answer_field: The field holding the gold answer (in a list, later entries are
            aliases).
        aliases_field: The field holding further accepted answers (optional per row).
    """
    source = Path(path)
    if source.suffix.lower() not in _SUFFIXES:
        raise InputError(
            f"{source} is not a question file: use .jsonl, .json or .csv (with the fields "
            f"{question_field!r}, {answer_field!r} and optionally {aliases_field!r})."
        )
    rows = read_records(source, read_text_file(source, "question file"))
    if not rows:
        raise InputError(f"{source} holds no questions; add at least one row.")
    questions = []
    for number, row in enumerate(rows, start=1):
        where = f"{source} row {number}"
        if not isinstance(row, dict):
            raise InputError(
                f"{where} is not an object with {question_field!r} and {answer_field!r}."
            )
        if question_field not in row:
            raise InputError(
                f"{where} has no {question_field!r} field (it has {sorted(row)}); pass "
                f"question_field= to name yours."
            )
        question = str(row[question_field]).strip()
        gold = _answers(row.get(answer_field), ".json")
        if not question:
            raise InputError(f"{where} has an empty question.")
        if not gold:
            raise InputError(
                f"{where} ({question[:50]!r}) has no gold answer in {answer_field!r}; every "
                f"question needs one to grade the model's answer against."
            )
        aliases = _answers(row.get(aliases_field), source.suffix.lower())
        questions.append(FactualQuestion(question, gold[0], tuple(gold[1:] + aliases)))
    return questions


def _answers(value: Any, suffix: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(";") if suffix == ".csv" else [value]
    elif isinstance(value, list):
        items = value
    else:
        raise InputError(f"Answers must be a list of strings or a string; got {value!r:.60}.")
    answers = [str(item).strip() for item in items]
    return [answer for answer in answers if answer]
