"""Perplexity on held-out text, window by window.

Each text is cut into consecutive windows of ``window`` tokens; inside a window every token
after the first is predicted from the tokens before it (the first token of each window is
context only). Perplexity = exp(mean negative log-likelihood per predicted token, in nats).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from circuitlab.checks import checked_arguments
from circuitlab.collector import EVERY_TOKEN, collect
from circuitlab.errors import InputError
from circuitlab.evaluation.data import load_heldout_prose
from circuitlab.model import ModelHandle
from circuitlab.readers import NextTokenLoss
from circuitlab.tokenization import pad_rows, token_windows

__all__ = ["PerplexityResult", "perplexity"]


@dataclass(frozen=True)
class PerplexityResult:
    """Perplexity, mean negative log-likelihood (nats per token) and tokens predicted.

    Attributes:
        perplexity: ``exp(nll)`` (lower is better).
        nll: mean negative log-likelihood of the predicted tokens, in nats per token.
        tokens: how many tokens were predicted (and scored).
    """

    perplexity: float
    nll: float
    tokens: int


@checked_arguments
def perplexity(
    model: ModelHandle,
    texts: str | Sequence[str] | None = None,
    *,
    window: int = 256,
    max_tokens: int | None = None,
    batch_size: int = 4,
    progress: bool | None = None,
) -> PerplexityResult:
    """Perplexity of the model on texts (default: the shipped held-out prose, evaluation split).

    Args:
        model: the model handle (interventions active on it apply).
        texts: the texts.
        window: tokens per window (at most the model's context).
        max_tokens: stop after the windows holding this many predicted tokens (default: all).
        batch_size: windows per forward pass (the logits of a batch are
            batch x window x vocabulary floats: lower it for large vocabularies).
        progress: progress bar (default: shown once the call
            runs past 2 s; ``False`` never; see `circuitlab.progress`).
    """
    texts = (
        load_heldout_prose()
        if texts is None
        else ([texts] if isinstance(texts, str) else list(texts))
    )
    if not texts:
        raise InputError("No texts were given for perplexity. Pass at least one text.")
    if window > model.arch.n_ctx:
        raise InputError(f"window = {window} exceeds the model's context of {model.arch.n_ctx}.")
    if max_tokens is not None and max_tokens < 1:
        raise InputError(f"max_tokens must be at least 1, got {max_tokens}.")
    windows = [
        ids
        for ids in token_windows(
            model.tokenizer, texts, prepend_bos=model.prepend_bos, window=window
        )
        if len(ids) >= 2
    ]
    if max_tokens is not None:
        kept, total = [], 0
        for ids in windows:
            if total >= max_tokens:
                break
            kept.append(ids)
            total += len(ids) - 1
        windows = kept
    if not windows:
        raise InputError("The texts have fewer than two tokens: nothing to predict.")
    readers = {"loss": NextTokenLoss()}
    nll_sum, count = collect(
        model,
        pad_rows(windows, model.pad_token_id),
        readers,
        positions=EVERY_TOKEN,
        batch_size=batch_size,
        progress=progress,
        desc="perplexity",
    )["loss"]
    nll = nll_sum / count
    return PerplexityResult(perplexity=math.exp(nll), nll=nll, tokens=count)
