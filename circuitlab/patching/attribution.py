"""Attribution patching: the gradient estimate of every component's patching effect.

Patching an activation ``a`` of the patched run with the source's ``a'`` changes the metric
by about ``(a' - a) · ∂metric/∂a`` (first order, at the patched run). One forward pass of
the source side (activations cached), one forward pass of the patched side with the graph
kept, and one backward pass give the estimate for every head (its ``z``, summed over
positions), every MLP (``mlp_out``), the embedding (``resid_pre`` of layer 0) and the
residual stream entering every layer at every position. ``exact=True`` also runs the exact
patching of each component (batched, one patched run per component and pair) for comparison.
"""

from __future__ import annotations

from collections.abc import Sequence

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from circuitlab.checks import check_integer, checked_arguments
from circuitlab.collector import EVERY_TOKEN, CapturedBatch, collect
from circuitlab.components import Component, Embedding, Head, Mlp, all_components
from circuitlab.model import ModelHandle
from circuitlab.patching.metrics import MetricFunction, PairMetric, resolve_metric
from circuitlab.patching.pairs import PromptPair, check_pairs, paired_tokens
from circuitlab.patching.results import AttributionPatching
from circuitlab.patching.sweep import SideRun, _check_choices, _Job, _run_jobs, side_runs
from circuitlab.readers import RowChunks
from circuitlab.sites import Site
from circuitlab.tokenization import TokenBatch

__all__ = ["attribution_patching"]


def _sites(n_layers: int) -> list[Site]:
    kinds = ("resid_pre", "z", "mlp_out")
    return [Site(kind, layer) for layer in range(n_layers) for kind in kinds]  # type: ignore[arg-type]


