"""In-context learning read-out: the full model's label-word logits after K-shot prompts.

The prompts of one demonstration set share their demonstrations, so the shared prefix runs
once (`circuitlab.prefix.SharedPrefix`) and each batch runs only its query tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from circuitlab.model import ModelHandle
from circuitlab.prefix import SharedPrefix

__all__ = ["label_logits"]


def label_logits(
    model: ModelHandle,
    prompts: Sequence[str],
    label_words: Sequence[str],
    *,
    batch_size: int = 8,
    progress: bool = False,
) -> Float[Tensor, "example label"]:
    """The model's next-token logits of the label words after each prompt.

    Args:
        model: the model handle.
        prompts: prompt texts (each within the model's context; a longer one is an error).
        label_words: single-token label words.
        batch_size: prompts per forward pass.
        progress: show a progress bar.

    Returns:
        Logits [example, label] on the CPU.
    """
    ids = torch.tensor(model.token_ids(list(label_words)), device=model.device)
    shared = SharedPrefix(model)
    rows = []
    for batch in model.batches(list(prompts), batch_size, progress=progress):
        batch = batch.to(model.device)
        last = batch.last_positions
        offset, kwargs = shared.split(batch, last)
        local = last - offset
        if model.supports_logits_to_keep:
            kept, local = torch.unique(local, return_inverse=True)
            kwargs["logits_to_keep"] = kept
        with torch.no_grad():
            logits = model.bridge(
                batch.input_ids[:, offset:], attention_mask=batch.attention_mask, **kwargs
            )
        rows.append(logits[torch.arange(len(batch), device=logits.device), local][:, ids].cpu())
    return torch.cat(rows).float()
