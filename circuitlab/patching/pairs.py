"""Prompt pairs for activation patching: a clean and a corrupted prompt, and their answers.

A pair differs in one detail that changes the answer ("The Eiffel Tower is in" → " Paris";
"The Colosseum is in" → " Rome"). Patching compares the two runs position by position, so
both prompts of a pair must tokenize to the same number of tokens; `paired_tokens` checks it
and names the pair and both token lists otherwise.

Pairs come as `PromptPair` values or from a ``.jsonl`` / ``.json`` / ``.csv`` file with the
columns ``clean``, ``corrupted`` and optionally ``answer`` and ``wrong``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from circuitlab.checks import check_text, checked_arguments
from circuitlab.errors import InputError
from circuitlab.files import read_records, read_text_file
from circuitlab.model import ModelHandle
from circuitlab.tokenization import TokenBatch

__all__ = ["PairTokens", "PromptPair", "check_pairs", "load_pairs", "paired_tokens"]

_SUFFIXES = (".jsonl", ".json", ".csv")


@dataclass(frozen=True)
class PromptPair:
    """A clean and a corrupted prompt, and the answer tokens a metric compares.

    Attributes:
        clean: the prompt whose behaviour is studied (``"The Eiffel Tower is in"``).
        corrupted: the same prompt with the detail changed (``"The Colosseum is in"``).
        answer: the clean prompt's answer token (``" Paris"``), one token.
        wrong: the corrupted prompt's answer token (``" Rome"``), one token; the logit
            difference metric is ``logit[answer] - logit[wrong]``.
    """

    clean: str
    corrupted: str
    answer: str | None = None
    wrong: str | None = None

    def __post_init__(self) -> None:
        for name in ("clean", "corrupted"):
            if not check_text(f"{name} prompt", getattr(self, name)).strip():
                raise InputError(f"The {name} prompt of a pair is empty; give it some text.")
        for name in ("answer", "wrong"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise InputError(f"A pair's {name} must be a token string such as ' Paris'.")


def check_pairs(pairs: PromptPair | Sequence[PromptPair | Mapping[str, str]]) -> list[PromptPair]:
    """Pairs as a non-empty list of `PromptPair` (mappings with the pair's fields accepted).

    Args:
        pairs: one pair or a list of them: `PromptPair` values or mappings with ``clean``,
            ``corrupted`` and optionally ``answer`` and ``wrong``.
    """
    items = [pairs] if isinstance(pairs, (PromptPair, Mapping)) else pairs
    if isinstance(items, str) or not isinstance(items, Sequence):
        raise InputError(
            f"Pairs are PromptPair values (or dicts with 'clean' and 'corrupted'), got {pairs!r}."
        )
    checked = []
    for index, item in enumerate(items):
        if isinstance(item, Mapping):
            item = _pair_from_record(item, f"pair {index + 1}")
        if not isinstance(item, PromptPair):
            raise InputError(
                f"Pair {index + 1} is {item!r}; give PromptPair(clean, corrupted, answer, wrong)."
            )
        checked.append(item)
    if not checked:
        raise InputError(
            "No prompt pairs were given (an empty list). Give at least one "
            "PromptPair(clean, corrupted, answer, wrong)."
        )
    return checked


def _pair_from_record(record: Mapping[str, object], where: str) -> PromptPair:
    missing = [key for key in ("clean", "corrupted") if not record.get(key)]
    if missing:
        raise InputError(
            f"{where} has no {' or '.join(repr(key) for key in missing)}; each pair needs "
            f"'clean' and 'corrupted' prompts (and optionally 'answer' and 'wrong' tokens)."
        )
    unknown = sorted(set(record) - {"clean", "corrupted", "answer", "wrong"})
    if unknown:
        raise InputError(
            f"{where} has unknown field(s) {unknown}; a pair has clean, corrupted, answer, wrong."
        )

    def text(key: str) -> str | None:
        value = record.get(key)
        return None if value in (None, "") else str(value)

    return PromptPair(str(record["clean"]), str(record["corrupted"]), text("answer"), text("wrong"))


@checked_arguments
def load_pairs(path: str | os.PathLike[str]) -> list[PromptPair]:
    """Read prompt pairs from a ``.jsonl``, ``.json`` (a list) or ``.csv`` file.

    Each row holds ``clean`` and ``corrupted`` and optionally ``answer`` and ``wrong``.
    Answer tokens keep their leading spaces exactly as written (``" Paris"``).

    Args:
        path: the pair file (suffix ``.jsonl``, ``.json`` or ``.csv``).
    """
    source = Path(path)
    if source.suffix.lower() not in _SUFFIXES:
        raise InputError(
            f"{source} is not a pair file: use .jsonl, .json or .csv with the columns clean, "
            f"corrupted, answer, wrong."
        )
    rows = read_records(source, read_text_file(source, "pair file"))
    pairs = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise InputError(f"{source}, row {number}: expected an object, got {row!r}.")
        pairs.append(_pair_from_record(row, f"{source}, row {number}"))
    if not pairs:
        raise InputError(f"{source} holds no pairs; add rows with clean and corrupted prompts.")
    return pairs


@dataclass(frozen=True)
class PairTokens:
    """Both sides of a pair list, tokenized: row ``i`` of each is pair ``i``.

    Attributes:
        clean: the clean prompts, tokenized.
        corrupted: the corrupted prompts, tokenized (each as long as its clean prompt).
    """

    clean: TokenBatch
    corrupted: TokenBatch

    @property
    def lengths(self) -> list[int]:
        """Each pair's token count (equal on both sides)."""
        return [int(length) for length in self.clean.lengths]


def paired_tokens(model: ModelHandle, pairs: Sequence[PromptPair]) -> PairTokens:
    """Tokenize both sides; a clear error naming the pair when the two lengths differ.

    Args:
        model: the model handle whose tokenizer is used.
        pairs: the prompt pairs (see `check_pairs`).
    """
    clean = model.tokenize([pair.clean for pair in pairs])
    corrupted = model.tokenize([pair.corrupted for pair in pairs])
    for index, (a, b) in enumerate(zip(clean.lengths, corrupted.lengths, strict=True)):
        if int(a) != int(b):
            raise InputError(
                f"Pair {index + 1} tokenizes to {int(a)} clean and {int(b)} corrupted tokens "
                f"(clean {model.to_str_tokens(pairs[index].clean)}, corrupted "
                f"{model.to_str_tokens(pairs[index].corrupted)}); patching compares positions, "
                f"so both prompts must have the same token count. Reword one prompt (e.g. swap "
                f"in a name or place of the same token length)."
            )
    return PairTokens(clean, corrupted)
