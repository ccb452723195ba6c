"""Greedy decoding: the one decoder behind `ModelHandle.generate` and the QA evaluation.

Prompts of one token length decode together (`circuitlab.collector.plan_batches` with
``equal_lengths``), so no row is ever padded and every row's
continuation is the one a single-prompt greedy loop produces. A prefix shared by all prompts
of a group (few-shot demonstrations) can run once (`circuitlab.prefix.SharedPrefix`).
Interventions active on the model apply at every step; the KV cache goes through
`ModelHandle.forward_with_kv_cache`, which checks that every step extended it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from circuitlab.collector import plan_batches
from circuitlab.errors import InputError
from circuitlab.prefix import SharedPrefix
from circuitlab.progress import progress_bar
from circuitlab.tokenization import TokenBatch

if TYPE_CHECKING:
    from circuitlab.model import ModelHandle, Prompts

__all__ = ["greedy_decode"]


def greedy_decode(
    model: ModelHandle,
    prompts: Prompts,
    *,
    max_new_tokens: int,
    stop_at_eos: bool = True,
    keep_eos: bool = False,
    stop: str | None = None,
    batch_size: int = 16,
    share_prefix: bool = True,
    progress: bool = False,
) -> list[list[int]]:
    """Greedy continuation token ids of each prompt.

    Args:
        model: the model handle.
        prompts: prompt texts (or a tokenized batch).
        max_new_tokens: most tokens generated per prompt (0 gives empty continuations).
        stop_at_eos: a row ends at the end-of-sequence token.
        keep_eos: return that end-of-sequence token as the row's last id.
        stop: a row also ends once its decoded text contains this string (the token that
            completes it is returned; cut the text yourself).
        batch_size: most prompts of one length decoded together.
        share_prefix: run a prefix common to a group's prompts once.
        progress: show a progress bar over the groups.

    Returns:
        The new token ids of each prompt, in prompt order.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise InputError(f"max_new_tokens must be an integer, got {max_new_tokens!r}.")
    if max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be >= 0, got {max_new_tokens}.")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}.")
    batch = model.tokenize(prompts if not isinstance(prompts, str) else [prompts])
    too_long = (batch.lengths + max_new_tokens > model.arch.n_ctx).nonzero().flatten().tolist()
    if too_long:
        index = too_long[0]
        raise InputError(
            f"Prompt {index} ({int(batch.lengths[index])} tokens) plus {max_new_tokens} new "
            f"tokens exceeds the model's context of {model.arch.n_ctx} tokens."
        )
    plan = plan_batches(model, batch, batch_size=batch_size, equal_lengths=True)
    shared = SharedPrefix(model) if share_prefix else None
    generated: list[list[int]] = [[] for _ in range(len(batch))]
    for planned in progress_bar(plan, desc="generating", unit="batch", progress=progress):
        decoded = _decode_group(
            model, planned.tokens, shared, max_new_tokens, stop_at_eos, keep_eos, stop
        )
        for index, ids in zip(planned.rows.tolist(), decoded, strict=True):
            generated[index] = ids
    return generated


@torch.no_grad()
def _decode_group(
    model: ModelHandle,
    group: TokenBatch,
    shared: SharedPrefix | None,
    max_new_tokens: int,
    stop_at_eos: bool,
    keep_eos: bool,
    stop: str | None,
) -> list[list[int]]:
    """Decode rows of equal length together (no padding anywhere)."""
    generated: list[list[int]] = [[] for _ in range(len(group))]
    if max_new_tokens == 0:
        return generated
    group = group.to(model.device)
    offset, cache = shared.split_cache(group) if shared is not None else (0, None)
    if cache is None:
        cache = model.new_kv_cache()
    kwargs = {"logits_to_keep": 1} if model.supports_logits_to_keep else {}
    step_input = group.input_ids[:, offset:]
    eos = model.tokenizer.eos_token_id if stop_at_eos else None
    done = [False] * len(group)
    for _ in range(max_new_tokens):
        logits = model.forward_with_kv_cache(step_input, cache, **kwargs)
        next_ids = logits[:, -1].argmax(dim=-1)
        for row, token in enumerate(next_ids.tolist()):
            if done[row]:
                continue
            if eos is not None and token == eos:
                done[row] = True
                if keep_eos:
                    generated[row].append(token)
                continue
            generated[row].append(token)
            if stop is not None and stop in model.tokenizer.decode(generated[row]):
                done[row] = True
        if all(done):
            break
        step_input = next_ids[:, None]
    return generated
