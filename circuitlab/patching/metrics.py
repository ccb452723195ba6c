"""What a patching run measures: one number per run from its next-token logits.

Built-in metrics read the pair's answer tokens: ``"logit_diff"`` (``logit[answer] -
logit[wrong]``, the usual choice), ``"log_prob"``, ``"prob"`` or ``"logit"`` of the answer.
Any callable works too: ``metric(logits)`` or ``metric(logits, pairs)``, with ``logits`` the
next-token logits [runs, d_vocab] and ``pairs`` each run's pair index [runs]; it must return
one number per run [runs].
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitlab.ablation.metrics import metric_values
from circuitlab.errors import InputError
from circuitlab.model import ModelHandle
from circuitlab.patching.pairs import PromptPair
from circuitlab.vocabulary import PATCH_METRICS

__all__ = ["PATCH_METRICS", "PairMetric", "resolve_metric"]


MetricFunction = Callable[..., Tensor]


@dataclass(frozen=True)
class PairMetric:
    """A metric resolved against a model and pairs: ``metric(logits, pairs) -> [runs]``.

    Attributes:
        name: the metric's name (a `PATCH_METRICS` name, or the callable's ``__name__``).
        function: the callable: ``function(logits, pairs)`` or ``function(logits)``, logits
            [runs, d_vocab] and pair indices [runs] to one value per run [runs].
        takes_pairs: whether ``function`` takes the pair indices as its second argument.
    """

    name: str
    function: MetricFunction
    takes_pairs: bool

    def __call__(
        self, logits: Float[Tensor, "runs d_vocab"], pairs: Int[Tensor, " runs"]
    ) -> Float[Tensor, " runs"]:
        """One value per run (float32), differentiable in ``logits``."""
        values = self.function(logits, pairs) if self.takes_pairs else self.function(logits)
        if not isinstance(values, Tensor):
            values = torch.as_tensor(values, dtype=torch.float32)
        if values.shape != (logits.shape[0],):
            raise InputError(
                f"The metric {self.name} returned shape {tuple(values.shape)} for "
                f"{logits.shape[0]} runs; it must return one number per run, shape "
                f"({logits.shape[0]},) (e.g. logits[:, a] - logits[:, b], not .mean())."
            )
        return values.float()


def _answer_ids(model: ModelHandle, pairs: Sequence[PromptPair], field: str) -> Tensor:
    ids = []
    for index, pair in enumerate(pairs):
        word = getattr(pair, field)
        if word is None:
            raise InputError(
                f"Pair {index + 1} has no {field!r} token, which the metric needs; give "
                f"PromptPair(..., answer=' Paris', wrong=' Rome') or a callable metric."
            )
        ids.append(model.token_id(word, what=f"The {field} token of pair {index + 1}"))
    return torch.tensor(ids)


def resolve_metric(
    model: ModelHandle, pairs: Sequence[PromptPair], metric: str | MetricFunction
) -> PairMetric:
    """Check ``metric`` (a name of `PATCH_METRICS` or a callable) against the pairs.

    Args:
        model: the model handle whose tokenizer resolves the pairs' answer tokens.
        pairs: the prompt pairs; built-in metrics need their ``answer`` (and, for
            ``logit_diff``, ``wrong``) tokens.
        metric: a name of `PATCH_METRICS`, or a callable ``metric(logits)`` or
            ``metric(logits, pairs)`` returning one number per run.
    """
    if callable(metric):
        try:
            parameters = inspect.signature(metric).parameters.values()
        except (TypeError, ValueError):
            parameters = ()
        positional = [
            p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        takes_pairs = len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in parameters)
        name = getattr(metric, "__name__", type(metric).__name__)
        return PairMetric(name, metric, takes_pairs)
    name = str(metric).replace("-", "_")
    if name not in PATCH_METRICS:
        raise InputError(
            f"Unknown patching metric {metric!r}; use one of {', '.join(PATCH_METRICS)} or a "
            f"callable on next-token logits [runs, d_vocab] returning [runs]."
        )
    answer = _answer_ids(model, pairs, "answer")
    if name == "logit_diff":
        wrong = _answer_ids(model, pairs, "wrong")
        same = (answer == wrong).nonzero().flatten().tolist()
        if same:
            raise InputError(
                f"Pair {same[0] + 1} has the same answer and wrong token; a logit difference "
                f"of a token with itself is always 0. Give the corrupted prompt's answer as wrong."
            )

        def difference(logits: Tensor, rows: Tensor) -> Tensor:
            return metric_values("logit_diff", logits, answer[rows], negative=wrong[rows])

        return PairMetric(name, difference, True)

    def single(logits: Tensor, rows: Tensor) -> Tensor:
        return metric_values(name, logits, answer[rows])

    return PairMetric(name, single, True)
