"""Tokenization with one BOS policy, and right-padded batches.

Policy: a prompt's tokens are exactly what the Hugging Face tokenizer produces with its
special tokens on (``tokenizer(text).input_ids``): SmolLM2 gets no BOS, Gemma gets ``<bos>``,
just as plain ``transformers`` does. ``prepend_bos=True`` makes every prompt start with BOS;
``prepend_bos=False`` removes a BOS the tokenizer added. TransformerLens's ``to_tokens`` (which
always prepends BOS) is never used.

Batches are padded on the right, so every real token sits at the position it has when the
prompt runs alone, and outputs at real positions equal the unbatched ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from circuitlab.checks import check_integer, check_prompts, check_text
from circuitlab.errors import InputError

__all__ = ["TokenBatch", "encode_prompts", "pad_rows", "single_token_id", "token_windows"]


@dataclass(frozen=True)
class TokenBatch:
    """Right-padded token ids of several prompts.

    Attributes:
        input_ids: token ids, padded with the pad id after each prompt's last token.
        attention_mask: 1 on real tokens, 0 on padding.
        prompts: the texts, when the batch came from text.
    """

    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    prompts: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def lengths(self) -> Int[Tensor, " batch"]:
        """Number of real tokens in each prompt."""
        return self.attention_mask.sum(dim=1)

    @property
    def last_positions(self) -> Int[Tensor, " batch"]:
        """Position of each prompt's last real token."""
        return self.lengths - 1

    def to(self, device: torch.device | str) -> TokenBatch:
        """The same batch on another device.

        Args:
            device: the target device (e.g. ``"cuda"``).
        """
        return TokenBatch(self.input_ids.to(device), self.attention_mask.to(device), self.prompts)

    def row(self, index: int) -> Int[Tensor, " pos"]:
        """The real tokens of prompt ``index`` (padding removed).

        Args:
            index: the row (prompt) index in the batch.
        """
        return self.input_ids[index, : int(self.lengths[index])]


def _apply_bos_policy(ids: list[int], bos_id: int | None, prepend_bos: bool | None) -> list[int]:
    if prepend_bos is None or bos_id is None:
        return ids
    starts_with_bos = bool(ids) and ids[0] == bos_id
    if prepend_bos and not starts_with_bos:
        return [bos_id, *ids]
    if not prepend_bos and starts_with_bos:
        return ids[1:]
    return ids


def encode_prompts(
    tokenizer: Any,
    prompts: str | Sequence[str],
    *,
    prepend_bos: bool | None,
    pad_id: int,
    max_length: int,
) -> TokenBatch:
    """Tokenize prompts with the BOS policy and pad them on the right.

    Args:
        tokenizer: a Hugging Face tokenizer.
        prompts: one text or a list of texts.
        prepend_bos: ``None`` keeps the tokenizer's own special tokens; ``True``/``False``
            forces a leading BOS on or off.
        pad_id: id written into padding positions (never attended to).
        max_length: the model's context length; a longer prompt is an error.

    Returns:
        A `TokenBatch` of shape [batch, longest prompt].
    """
    texts = check_prompts(prompts)
    encoded = tokenizer(texts, add_special_tokens=True)["input_ids"]
    bos_id = tokenizer.bos_token_id
    rows = [_apply_bos_policy(list(ids), bos_id, prepend_bos) for ids in encoded]
    for index, ids in enumerate(rows):
        if not ids:
            raise InputError(
                f"Prompt {index} ({texts[index]!r}) has no tokens. Give it some text, or load the "
                f"model with prepend_bos=True so every prompt starts with BOS."
            )
        if len(ids) > max_length:
            raise InputError(
                f"Prompt {index} is {len(ids)} tokens long but the model's context is "
                f"{max_length} tokens. Shorten the prompt (or truncate it to its last "
                f"{max_length} tokens) before running it."
            )
    return pad_rows(rows, pad_id, prompts=tuple(texts))


def pad_rows(
    rows: Sequence[Sequence[int]], pad_id: int, *, prompts: tuple[str, ...] | None = None
) -> TokenBatch:
    """Right-pad lists of token ids into a `TokenBatch` (mask 1 on real tokens).

    Args:
        rows: each prompt's token ids.
        pad_id: id written into padding positions (never attended to).
        prompts: the prompts' texts, kept on the batch (``None`` when not known).
    """
    width = max((len(ids) for ids in rows), default=0)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, ids in enumerate(rows):
        input_ids[index, : len(ids)] = torch.tensor(list(ids), dtype=torch.long)
        attention_mask[index, : len(ids)] = 1
    return TokenBatch(input_ids, attention_mask, prompts)


def token_windows(
    tokenizer: Any, texts: Sequence[str], *, prepend_bos: bool | None, window: int
) -> list[list[int]]:
    """Each text's tokens (BOS policy applied) cut into consecutive windows of ``window`` tokens.

    The last window of a text may be shorter; texts with no tokens contribute nothing.

    Args:
        tokenizer: a Hugging Face tokenizer.
        texts: the texts to cut.
        prepend_bos: ``None`` keeps the tokenizer's own special tokens; ``True``/``False``
            forces a leading BOS on or off (per text, before cutting).
        window: tokens per window (at least 2).
    """
    check_integer("window", window, minimum=2)
    for index, text in enumerate(texts):
        check_text(f"Text {index}", text)
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    windows: list[list[int]] = []
    for ids in encoded:
        ids = _apply_bos_policy(list(ids), tokenizer.bos_token_id, prepend_bos)
        windows.extend(ids[start : start + window] for start in range(0, len(ids), window))
    return windows


def single_token_id(tokenizer: Any, word: str, *, what: str = "Label word") -> int:
    """The id of ``word`` if it is exactly one token (no special tokens added), else an error.

    Leading spaces matter: for most tokenizers ``" Paris"`` is one token and ``"Paris"``
    another. ``what`` names the word in errors (``"Label word"``, ``"Target token"``).

    Args:
        tokenizer: a Hugging Face tokenizer.
        word: the word to look up.
        what: what the word is, for error messages.
    """
    if not isinstance(word, str) or word == "":
        raise InputError(f"A {what.lower()} must be a non-empty string, got {word!r}.")
    check_text(what, word)
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = [tokenizer.decode([token]) for token in ids]
        hint = (
            " Try the word with a leading space (e.g. ' " + word.strip() + "'), a shorter "
            "synonym, or pass token ids directly."
            if not word.startswith(" ")
            else " Pick a word the tokenizer keeps whole, or pass token ids directly."
        )
        raise InputError(f"{what} {word!r} is {len(ids)} tokens ({pieces}), not one.{hint}")
    return int(ids[0])