class _GradientEstimates(RowChunks):
    """Reader of the first-order patching estimates, from the patched run's gradients.

    Per row: the metric, each head's estimate [layer, head], each MLP's [layer], and the
    residual stream's per position [layer, pos].
    """

    needs_logits = True

    def __init__(self, model: ModelHandle, metric: PairMetric, source: SideRun) -> None:
        super().__init__()
        self.n_layers = model.n_layers
        self.sites = tuple(_sites(model.n_layers))
        self.metric = metric
        self.source = source

    def update(self, batch: CapturedBatch) -> None:
        logits = batch.logits
        assert logits is not None
        rows = torch.arange(len(batch), device=logits.device)
        last = batch.tokens.lengths.to(logits.device) - 1
        values = self.metric(logits[rows, last], batch.rows)
        activations = [batch[site] for site in self.sites]
        gradients = torch.autograd.grad(values.sum(), activations, allow_unused=True)
        mask = batch.mask.to(logits.device)
        width = mask.shape[1]
        heads, mlps, residual = [], [], []
        for site, activation, gradient in zip(self.sites, activations, gradients, strict=True):
            if gradient is None:  # nothing downstream reads it at the last token
                gradient = torch.zeros_like(activation)
            source = self.source.activations[site][batch.rows, :width].to(activation.device)
            change = (source.float() - activation.detach().float()) * gradient.float()
            change = change * mask.reshape(*mask.shape, *([1] * (change.dim() - 2)))
            if site.kind == "z":
                heads.append(einops.reduce(change, "b p h d -> b h", "sum"))
            elif site.kind == "mlp_out":
                mlps.append(einops.reduce(change, "b p d -> b", "sum"))
            else:
                residual.append(einops.reduce(change, "b p d -> b p", "sum"))
        self.keep(
            batch.rows,
            (
                values.detach().cpu(),
                torch.stack(heads, dim=1).cpu(),
                torch.stack(mlps, dim=1).cpu(),
                torch.stack(residual, dim=1).cpu(),
            ),
        )

    def result(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        order, chunks = self.ordered()
        width = max(chunk[3].shape[2] for chunk in chunks)

        def joined(index: int) -> Tensor:
            parts = [chunk[index] for chunk in chunks]
            if index == 3:
                parts = [torch.nn.functional.pad(p, (0, width - p.shape[2])) for p in parts]
            return torch.cat(parts)[order]

        return joined(0), joined(1), joined(2), joined(3)


def _estimates(
    model: ModelHandle,
    run_tokens: TokenBatch,
    metric: PairMetric,
    source: SideRun,
    batch_size: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The patched side's metric [pair] and the estimates: heads [pair, layer, head], MLPs
    [pair, layer], residual [pair, layer, pos]; one forward and one backward pass per batch."""
    reader = _GradientEstimates(model, metric, source)
    return collect(
        model,
        run_tokens,
        {"estimates": reader},
        positions=EVERY_TOKEN,
        batch_size=batch_size,
        sort=False,
        grad=True,
        desc="attribution patching",
    )["estimates"]


def _by_component(
    components: Sequence[Component],
    heads: Float[Tensor, "pair layer head"],
    mlps: Float[Tensor, "pair layer"],
    embedding: Float[Tensor, " pair"],
) -> Float[Tensor, "pair component"]:
    columns = []
    for component in components:
        if isinstance(component, Head):
            columns.append(heads[:, component.layer, component.head])
        elif isinstance(component, Mlp):
            columns.append(mlps[:, component.layer])
        else:
            columns.append(embedding)
    return torch.stack(columns, dim=1)


def _exact(
    model: ModelHandle,
    run_tokens: TokenBatch,
    source: SideRun,
    metric: PairMetric,
    baseline: Tensor,
    components: Sequence[Component],
    batch_size: int,
    progress: bool | None,
) -> Float[Tensor, "pair component"]:
    """The exact effect of patching each component at every position (batched runs)."""
    n_pairs, n_layers, n_heads = len(run_tokens), model.n_layers, model.n_heads
    pairs = range(n_pairs)
    head_jobs = [
        _Job(p, layer, h, ()) for layer in range(n_layers) for h in range(n_heads) for p in pairs
    ]
    heads = _run_jobs(model, run_tokens, source, "z", head_jobs, metric, batch_size, progress)
    mlp_jobs = [_Job(p, layer, None, ()) for layer in range(n_layers) for p in pairs]
    mlps = _run_jobs(model, run_tokens, source, "mlp_out", mlp_jobs, metric, batch_size, progress)
    embed_jobs = [_Job(p, 0, None, ()) for p in pairs]
    embedding = _run_jobs(
        model, run_tokens, source, "resid_pre", embed_jobs, metric, batch_size, progress
    )
    heads = einops.rearrange(heads, "(l h p) -> p l h", l=n_layers, h=n_heads)
    mlps = einops.rearrange(mlps, "(l p) -> p l", l=n_layers)
    patched = _by_component(components, heads, mlps, embedding)
    return patched - baseline[:, None]


@checked_arguments
def attribution_patching(
    model: ModelHandle,
    pairs: PromptPair | Sequence[PromptPair],
    metric: str | MetricFunction = "logit_diff",
    *,
    direction: str = "denoise",
    exact: bool = False,
    batch_size: int = 8,
    progress: bool | None = None,
) -> AttributionPatching:
    """Estimate every component's patching effect from gradients (and optionally the exact one).

    Args:
        model: the model handle.
        pairs: `PromptPair` values; both prompts of a pair must have the same token count.
        metric: as in `activation_patching` (must be differentiable in the logits).
        direction: ``"denoise"`` (estimate at the corrupted run, clean activations patched
            in) or ``"noise"``.
        exact: also patch each component exactly (``len(components) × pairs`` runs, batched)
            and keep the effects in ``result.exact`` for comparison (``result.spearman``).
        batch_size: prompts per forward pass (and patched runs per pass for ``exact``).
        progress: progress bar for the exact runs.

    Returns:
        An `AttributionPatching`: estimates [pair, component] for EMBED, every head and MLP;
        the residual stream's estimates [pair, layer, pos]; the baselines.

    Example:
        >>> result = attribution_patching(model, pairs, exact=True)
        >>> result.top(5), result.spearman
    """
    _check_choices(model, "z", direction)
    batch_size = check_integer("batch_size", batch_size, minimum=1)
    checked = check_pairs(pairs)
    resolved = resolve_metric(model, checked, metric)
    tokens = paired_tokens(model, checked)
    source_tokens, run_tokens = (
        (tokens.clean, tokens.corrupted)
        if direction == "denoise"
        else (tokens.corrupted, tokens.clean)
    )
    source = side_runs(model, source_tokens, resolved, _sites(model.n_layers), batch_size)
    baseline, heads, mlps, residual = _estimates(model, run_tokens, resolved, source, batch_size)
    components = tuple(
        c for c in all_components(model.arch) if isinstance(c, (Embedding, Head, Mlp))
    )
    estimates = _by_component(components, heads, mlps, residual[:, 0].sum(dim=-1))
    exact_effects = None
    if exact:
        exact_effects = _exact(
            model, run_tokens, source, resolved, baseline, components, batch_size * 4, progress
        )
    clean, corrupted = (
        (source.metric, baseline) if direction == "denoise" else (baseline, source.metric)
    )
    shown = checked[0].corrupted if direction == "denoise" else checked[0].clean
    return AttributionPatching(
        estimates=estimates,
        components=components,
        residual=residual,
        clean=clean,
        corrupted=corrupted,
        direction=direction,
        metric=resolved.name,
        exact=exact_effects,
        labels=tuple(model.to_str_tokens(shown)),
        clean_prompts=tuple(pair.clean for pair in checked),
        corrupted_prompts=tuple(pair.corrupted for pair in checked),
        model=model.name,
    )
