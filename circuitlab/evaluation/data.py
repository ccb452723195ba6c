"""The evaluation data circuitlab ships: factual questions and held-out prose.

Both were written for the project (no downloaded data set):

- ``factual_qa.jsonl``: 240 short factual questions, 40 in each of six categories
  (geography, science, history, culture, language, everyday), each with a gold answer and
  accepted aliases.
- ``factual_qa_more.jsonl``: 420 more, 35 in each of twelve categories (the six above and
  sports, literature, music, nature, technology, food), each marked easy, medium or hard
  (144 / 144 / 132), for studies that need many right and wrong answers (the hallucination
  analysis). `load_factual_qa(extended=True)` returns all 660.
- ``heldout_prose.jsonl``: 40 original documents (~26,800 words) in four themes; 8 of them
  form the ``calibration`` split (for scoring layers), the other 32 the ``evaluation`` split
  (for perplexity).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from circuitlab.errors import InputError

__all__ = ["PROSE_SPLITS", "FactualQuestion", "load_factual_qa", "load_heldout_prose"]

PROSE_SPLITS = ("evaluation", "calibration", "all")


@dataclass(frozen=True)
class FactualQuestion:
    """One factual question with its gold answer and the other accepted forms.

    Attributes:
        question: the question text (``"What is the capital of France?"``).
        answer: the gold answer (``"Paris"``).
        aliases: other accepted forms of the answer.
        category: the question's category (``geography``, ``science``, ...; ``""`` if none).
        difficulty: ``easy``, ``medium`` or ``hard`` (``""`` for the first 240 questions).
    """

    question: str
    answer: str
    aliases: tuple[str, ...] = ()
    category: str = ""
    difficulty: str = ""

    @property
    def golds(self) -> tuple[str, ...]:
        """The answer followed by its aliases."""
        return (self.answer, *self.aliases)


def _rows(name: str) -> list[dict[str, Any]]:
    source = resources.files("circuitlab.evaluation").joinpath("data", name)
    return [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line]


def load_factual_qa(
    categories: str | tuple[str, ...] | list[str] | None = None,
    *,
    extended: bool = False,
) -> list[FactualQuestion]:
    """The shipped factual questions, optionally only some categories.

    Args:
        categories: keep only these categories.
        extended: also the 420 questions of ``factual_qa_more.jsonl`` (660 in all; they carry
            a difficulty, the first 240 do not).
    """
    files = ("factual_qa.jsonl", "factual_qa_more.jsonl") if extended else ("factual_qa.jsonl",)
    questions = [
        FactualQuestion(
            row["question"],
            row["answer"],
            tuple(row["aliases"]),
            row["category"],
            row.get("difficulty", ""),
        )
        for name in files
        for row in _rows(name)
    ]
    if categories is None:
        return questions
    wanted = {categories} if isinstance(categories, str) else set(categories)
    known = {question.category for question in questions}
    unknown = sorted(wanted - known)
    if unknown:
        raise InputError(f"Unknown question categories {unknown}. Choose from {sorted(known)}.")
    return [question for question in questions if question.category in wanted]


def load_heldout_prose(split: str = "evaluation") -> list[str]:
    """The shipped held-out documents of one split, as plain texts (paragraphs kept).

    Args:
        split: Which shipped split: ``calibration``, ``evaluation`` or ``all``.
    """
    if split not in PROSE_SPLITS:
        raise InputError(f"Unknown prose split {split!r}. Choose one of {', '.join(PROSE_SPLITS)}.")
    rows = _rows("heldout_prose.jsonl")
    return [row["text"] for row in rows if split == "all" or row["split"] == split]
