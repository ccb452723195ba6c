"""Greedy continuation text for the QA evaluation, cut at a stop string.

Decoding is `circuitlab.decoding.greedy_decode`: prompts of one length decode together with no
padding, and a prefix all prompts share (few-shot demonstrations) runs once.
"""

from __future__ import annotations

from collections.abc import Sequence

from circuitlab.decoding import greedy_decode
from circuitlab.errors import InputError
from circuitlab.model import ModelHandle

__all__ = ["greedy_continuations"]


def greedy_continuations(
    model: ModelHandle,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 10,
    stop: str | None = "\n",
    batch_size: int = 16,
    progress: bool | None = None,
) -> list[str]:
    """Greedy continuation text of each prompt, cut at the first ``stop`` string.

    Args:
        model: the model handle.
        prompts: prompt texts.
        max_new_tokens: most tokens generated per prompt.
        stop: decoding of a row ends once its text contains this (``None``: only EOS / the
            token budget); the returned text is cut before it.
        batch_size: prompts decoded together.
        progress: progress bar (default: shown once the call
            runs past 2 s; ``False`` never; see `circuitlab.progress`).

    Returns:
        One continuation per prompt, in prompt order (special tokens removed).
    """
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be at least 1, got {max_new_tokens}.")
    generated = greedy_decode(
        model,
        list(prompts),
        max_new_tokens=max_new_tokens,
        stop=stop,
        batch_size=batch_size,
        progress=progress,
    )
    texts = [model.tokenizer.decode(ids, skip_special_tokens=True) for ids in generated]
    return [text.split(stop)[0] if stop is not None else text for text in texts]
