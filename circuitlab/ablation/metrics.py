"""What an ablation study measures: one number per example from its next-token logits."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitlab.errors import InputError
from circuitlab.vocabulary import CHOICE_METRICS, METRICS

__all__ = ["CHOICE_METRICS", "METRICS", "check_metric", "logit_diff_values", "metric_values"]


def check_metric(metric: str, *, has_choices: bool, has_pairs: bool = False) -> str:
    """Validate a metric name (``-`` and ``_`` are interchangeable).

    ``has_pairs``: the prompts' targets are `LogitDiff` pairs, which give ``logit_diff`` (and
    only it) its meaning for prompts.

    Args:
        metric: The metric name to check.
        has_choices: Whether the study has label choices (a task), which choice metrics need.
        has_pairs: Whether the study has token pairs, which ``logit_diff`` needs.
    """
    name = str(metric).replace("-", "_")
    if name not in METRICS:
        raise InputError(f"Unknown metric {metric!r}; use one of {', '.join(METRICS)}.")
    if has_pairs and name != "logit_diff":
        raise InputError(
            f"LogitDiff targets are measured by their logit difference; use metric "
            f"'logit_diff' (not {name!r}), or give single tokens as targets."
        )
    if name in CHOICE_METRICS and not has_choices and not (name == "logit_diff" and has_pairs):
        raise InputError(
            f"The metric {name!r} compares label words, which only a classification task has. "
            f"For prompts use 'log_prob', 'prob' or 'logit' of a target token, or 'logit_diff' "
            f"with LogitDiff(answer, other) targets (--diff A B)."
        )
    return name


def logit_diff_values(
    logits: Float[Tensor, "batch d_vocab"],
    positive: Int[Tensor, " batch"],
    negative: Int[Tensor, " batch"],
) -> Float[Tensor, " batch"]:
    """The two-token logit difference of each row: ``logits[positive] - logits[negative]``.

    Computed in float32, in logits; ids may sit on any device.

    Args:
        logits: Logits of each row [batch, d_vocab].
        positive: Token id whose logit is added, per row [batch].
        negative: Token id whose logit is subtracted, per row [batch].

    Example:
        >>> logits = torch.tensor([[0.0, 2.0, 5.0], [1.0, 0.0, 3.0]])
        >>> logit_diff_values(logits, torch.tensor([2, 0]), torch.tensor([1, 2]))
        tensor([ 3., -2.])
    """
    logits = logits.float()
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, positive.to(logits.device)] - logits[rows, negative.to(logits.device)]


def metric_values(
    metric: str,
    logits: Float[Tensor, "batch d_vocab"],
    gold: Int[Tensor, " batch"],
    choices: Int[Tensor, " choice"] | None = None,
    labels: Int[Tensor, " batch"] | None = None,
    negative: Int[Tensor, " batch"] | None = None,
) -> Float[Tensor, " batch"]:
    """The metric of each example from its next-token logits (computed in float32).

    Args:
        metric: a key of `METRICS`.
        logits: next-token logits of each example.
        gold: the gold token id of each example.
        choices: token ids of the label words (classification tasks).
        labels: the gold class index of each example (classification tasks).
        negative: for prompts, the token whose logit ``logit_diff`` subtracts from the gold
            token's (two-token logit difference).
    """
    logits = logits.float()
    gold = gold.to(logits.device)
    if metric == "logit":
        return logits.gather(1, gold[:, None])[:, 0]
    if metric == "logit_diff" and negative is not None:
        return logit_diff_values(logits, gold, negative)
    if metric in ("log_prob", "prob"):
        log_prob = logits.log_softmax(dim=-1).gather(1, gold[:, None])[:, 0]
        return log_prob.exp() if metric == "prob" else log_prob
    if choices is None or labels is None:
        raise InputError(f"The metric {metric!r} needs label words and gold labels.")
    options = logits[:, choices.to(logits.device)]  # [batch, choice]
    labels = labels.to(logits.device)
    if metric == "accuracy":
        return (options.argmax(dim=-1) == labels).float()
    gold_logit = options.gather(1, labels[:, None])[:, 0]
    is_gold = torch.nn.functional.one_hot(labels, options.shape[1]).bool()
    return gold_logit - options.masked_fill(is_gold, float("-inf")).max(dim=-1).values
