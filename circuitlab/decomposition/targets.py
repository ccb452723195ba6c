"""What to attribute: single tokens, sets of label words, and logit differences."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from circuitlab.errors import InputError
from circuitlab.model import ModelHandle

__all__ = ["LogitDiff", "Target", "TargetSpec", "resolve_targets", "space_variants"]

SPACE_WARNING_RATIO = 10.0
"""A target without its leading space is flagged when the spaced token is this many times
more likely (mean probability ratio at the read positions)."""


@dataclass(frozen=True)
class LogitDiff:
    """The logit of ``positive`` minus the logit of ``negative`` (token strings or ids).

    Args:
        positive: The token whose logit is added (a one-token string such as ``" Paris"``, or
            an id).
        negative: The token whose logit is subtracted (a one-token string or an id).
    """

    positive: str | int
    negative: str | int


TargetSpec = str | int | LogitDiff | Sequence[str | int | LogitDiff]
"""A token string (``" Paris"``, must be one token), a token id, a `LogitDiff`, or a
list of these (one output column each)."""


@dataclass(frozen=True)
class Target:
    """A linear read-out of the logits: ``sum_i coefficient_i * logit[token_i]``.

    Args:
        label: How the target is shown (``' Paris'``, ``' Paris' - ' London'``).
        token_ids: The token ids read.
        coefficients: The weight of each token's logit.
    """

    label: str
    token_ids: tuple[int, ...]
    coefficients: tuple[float, ...]


def _token(model: ModelHandle, token: str | int) -> tuple[int, str]:
    if isinstance(token, bool) or not isinstance(token, (str, int)):
        raise InputError(f"A target token must be a string or an int id, got {token!r}.")
    if isinstance(token, int):
        if not 0 <= token < model.d_vocab:
            raise InputError(
                f"Token id {token} is out of range for a vocabulary of {model.d_vocab}."
            )
        return token, model.tokenizer.decode([token])
    return model.token_id(token, what="Target token"), token


def resolve_targets(model: ModelHandle, targets: TargetSpec) -> list[Target]:
    """Turn a target specification into `Target` read-outs (checked against the vocab).

    Args:
        model: The model whose tokenizer resolves the tokens.
        targets: Tokens (strings or ids), `LogitDiff` values, or a list of them.
    """
    if isinstance(targets, (str, int, LogitDiff)):
        items = [targets]
    elif isinstance(targets, Sequence) and not isinstance(targets, bytes):
        items = list(targets)
    else:
        raise InputError(
            f"targets must be a token string (' Paris'), a token id, a LogitDiff or a list of "
            f"these, got {type(targets).__name__} {targets!r}."
        )
    if not items:
        raise InputError("No targets were given. Pass a token such as ' Paris' or a list.")
    resolved = []
    for item in items:
        if isinstance(item, LogitDiff):
            (plus, plus_text), (minus, minus_text) = (
                _token(model, item.positive),
                _token(model, item.negative),
            )
            resolved.append(Target(f"{plus_text!r} - {minus_text!r}", (plus, minus), (1.0, -1.0)))
        else:
            token, text = _token(model, item)
            resolved.append(Target(repr(text), (token,), (1.0,)))
    return resolved


def space_variants(model: ModelHandle, targets: Sequence[Target]) -> list[tuple[int, Target]]:
    """For each single-token target written without a leading space (``'Paris'``) whose
    spaced form (``' Paris'``) is also one token: (its column, a `Target` of the spaced form).

    Args:
        model: The model whose tokenizer is asked.
        targets: The resolved targets.
    """
    variants = []
    single = {target.token_ids[0] for target in targets if len(target.token_ids) == 1}
    for column, target in enumerate(targets):
        if len(target.token_ids) != 1:
            continue
        text = model.tokenizer.decode([target.token_ids[0]])
        if not text or text[0].isspace() or not text.strip():
            continue
        spaced = model.tokenizer(" " + text, add_special_tokens=False)["input_ids"]
        if len(spaced) == 1 and spaced[0] not in single:
            variants.append((column, Target(repr(" " + text), (int(spaced[0]),), (1.0,))))
    return variants


def readout_matrix(
    targets: Sequence[Target], d_vocab: int, *, device: torch.device, dtype: torch.dtype
) -> Float[Tensor, "d_vocab target"]:
    """Sparse read-out as a dense [d_vocab, target] matrix (only the used rows are non-zero)."""
    matrix = torch.zeros(d_vocab, len(targets), device=device, dtype=dtype)
    for column, target in enumerate(targets):
        for token, coefficient in zip(target.token_ids, target.coefficients, strict=True):
            matrix[token, column] += coefficient
    return matrix
