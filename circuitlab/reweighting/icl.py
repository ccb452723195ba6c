"""In-context learning read-out: the full model's label-word logits after K-shot prompts.

The prompts of one demonstration set share their demonstrations, so the collector runs the
shared prefix once (`circuitlab.prefix.SharedPrefix`) and each batch only its query tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

from jaxtyping import Float
from torch import Tensor

from circuitlab.collector import collect
from circuitlab.model import ModelHandle
from circuitlab.readers import Logits

__all__ = ["label_logits"]


def label_logits(
    model: ModelHandle,
    prompts: Sequence[str],
    label_words: Sequence[str],
    *,
    batch_size: int = 8,
    progress: bool | None = None,
) -> Float[Tensor, "example label"]:
    """The model's next-token logits of the label words after each prompt.

    Args:
        model: the model handle.
        prompts: prompt texts (each within the model's context; a longer one is an error).
        label_words: single-token label words.
        batch_size: prompts per forward pass.
        progress: progress bar (default: shown once the call
            runs past 2 s; ``False`` never; see `circuitlab.progress`).

    Returns:
        Logits [example, label] on the CPU.
    """
    readers = {"logits": Logits(columns=model.token_ids(list(label_words)))}
    logits = collect(
        model, list(prompts), readers, batch_size=batch_size, progress=progress, desc="reading"
    )["logits"]
    return logits.cpu().float()
