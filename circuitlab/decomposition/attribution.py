"""Direct logit attribution through the final norm, with its scale frozen.

The final norm divides the residual stream by a per-token scale ``s`` and multiplies by a gain
``g`` (RMSNorm: ``x / s * g``; LayerNorm additionally centres ``x`` and adds a bias ``b``).
With ``s`` frozen at its value for the *full* residual stream, the norm is linear in ``x``,
so the logits split exactly over the components of `circuitlab.decomposition.residual`:

    logit_t = sum_j  (center(c_j) / s * g) . W_U[:, t]   +   (b . W_U[:, t] + b_U[t])
              `---------- attribution of c_j ---------'       `----- constant ------'

Everything is computed on the model's own, unmodified weights (never TransformerLens's
compatibility mode, which folds and centres weights in place).
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitlab.checks import check_prompts, checked_arguments
from circuitlab.collector import CapturedBatch, collect
from circuitlab.decomposition.residual import DecompositionReader, ResidualDecomposition
from circuitlab.decomposition.results import Attribution
from circuitlab.decomposition.targets import (
    SPACE_WARNING_RATIO,
    LogitDiff,
    Target,
    TargetSpec,
    readout_matrix,
    resolve_targets,
    space_variants,
)
from circuitlab.errors import InputError
from circuitlab.model import ModelHandle, Prompts
from circuitlab.positions import Positions
from circuitlab.tokenization import TokenBatch
from circuitlab.weights import norm_bias, norm_gain, unembedding

__all__ = ["AttributionReader", "attribute_decomposition", "direct_logit_attribution"]


def attribute_decomposition(
    model: ModelHandle, parts: ResidualDecomposition, targets: list[Target]
) -> tuple[Float[Tensor, "batch component target"], Float[Tensor, "batch target"]]:
    """Attributions of each component and the constant term, for a decomposed batch.

    Args:
        model: The model the decomposition was taken from.
        parts: The decomposed final residual stream.
        targets: The resolved read-outs of the logits.
    """
    final = model.arch.norm("final")
    w_u, b_u = unembedding(model)
    readout = readout_matrix(targets, model.d_vocab, device=w_u.device, dtype=w_u.dtype)
    used = readout.abs().sum(dim=1).nonzero().flatten()
    directions = w_u[:, used] @ readout[used]  # [d_model, target]
    contributions = parts.contributions
    if model.arch.norm_type == "layernorm":
        contributions = contributions - contributions.mean(dim=-1, keepdim=True)
    gain = norm_gain(model, final)
    scaled = contributions * (gain / parts.final_scale[:, None, None])
    values = scaled @ directions
    constant = torch.zeros(len(parts), len(targets), device=values.device, dtype=values.dtype)
    bias = norm_bias(model, final)
    if bias is not None:
        constant = constant + bias @ directions
    if b_u is not None:
        constant = constant + b_u[used] @ readout[used]
    return values, constant


@checked_arguments
def direct_logit_attribution(
    model: ModelHandle,
    prompts: Prompts,
    targets: TargetSpec,
    *,
    positions: Positions = None,
    per_prompt: bool = False,
    batch_size: int = 8,
    progress: bool | None = None,
) -> Attribution:
    """How much each component writes directly into the logits of the targets.

    Streams the prompts in batches, keeping only the chosen positions; memory stays at
    about one forward pass.

    Args:
        model: the model handle.
        prompts: prompt texts (or a tokenized batch).
        targets: a token (``" Paris"``), a token id, a `LogitDiff`, or a list of these (one
            output column each, the same for every prompt); with ``per_prompt=True``, one of
            these per prompt.
        positions: which token to read in each prompt; default each prompt's last real token.
        per_prompt: ``targets`` lists one target per prompt (three facts, three answers); the
            result has one column whose value for each prompt is its own target's.
        batch_size: prompts per forward pass.
        progress: progress bar (default: shown once the call
            runs past 2 s; ``False`` never; see `circuitlab.progress`).

    Returns:
        An `Attribution` whose ``values`` [batch, component, target] plus ``constant``
        [batch, target] sum to the model's ``logits`` [batch, target].

    Example:
        >>> result = direct_logit_attribution(model, "The capital of France is", " Paris")
        >>> result.top(3)          # the three components that push " Paris" up most
        >>> facts = ["The capital of France is", "The capital of Italy is"]
        >>> direct_logit_attribution(model, facts, [" Paris", " Rome"], per_prompt=True)
    """
    if isinstance(prompts, TokenBatch):
        texts = list(prompts.prompts or ())
        count = len(prompts)
    else:
        texts = check_prompts(prompts)
        count = len(texts)
    if per_prompt:
        return _per_prompt_attribution(
            model, prompts, texts, count, targets, positions, batch_size, progress
        )
    resolved = resolve_targets(model, targets)
    variants = space_variants(model, resolved)
    reader = AttributionReader(model, [*resolved, *(variant for _, variant in variants)])
    attribution = _attributed(model, prompts, reader, positions, batch_size, progress)
    _warn_missing_spaces(attribution, len(resolved), variants)
    n = len(resolved)
    return dataclasses.replace(
        attribution,
        values=attribution.values[..., :n],
        constant=attribution.constant[:, :n],
        logits=attribution.logits[:, :n],
        targets=attribution.targets[:n],
        prompts=tuple(texts),
    )


def _attributed(
    model: ModelHandle,
    prompts: Prompts,
    reader: AttributionReader,
    positions: Positions,
    batch_size: int,
    progress: bool | None,
) -> Attribution:
    """One collector pass of ``reader`` over ``prompts`` (both target modes share it)."""
    return collect(
        model,
        prompts,
        {"attribution": reader},
        positions=positions,
        batch_size=batch_size,
        progress=progress,
        desc="attributing",
    )["attribution"]


def _per_prompt_attribution(
    model: ModelHandle,
    prompts: Prompts,
    texts: list[str],
    count: int,
    targets: TargetSpec,
    positions: Positions,
    batch_size: int,
    progress: bool | None,
) -> Attribution:
    """One target per prompt: each batch attributes only its rows' own targets."""
    items = [targets] if isinstance(targets, (str, int, LogitDiff)) else list(targets)
    if len(items) != count:
        raise InputError(
            f"per_prompt=True needs one target per prompt: {len(items)} target(s) for {count} "
            f"prompt(s). Give a list as long as the prompts, or drop per_prompt for one target "
            f"set shared by every prompt."
        )
    resolved = [resolve_targets(model, item)[0] for item in items]
    distinct = list(dict.fromkeys(resolved))
    variants = dict(space_variants(model, distinct))  # column in distinct -> spaced form
    columns = [*distinct, *variants.values()]
    spaced = {column: len(distinct) + i for i, column in enumerate(variants)}
    index = {target: column for column, target in enumerate(distinct)}
    own = [index[target] for target in resolved]
    choose = torch.tensor([[column, spaced.get(column, column)] for column in own])
    reader = AttributionReader(model, columns, choose=choose)
    attribution = _attributed(model, prompts, reader, positions, batch_size, progress)
    for column, variant in variants.items():
        rows = [row for row, target in enumerate(own) if target == column]
        gap = attribution.logits[rows, 1] - attribution.logits[rows, 0]
        _warn_missing_space(distinct[column].label, variant.label, gap)
    return dataclasses.replace(
        attribution,
        values=attribution.values[..., :1],
        constant=attribution.constant[:, :1],
        logits=attribution.logits[:, :1],
        targets=("per-prompt target",),
        prompts=tuple(texts),
        prompt_targets=tuple(target.label for target in resolved),
    )


