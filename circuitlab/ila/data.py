"""Instruction data for ILA: the shipped sets, your own files or `datasets`, and their tokens.

circuitlab writes and ships three instruction-following sets of different style and content
(``scripts/write_instruction_data.py`` generates them; every response is computed, not
guessed), each with a held-out split:

- ``"facts"``: short questions with concise factual answers (arithmetic, units, words...);
- ``"steps"``: small problems answered step by step ("Step 1: ... Answer: ...");
- ``"rewrite"``: short rewriting and formatting tasks (tense, voice, lists, politeness...).

Every pair becomes one training sequence: the instruction in the model's chat template (when
its tokenizer has one; otherwise ``"### Instruction:\\n…\\n\\n### Response:\\n"``), then the
response and the end-of-sequence token. Only the response tokens (and that EOS) are scored.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from circuitlab.errors import InputError
from circuitlab.files import read_records, read_text_file
from circuitlab.fingerprint import data_fingerprint
from circuitlab.hf_compat import chat_prompt
from circuitlab.model import ModelHandle
from circuitlab.tokenization import TokenBatch, encode_prompts, pad_rows
from circuitlab.vocabulary import INSTRUCTION_SETS

__all__ = [
    "INSTRUCTION_SETS",
    "EncodedInstructions",
    "InstructionSet",
    "encode_instructions",
    "instruction_prompt",
    "load_instructions",
]

_SUFFIXES = (".jsonl", ".json", ".csv")
_SPLITS = ("train", "heldout")
PLAIN_TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n"
"""The prompt of a model whose tokenizer has no chat template."""


@dataclass(frozen=True)
class InstructionSet:
    """Instruction/response pairs.

    Attributes:
        name: the set's name (a shipped set's name, or the file it came from).
        instructions: the instructions (the user turn).
        responses: the wanted responses, one per instruction.
    """

    name: str
    instructions: tuple[str, ...]
    responses: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.instructions) != len(self.responses):
            raise InputError(
                f"{len(self.instructions)} instructions but {len(self.responses)} responses; "
                f"give one response per instruction."
            )
        if not self.instructions:
            raise InputError(f"The instruction set {self.name!r} is empty; add at least one pair.")

    def __len__(self) -> int:
        return len(self.instructions)

    def fingerprint(self) -> str:
        """A short hash of the pairs (equal pairs, equal fingerprint)."""
        return data_fingerprint([list(self.instructions), list(self.responses)])

    def split_off(self, fraction: float = 0.2, *, seed: int = 0) -> tuple[InstructionSet, ...]:
        """``(train, heldout)``: a seeded random ``fraction`` of the pairs held out.

        Args:
            fraction: share of the pairs held out, between 0 and 1.
            seed: seed of the random choice.
        """
        if not 0 < fraction < 1:
            raise InputError(f"fraction = {fraction} must lie between 0 and 1, e.g. 0.2.")
        n_heldout = round(len(self) * fraction)
        if not 0 < n_heldout < len(self):
            raise InputError(
                f"Holding out {fraction:g} of {len(self)} pairs leaves a split empty; give more "
                f"pairs or another fraction."
            )
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).tolist()
        heldout = set(order[:n_heldout])
        parts = []
        for keep, name in ((False, self.name), (True, f"{self.name}:heldout")):
            rows = [i for i in range(len(self)) if (i in heldout) == keep]
            parts.append(
                InstructionSet(
                    name,
                    tuple(self.instructions[i] for i in rows),
                    tuple(self.responses[i] for i in rows),
                )
            )
        return tuple(parts)

    def __repr__(self) -> str:
        return f"InstructionSet({self.name!r}, {len(self)} pairs)"


def load_instructions(
    source: str | os.PathLike[str] | Any = "facts",
    *,
    split: str | None = "train",
    instruction_column: str = "instruction",
    response_column: str = "response",
    limit: int | None = None,
) -> InstructionSet:
    """Instruction/response pairs from a shipped set, a file or a ``datasets.Dataset``.

    Args:
        source: a shipped set (``"facts"``, ``"steps"``, ``"rewrite"``), a ``.jsonl`` /
            ``.json`` / ``.csv`` file, or a ``datasets.Dataset``.
        split: ``"train"`` or ``"heldout"`` keeps the rows whose ``split`` field says so;
            ``None`` keeps every row. A source without a ``split`` field is all training data
            (hold some out with `InstructionSet.split_off`).
        instruction_column: the field holding the instruction.
        response_column: the field holding the response.
        limit: keep at most this many pairs (the first ones).
    """
    if split is not None and split not in _SPLITS:
        raise InputError(f"split = {split!r} is not a split; use 'train', 'heldout' or None.")
    if isinstance(source, str) and source in INSTRUCTION_SETS:
        folder = resources.files("circuitlab.ila") / "data"
        text = (folder / f"{source}.jsonl").read_text(encoding="utf-8")
        rows = read_records(Path(f"{source}.jsonl"), text)
        name = source
    elif hasattr(source, "column_names") and hasattr(source, "__getitem__"):
        rows = [dict(row) for row in source]
        info = getattr(source, "info", None)
        name = f"dataset:{getattr(info, 'dataset_name', None) or 'dataset'}"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.suffix.lower() not in _SUFFIXES:
            raise InputError(
                f"{source!s} is neither a shipped instruction set ({', '.join(INSTRUCTION_SETS)}) "
                f"nor a .jsonl/.json/.csv file of {instruction_column!r}/{response_column!r} "
                f"pairs."
            )
        rows = read_records(path, read_text_file(path, "instruction file"))
        name = path.name
    else:
        raise InputError(
            f"Cannot read instructions from a {type(source).__name__}; pass a shipped set's name, "
            f"a file path or a datasets.Dataset."
        )
    instructions, responses = _pairs(rows, name, split, instruction_column, response_column)
    if limit is not None:
        if limit < 1:
            raise InputError(f"limit = {limit} keeps no pairs; pass at least 1 (or None).")
        instructions, responses = instructions[:limit], responses[:limit]
    if not instructions:
        where = f" in split {split!r}" if split is not None else ""
        raise InputError(f"{name} holds no instruction/response pairs{where}; add some.")
    label = name if split is None or split == "train" else f"{name}:{split}"
    return InstructionSet(label, tuple(instructions), tuple(responses))


def _pairs(
    rows: list[Any], name: str, split: str | None, instruction_column: str, response_column: str
) -> tuple[list[str], list[str]]:
    has_split = any(isinstance(row, dict) and "split" in row for row in rows)
    if split == "heldout" and rows and not has_split:
        raise InputError(
            f"{name} has no 'split' field, so nothing is held out; load it with split=None "
            f"and hold pairs out with InstructionSet.split_off(0.2)."
        )
    instructions, responses = [], []
    for number, row in enumerate(rows, start=1):
        where = f"{name} row {number}"
        if not isinstance(row, dict):
            raise InputError(
                f"{where} is not an object with {instruction_column!r} and "
                f"{response_column!r} fields."
            )
        for column in (instruction_column, response_column):
            if column not in row:
                raise InputError(
                    f"{where} has no {column!r} field (it has {sorted(row)}); name your columns "
                    f"with instruction_column= / response_column=."
                )
            if not isinstance(row[column], str) or not row[column].strip():
                raise InputError(
                    f"{where}: {column!r} must be non-empty text, got {row[column]!r:.60}."
                )
        if split is not None and has_split and row.get("split") != split:
            continue
        instructions.append(row[instruction_column].strip())
        responses.append(row[response_column].strip())
    return instructions, responses


def instruction_prompt(model: ModelHandle, instruction: str) -> str:
    """The text the model sees before its response: the chat template's user turn and the
    assistant's opening, or `PLAIN_TEMPLATE` for a tokenizer without a chat template.

    Args:
        model: the model handle (its tokenizer's chat template is used).
        instruction: the instruction (the user turn).
    """
    return chat_prompt(model.tokenizer, instruction) or PLAIN_TEMPLATE.format(
        instruction=instruction
    )


@dataclass(frozen=True)
class EncodedInstructions:
    """Token ids of instruction/response sequences.

    Attributes:
        rows: each sequence's token ids (prompt, response, EOS), unpadded.
        starts: position of each sequence's first response token (the first scored token).
        truncated: how many responses were cut to fit ``max_length``.
    """

    rows: tuple[tuple[int, ...], ...]
    starts: tuple[int, ...]
    truncated: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, indices: Sequence[int], pad_id: int) -> tuple[TokenBatch, list[int]]:
        """The sequences ``indices`` as a right-padded batch, and their response starts.

        Args:
            indices: which sequences, in batch order.
            pad_id: the token id that pads shorter sequences.
        """
        return pad_rows([self.rows[i] for i in indices], pad_id), [self.starts[i] for i in indices]

    @property
    def response_tokens(self) -> int:
        """Scored tokens over all sequences."""
        return sum(len(row) - start for row, start in zip(self.rows, self.starts, strict=True))


def encode_instructions(
    model: ModelHandle, data: InstructionSet, *, max_length: int | None = None
) -> EncodedInstructions:
    """Tokenize every pair as prompt + response + EOS (module docstring).

    A sequence longer than ``max_length`` (default: the model's context) keeps its prompt and
    the response's first tokens; a warning says how many were cut. A prompt that alone fills
    ``max_length`` is an error.

    Args:
        model: the model handle (its tokenizer, chat template and BOS policy).
        data: the instruction/response pairs.
        max_length: most tokens per sequence (default: the model's context length).
    """
    limit = model.arch.n_ctx if max_length is None else int(max_length)
    if limit < 2:
        raise InputError(f"max_length = {limit} leaves no room for a response; pass at least 2.")
    tokenizer = model.tokenizer
    eos = tokenizer.eos_token_id
    rows: list[tuple[int, ...]] = []
    starts: list[int] = []
    truncated = 0
    for index, (instruction, response) in enumerate(
        zip(data.instructions, data.responses, strict=True)
    ):
        templated = chat_prompt(tokenizer, instruction)
        if templated is not None:  # the template writes its own special tokens
            prompt = list(tokenizer(templated, add_special_tokens=False)["input_ids"])
        else:
            prompt = (
                encode_prompts(
                    tokenizer,
                    PLAIN_TEMPLATE.format(instruction=instruction),
                    prepend_bos=model.prepend_bos,
                    pad_id=model.pad_token_id,
                    max_length=10**9,
                )
                .row(0)
                .tolist()
            )
        answer = list(tokenizer(response, add_special_tokens=False)["input_ids"])
        answer += [eos] if eos is not None else []
        if len(prompt) >= limit:
            raise InputError(
                f"Instruction {index} of {data.name} is {len(prompt)} tokens with its template, "
                f"which fills the {limit}-token limit and leaves no room for its response; "
                f"shorten it or raise max_length."
            )
        if len(prompt) + len(answer) > limit:
            truncated += 1
            answer = answer[: limit - len(prompt)]
        rows.append(tuple(prompt + answer))
        starts.append(len(prompt))
    if truncated:
        warnings.warn(
            f"{truncated} of {len(data)} responses in {data.name} were longer than the "
            f"{limit}-token limit with their prompts and were truncated to fit.",
            stacklevel=2,
        )
    return EncodedInstructions(tuple(rows), tuple(starts), truncated)
