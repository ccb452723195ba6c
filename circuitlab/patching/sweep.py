"""Activation patching sweeps: patch each (layer, position) or (layer, head) in turn.

Every patched run is one row of a batched forward pass: the jobs (pair × layer × column)
are cut into batches of ``batch_size`` rows, and each batch runs once with one `Patch` per
(layer, head) it touches, restricted by a [row, position] mask to the rows and positions of
its jobs. A layer × position sweep of one pair thus costs ``layers × positions`` rows in
``ceil(layers × positions / batch_size)`` forward passes, plus one pass per side for the
source activations and the baselines. Interventions already active on the model stay in
force underneath (the baselines are measured under them too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from circuitlab import distributed
from circuitlab.checks import check_integer, checked_arguments
from circuitlab.collector import EVERY_TOKEN, CapturedBatch, collect
from circuitlab.errors import InputError
from circuitlab.interventions.spec import PATCHABLE_KINDS, Patch
from circuitlab.model import ModelHandle
from circuitlab.patching.metrics import MetricFunction, PairMetric, resolve_metric
from circuitlab.patching.pairs import PairTokens, PromptPair, check_pairs, paired_tokens
from circuitlab.patching.results import PatchingMap
from circuitlab.progress import progress_bar
from circuitlab.readers import Keep, Reader, RowChunks
from circuitlab.sites import Site
from circuitlab.tokenization import TokenBatch

__all__ = ["DIRECTIONS", "RunMetric", "activation_patching", "side_runs"]

DIRECTIONS = ("denoise", "noise")
"""``denoise``: clean activations into the corrupted run; ``noise``: the reverse."""


class RunMetric(RowChunks):
    """A reader of a metric at each row's last real token, one value per row (no gradient
    kept). Works with any read positions (with ``positions="all"`` the last token is picked).

    Args:
        metric: the resolved metric (see `resolve_metric`).
        pair_of_row: the pair index of each row of the data [row], passed to ``metric``.
    """

    needs_logits = True

    def __init__(self, metric: PairMetric, pair_of_row: Tensor) -> None:
        super().__init__()
        self.metric = metric
        self.pair_of_row = pair_of_row

    def update(self, batch: CapturedBatch) -> None:
        """Keep the metric of each row of one batch.

        Args:
            batch: the batch the collector captured (with its logits).
        """
        logits = batch.logits
        assert logits is not None
        if batch.every_token:
            last = batch.tokens.lengths.to(logits.device) - 1
            logits = logits[torch.arange(len(batch), device=logits.device), last]
        values = self.metric(logits, self.pair_of_row[batch.rows])
        self.keep(batch.rows, values.detach().cpu())


@dataclass(frozen=True)
class SideRun:
    """One side of the pairs run once: its metric [pair] and activations at some sites."""

    metric: Tensor
    activations: dict[Site, Tensor]  # [pair, pos, ...] (zero past a pair's length)


def side_runs(
    model: ModelHandle,
    tokens: TokenBatch,
    metric: PairMetric,
    cached: Sequence[Site],
    batch_size: int,
) -> SideRun:
    """Run one side of every pair once: the metric and the activations at ``cached`` sites.

    Args:
        model: the model handle (interventions active on it apply).
        tokens: one side of the pairs, tokenized (row ``i`` is pair ``i``).
        metric: the resolved metric, measured at each pair's last real token.
        cached: sites whose activations are kept at every token (none: the metric only).
        batch_size: prompts per forward pass.
    """
    readers: dict[str, Reader] = {site.hook_name: Keep(site) for site in cached}
    readers["metric"] = RunMetric(metric, torch.arange(len(tokens)))
    out = collect(
        model,
        tokens,
        readers,
        positions=EVERY_TOKEN if cached else None,
        batch_size=batch_size,
        sort=False,
        share_prefix=False,
        desc="baseline",
    )
    activations = {site: out[site.hook_name].values for site in cached}
    return SideRun(out["metric"], activations)


def _check_choices(model: ModelHandle, site: str, direction: str) -> None:
    if site not in PATCHABLE_KINDS:
        raise InputError(
            f"Unknown patching site {site!r}; use one of {', '.join(PATCHABLE_KINDS)} "
            f"(z sweeps heads, the others sweep positions)."
        )
    if direction not in DIRECTIONS:
        raise InputError(
            f"Unknown direction {direction!r}; use 'denoise' (clean into corrupted, the usual "
            f"choice) or 'noise' (corrupted into clean)."
        )


def _layers(model: ModelHandle, layers: Sequence[int] | None) -> tuple[int, ...]:
    if layers is None:
        return tuple(range(model.n_layers))
    chosen = [layers] if isinstance(layers, int) else list(layers)
    if not chosen:
        raise InputError("No layers to patch (an empty list); give layer indices or None (all).")
    for layer in chosen:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise InputError(f"Layers are ints, got {layer!r}.")
        if not 0 <= layer < model.n_layers:
            raise InputError(
                f"Layer {layer} does not exist; the model has {model.n_layers} layers "
                f"(0 .. {model.n_layers - 1})."
            )
    return tuple(sorted(set(chosen)))


def _positions(positions: Sequence[int] | int | None, length: int, what: str) -> tuple[int, ...]:
    """Positions (negative count back from the end) checked against a common ``length``."""
    if positions is None:
        return tuple(range(length))
    chosen = [positions] if isinstance(positions, int) else list(positions)
    if not chosen:
        raise InputError(f"No {what} given (an empty list); give positions or None (all).")
    resolved = []
    for position in chosen:
        if isinstance(position, bool) or not isinstance(position, int):
            raise InputError(f"Positions are ints, got {position!r}.")
        if not -length <= position < length:
            raise InputError(
                f"Position {position} is outside the prompts' {length} tokens "
                f"(0 .. {length - 1}, or -{length} .. -1 from the end)."
            )
        resolved.append(position % length)
    return tuple(sorted(set(resolved)))


def _common_length(tokens: PairTokens, why: str) -> int:
    lengths = tokens.lengths
    if len(set(lengths)) > 1:
        raise InputError(
            f"The pairs have different token counts ({sorted(set(lengths))}); {why}, so every "
            f"pair must have the same length. Keep pairs of one template together, or run "
            f"each length separately."
        )
    return lengths[0]


@dataclass(frozen=True)
class _Job:
    pair: int
    layer: int
    head: int | None
    positions: tuple[int, ...]  # () = every position of the pair


def _run_jobs(
    model: ModelHandle,
    run_tokens: TokenBatch,
    source: SideRun,
    site_kind: str,
    jobs: list[_Job],
    metric: PairMetric,
    batch_size: int,
    progress: bool | None,
) -> Tensor:
    """The metric of every job's patched run [job], ``batch_size`` rows per forward pass.

    Under a ``torch.distributed`` group each process runs every ``world_size``-th chunk of
    jobs and the chunks' metrics are shared, so every process returns every job's metric.
    """
    results = torch.empty(len(jobs))
    chunks = [jobs[start : start + batch_size] for start in range(0, len(jobs), batch_size)]
    lengths = run_tokens.lengths.cpu()
    mine = distributed.rank_share(len(chunks), model.device)
    shown = progress if distributed.is_writer() else False
    measured: dict[int, Tensor] = {}
    for index in progress_bar(mine, desc="patching", progress=shown):
        chunk = chunks[index]
        pairs = torch.tensor([job.pair for job in chunk])
        width = int(lengths[pairs].max())
        tokens = TokenBatch(
            run_tokens.input_ids[pairs, :width], run_tokens.attention_mask[pairs, :width]
        )
        patches = []
        groups: dict[tuple[int, int | None], list[int]] = {}
        for row, job in enumerate(chunk):
            groups.setdefault((job.layer, job.head), []).append(row)
        for (layer, head), rows in groups.items():
            site = Site(site_kind, layer)  # type: ignore[arg-type]
            values = source.activations[site][pairs, :width]
            if head is not None:
                values = values[:, :, head]
            mask = torch.zeros(len(chunk), width, dtype=torch.bool)
            for row in rows:
                job = chunk[row]
                if job.positions:
                    mask[row, list(job.positions)] = True
                else:
                    mask[row, : int(lengths[job.pair])] = True
            patches.append(Patch(site, values, head=head, positions=mask))
        with model.intervene(*patches):
            measured[index] = collect(
                model,
                tokens,
                {"metric": RunMetric(metric, pairs)},
                batch_size=len(chunk),
                sort=False,
                share_prefix=False,
                distributed=False,  # the chunks are shared out instead
            )["metric"]
    for share in distributed.all_gather_objects(measured):
        for index, values in share.items():
            start = index * batch_size
            results[start : start + len(values)] = values
    return results


@checked_arguments
def activation_patching(
    model: ModelHandle,
    pairs: PromptPair | Sequence[PromptPair],
    metric: str | MetricFunction = "logit_diff",
    *,
    site: str = "resid_pre",
    direction: str = "denoise",
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | int | None = None,
    batch_size: int = 32,
    progress: bool | None = None,
) -> PatchingMap:
    """Patch each layer × position (or layer × head) in turn and measure a metric.

    Args:
        model: the model handle.
        pairs: `PromptPair` values (clean, corrupted, answer, wrong); both prompts of a pair
            must have the same token count (and, for position sweeps, every pair the same).
        metric: ``"logit_diff"`` (answer − wrong), ``"log_prob"``, ``"prob"``, ``"logit"``
            (of the answer), or a callable on next-token logits [runs, d_vocab] → [runs]
            (optionally taking each run's pair index as a second argument).
        site: ``resid_pre``, ``resid_mid``, ``resid_post``, ``attn_out`` or ``mlp_out``
            (a layer × position map: one position patched per run), or ``z`` (a layer × head
            map: one head patched per run, at ``positions`` or at every position).
        direction: ``"denoise"`` (clean activations into the corrupted run, TransformerLens's
            default) or ``"noise"`` (corrupted activations into the clean run).
        layers: the layers to sweep (default all).
        positions: the positions to sweep (position maps; default every position) or to patch
            each head at (head maps; default every position); negative counts from the end.
        batch_size: patched runs per forward pass.
        progress: progress bar (default: shown once the sweep runs past 2 s).

    Returns:
        A `PatchingMap` of the raw metric of every patched run [pair, layer, column], with
        the clean and corrupted baselines; ``.normalised``, ``.mean()``, ``.sem()``, ``.plot()``.

    Example:
        >>> pair = PromptPair("The Eiffel Tower is in", "The Colosseum is in", " Paris", " Rome")
        >>> activation_patching(model, [pair], site="resid_pre").plot()
    """
    _check_choices(model, site, direction)
    batch_size = check_integer("batch_size", batch_size, minimum=1)
    checked = check_pairs(pairs)
    resolved = resolve_metric(model, checked, metric)
    tokens = paired_tokens(model, checked)
    chosen_layers = _layers(model, layers)
    source_tokens, run_tokens = (
        (tokens.clean, tokens.corrupted)
        if direction == "denoise"
        else (tokens.corrupted, tokens.clean)
    )
    heads = site == "z"
    if heads:
        patched: tuple[int, ...] = ()
        if positions is not None:
            patched = _positions(
                positions,
                _common_length(tokens, "positions= picks the same positions in every pair"),
                "positions",
            )
        columns = tuple(range(model.n_heads))
        jobs = [
            _Job(pair, layer, head, patched)
            for layer in chosen_layers
            for head in columns
            for pair in range(len(checked))
        ]
        labels = tuple(f"H{head}" for head in columns)
    else:
        length = _common_length(tokens, "a layer × position map compares positions across pairs")
        columns = _positions(positions, length, "positions")
        jobs = [
            _Job(pair, layer, None, (column,))
            for layer in chosen_layers
            for column in columns
            for pair in range(len(checked))
        ]
        shown = model.to_str_tokens(
            checked[0].corrupted if direction == "denoise" else checked[0].clean
        )
        labels = tuple(shown[column] for column in columns)
        patched = ()
    cached = [Site(site, layer) for layer in chosen_layers]  # type: ignore[arg-type]
    source = side_runs(model, source_tokens, resolved, cached, batch_size)
    baseline = side_runs(model, run_tokens, resolved, [], batch_size)
    measured = _run_jobs(model, run_tokens, source, site, jobs, resolved, batch_size, progress)
    values = measured.reshape(len(chosen_layers), len(columns), len(checked)).permute(2, 0, 1)
    clean, corrupted = (
        (source.metric, baseline.metric)
        if direction == "denoise"
        else (baseline.metric, source.metric)
    )
    return PatchingMap(
        values=values.contiguous(),
        clean=clean,
        corrupted=corrupted,
        site=site,
        layers=chosen_layers,
        columns=columns,
        column_kind="head" if heads else "position",
        labels=labels,
        direction=direction,
        metric=resolved.name,
        patched_positions=patched,
        clean_prompts=tuple(pair.clean for pair in checked),
        corrupted_prompts=tuple(pair.corrupted for pair in checked),
        model=model.name,
    )
