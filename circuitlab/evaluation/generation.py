"""Batched greedy decoding without padding: prompts of one token length decode together.

Grouping prompts by length means no row is ever padded, so every row's continuation is the
one a single-prompt greedy loop produces. A prefix shared by all prompts (few-shot
demonstrations) runs once (`circuitlab.prefix.SharedPrefix`). Interventions active on the
model apply at every step.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from circuitlab.errors import InputError
from circuitlab.model import ModelHandle
from circuitlab.prefix import SharedPrefix
from circuitlab.tokenization import TokenBatch, pad_rows

__all__ = ["greedy_continuations"]


def greedy_continuations(
    model: ModelHandle,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 10,
    stop: str | None = "\n",
    batch_size: int = 16,
    progress: bool = False,
) -> list[str]:
    """Greedy continuation text of each prompt, cut at the first ``stop`` string.

    Args:
        model: the model handle.
        prompts: prompt texts.
        max_new_tokens: most tokens generated per prompt.
        stop: decoding of a row ends once its text contains this (``None``: only EOS / the
            token budget); the returned text is cut before it.
        batch_size: prompts decoded together.
        progress: show a progress bar.

    Returns:
        One continuation per prompt, in prompt order (special tokens removed).
    """
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be at least 1, got {max_new_tokens}.")
    batch = model.tokenize(list(prompts))
    rows = [batch.row(index).tolist() for index in range(len(batch))]
    too_long = [i for i, ids in enumerate(rows) if len(ids) + max_new_tokens > model.arch.n_ctx]
    if too_long:
        raise InputError(
            f"Prompt {too_long[0]} ({len(rows[too_long[0]])} tokens) plus {max_new_tokens} new "
            f"tokens exceeds the model's context of {model.arch.n_ctx} tokens."
        )
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, ids in enumerate(rows):
        by_length[len(ids)].append(index)
    groups = [
        members[start : start + batch_size]
        for _, members in sorted(by_length.items())
        for start in range(0, len(members), batch_size)
    ]
    shared = SharedPrefix(model)
    texts: list[str] = [""] * len(rows)
    for members in tqdm(groups, desc="generating", unit="batch", disable=not progress):
        group = pad_rows([rows[index] for index in members], model.pad_token_id)
        decoded = _decode_group(model, group, shared, max_new_tokens, stop)
        for index, text in zip(members, decoded, strict=True):
            texts[index] = text
    return texts


@torch.no_grad()
def _decode_group(
    model: ModelHandle,
    group: TokenBatch,
    shared: SharedPrefix,
    max_new_tokens: int,
    stop: str | None,
) -> list[str]:
    """Decode rows of equal length together (no padding anywhere)."""
    group = group.to(model.device)
    offset, cache = shared.split_cache(group)
    if cache is None:
        cache = model.new_kv_cache()
    kwargs = {"logits_to_keep": 1} if model.supports_logits_to_keep else {}
    step_input = group.input_ids[:, offset:]
    eos = model.tokenizer.eos_token_id
    generated: list[list[int]] = [[] for _ in range(len(group))]
    done = [False] * len(group)
    for _ in range(max_new_tokens):
        logits = model.forward_with_kv_cache(step_input, cache, **kwargs)
        next_ids = logits[:, -1].argmax(dim=-1)
        for row, token in enumerate(next_ids.tolist()):
            if done[row]:
                continue
            if eos is not None and token == eos:
                done[row] = True
                continue
            generated[row].append(token)
            if stop is not None and stop in model.tokenizer.decode(generated[row]):
                done[row] = True
        if all(done):
            break
        step_input = next_ids[:, None]
    texts = [model.tokenizer.decode(ids, skip_special_tokens=True) for ids in generated]
    return [text.split(stop)[0] if stop is not None else text for text in texts]