def _warn_missing_spaces(
    attribution: Attribution, n_targets: int, variants: list[tuple[int, Target]]
) -> None:
    """Warn about a target such as ``'Paris'`` when ``' Paris'`` is far more likely."""
    for offset, (column, variant) in enumerate(variants):
        gap = attribution.logits[:, n_targets + offset] - attribution.logits[:, column]
        _warn_missing_space(attribution.targets[column], variant.label, gap)


def _warn_missing_space(label: str, spaced: str, gap: Float[Tensor, " batch"]) -> None:
    """Warn when ``spaced`` beats the target ``label`` by `SPACE_WARNING_RATIO` on average.

    ``gap``: logit of the spaced form minus the target's, at each position read.
    """
    ratio = math.exp(min(float(gap.float().mean()), 50.0))
    if ratio >= SPACE_WARNING_RATIO:
        warnings.warn(
            f"Target {label} has no leading space; {spaced} is a different token and "
            f"{ratio:.0f}x more likely at the positions read. Pass {spaced} if that is the "
            f"word you mean.",
            UserWarning,
            stacklevel=5,  # the caller of direct_logit_attribution
        )


class AttributionReader(DecompositionReader):
    """A `circuitlab.readers.Reader` of direct logit attributions to ``targets``.

    Each batch is decomposed and attributed as it streams past; only the [batch, component,
    target] attributions are kept. Result: an `Attribution` in data order (no prompt texts).

    ``choose`` [prompt, k] (optional) picks, for each prompt of the data, the ``k`` of
    ``targets`` it keeps (one target per prompt): a batch attributes only its rows' targets,
    so memory does not grow with the number of distinct targets.

    Args:
        model: The model whose components are decomposed.
        targets: The resolved read-outs of the logits to attribute.
        choose: Optional [prompt, k] indices into ``targets``: the targets each prompt keeps.
    """

    def __init__(
        self,
        model: ModelHandle,
        targets: list[Target],
        *,
        choose: Int[Tensor, "prompt k"] | None = None,
    ) -> None:
        super().__init__(model)
        self.targets = targets
        self.choose = choose

    def update(self, batch: CapturedBatch) -> None:
        """Decompose one batch and keep its rows' attributions.

        Args:
            batch: The batch the collector captured (one position per prompt).
        """
        parts = self.decompose(batch)
        targets, pick = self.targets, None
        if self.choose is not None:
            used, pick = self.choose[batch.rows.cpu()].unique(return_inverse=True)
            targets = [self.targets[int(column)] for column in used]
        values, constant = attribute_decomposition(self.model, parts, targets)
        logits = parts.logits @ readout_matrix(
            targets, self.model.d_vocab, device=parts.logits.device, dtype=parts.logits.dtype
        )
        if pick is not None:  # each row's own columns: [batch, k]
            pick = pick.to(values.device)
            values = values.gather(2, pick[:, None, :].expand(-1, values.shape[1], -1))
            constant, logits = constant.gather(1, pick), logits.gather(1, pick)
        self.keep(batch.rows, (values, constant, logits, parts.positions, parts.components))

    def result(self) -> Attribution:
        """The `Attribution` of every prompt seen, in data order (no prompt texts)."""
        order, chunks = self.ordered()

        def joined(index: int) -> Tensor:
            return torch.cat([chunk[index] for chunk in chunks]).cpu()[order]

        return Attribution(
            values=joined(0),
            constant=joined(1),
            logits=joined(2),
            components=chunks[0][4],
            targets=tuple(target.label for target in self.targets),
            positions=joined(3),
            prompts=(),
        )
