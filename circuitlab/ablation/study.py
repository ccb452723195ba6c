"""Ablation studies: knock out each head, MLP or layer in turn and measure a metric.

Every ablation is resolved once (one reference pass serves every mean ablation), prompts are
tokenized once, and each measurement is one `circuitlab.collector.collect` pass (batched by
length, a shared prefix run once, only each prompt's last position unembedded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from circuitlab.ablation.metrics import check_metric, metric_values
from circuitlab.ablation.results import AblationEffects
from circuitlab.checks import checked_arguments
from circuitlab.collector import collect
from circuitlab.components import Component, Head, Layer, Mlp, parse_component
from circuitlab.decomposition.targets import LogitDiff, resolve_targets
from circuitlab.errors import InputError
from circuitlab.interventions.apply import applied
from circuitlab.interventions.edits import resolve
from circuitlab.interventions.spec import Ablate, AblationMethod
from circuitlab.model import ModelHandle
from circuitlab.progress import progress_bar
from circuitlab.readers import Logits
from circuitlab.tasks import ClassificationTask
from circuitlab.tokenization import TokenBatch
from circuitlab.vocabulary import COMPONENT_GROUPS

__all__ = ["COMPONENT_GROUPS", "ablation_study", "study_components"]


@dataclass(frozen=True)
class _Examples:
    prompts: list[str]
    gold: Int[Tensor, " example"]  # gold token id per example
    choices: Int[Tensor, " choice"] | None = None  # label-word ids (tasks)
    labels: Int[Tensor, " example"] | None = None  # gold class index (tasks)
    name: str = "prompts"
    negative: Int[Tensor, " example"] | None = None  # the token a logit difference subtracts


def study_components(
    model: ModelHandle, components: str | Sequence[str | Component]
) -> list[Component]:
    """Expand group names (``heads``, ``mlps``, ``layers``) and parse components, in model order.

    Args:
        model: The model whose components are expanded and checked.
        components: Group names (``heads``, ``mlps``, ``layers``) and/or components such as ``L3H1``
            or ``MLP3``.

    Example:
        >>> study_components(model, ["mlps", "L3H1"])   # every MLP and one head
    """
    items = [components] if isinstance(components, (str, Component)) else list(components)
    if not items:
        raise InputError(f"No components to ablate; give components or groups {COMPONENT_GROUPS}.")
    chosen: list[Component] = []
    for item in items:
        if isinstance(item, str) and item.strip().lower() in COMPONENT_GROUPS:
            group = item.strip().lower()
            for layer in range(model.n_layers):
                if group == "heads":
                    chosen.extend(Head(layer, head) for head in range(model.n_heads))
                else:
                    chosen.append(Mlp(layer) if group == "mlps" else Layer(layer))
            continue
        component = parse_component(item, model.arch)
        if not isinstance(component, (Head, Mlp, Layer)):
            raise InputError(
                f"Only heads (L3H1), MLPs (MLP3) and whole layers (L3) can be ablated, not "
                f"{component}; groups: {', '.join(COMPONENT_GROUPS)}."
            )
        chosen.append(component)
    return sorted(dict.fromkeys(chosen))


def _examples(
    model: ModelHandle,
    data: ClassificationTask | str | Sequence[str],
    targets: str | LogitDiff | Sequence[str | LogitDiff] | None,
    *,
    template: int,
    k_shot: int,
    demo_pool: ClassificationTask | None,
    seed: int,
) -> _Examples:
    if isinstance(data, ClassificationTask):
        if targets is not None:
            raise InputError("A task brings its own label words: drop targets=.")
        choices = torch.tensor(model.token_ids(data.label_words))
        labels = torch.tensor(data.labels, dtype=torch.long)
        prompts = data.prompts(template=template, k_shot=k_shot, demo_pool=demo_pool, seed=seed)
        return _Examples(list(prompts), choices[labels], choices, labels, data.name)
    prompts = [data] if isinstance(data, str) else list(data)
    if not prompts:
        raise InputError("No prompts were given (an empty list). Pass at least one prompt.")
    if targets is None:
        raise InputError(
            "Prompts need targets: the token whose logit or probability to measure, e.g. "
            "targets=' Paris' (one for all prompts, or one per prompt)."
        )
    words = [targets] * len(prompts) if isinstance(targets, (str, LogitDiff)) else list(targets)
    if len(words) != len(prompts):
        raise InputError(
            f"{len(words)} targets were given for {len(prompts)} prompts; give one target for "
            f"all prompts or one per prompt."
        )
    differences = [isinstance(word, LogitDiff) for word in words]
    if any(differences) and not all(differences):
        raise InputError(
            "Give every prompt a token or every prompt a LogitDiff(answer, other), not a mix."
        )
    if all(differences):
        pairs = [resolve_targets(model, word)[0].token_ids for word in words]  # ids or strings
        gold, other = torch.tensor(pairs).unbind(dim=1)
        return _Examples(prompts, gold, negative=other)
    return _Examples(prompts, torch.tensor(model.token_ids(words)))


def _measure(
    model: ModelHandle, data: TokenBatch, metric: str, examples: _Examples, batch_size: int
) -> Tensor:
    """The metric of every example under the interventions in force: one collector pass."""

    def per_row(logits: Tensor, rows: Tensor) -> Tensor:
        labels = None if examples.labels is None else examples.labels[rows]
        negative = None if examples.negative is None else examples.negative[rows]
        return metric_values(
            metric, logits, examples.gold[rows], examples.choices, labels, negative
        ).cpu()

    readers = {"metric": Logits(transform=per_row)}
    return collect(model, data, readers, batch_size=batch_size, desc="measuring")["metric"]


@checked_arguments
def ablation_study(
    model: ModelHandle,
    data: ClassificationTask | str | Sequence[str],
    targets: str | LogitDiff | Sequence[str | LogitDiff] | None = None,
    *,
    components: str | Sequence[str | Component] = COMPONENT_GROUPS,
    method: AblationMethod = "zero",
    reference: Sequence[str] | None = None,
    metric: str | None = None,
    template: int = 0,
    k_shot: int = 0,
    demo_pool: ClassificationTask | None = None,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool | None = None,
) -> AblationEffects:
    """Ablate each component in turn and measure the effect on a metric.

    One forward pass over the data per component (plus one for the intact model); interventions
    already active on ``model`` stay in force underneath.

    Args:
        model: the model handle.
        data: a classification task, or prompts (then ``targets`` names the tokens to measure).
        targets: for prompts: the gold next token, or a `LogitDiff` (answer, other) for
            the two-token logit difference; one for all prompts or one per prompt.
        components: components (``"L3H1"``, ``"MLP3"``, ``"L3"``) and/or the groups
            ``"heads"``, ``"mlps"``, ``"layers"`` (default: all three).
        method: ``"zero"``, ``"mean"`` or ``"resample"`` ablation.
        reference: reference prompts of mean/resample ablation (default: the data's prompts).
        metric: a key of `circuitlab.ablation.METRICS`; default ``"logit_diff"`` for tasks
            and for prompts with `LogitDiff` targets, ``"log_prob"`` for prompts with tokens.
        template: the task's prompt template.
        k_shot: in-context demonstrations per task prompt.
        demo_pool: where demonstrations come from (default: the task, never the query).
        seed: seed for demonstrations and resampling.
        batch_size: prompts per forward pass.
        progress: progress bar over the components (default: shown once the call
            runs past 2 s; ``False`` never; see `circuitlab.progress`).

    Returns:
        An `AblationEffects`; ``result.bottom(5)`` lists the components whose ablation hurts
        most.

    Example:
        >>> effects = ablation_study(model, load_task("sentiment").balanced_sample(40))
        >>> effects.bottom(3), effects.plot()
    """
    examples = _examples(
        model, data, targets, template=template, k_shot=k_shot, demo_pool=demo_pool, seed=seed
    )
    is_task = examples.choices is not None
    pairs = examples.negative is not None
    default = "logit_diff" if is_task or pairs else "log_prob"
    name = check_metric(metric or default, has_choices=is_task, has_pairs=pairs)
    chosen = study_components(model, components)
    if method != "zero" and reference is None:
        reference = examples.prompts
    ablations = [
        Ablate(component, method, reference=reference if method != "zero" else None, seed=seed)
        for component in chosen
    ]
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}.")
    # one reference pass for every mean/resample ablation
    resolved = resolve(model, ablations, batch_size=batch_size)
    data = model.tokenize(examples.prompts)  # tokenized once, streamed once per ablation
    baseline = _measure(model, data, name, examples, batch_size)
    ablated = torch.empty(len(examples.prompts), len(chosen))
    for index, item in enumerate(progress_bar(ablations, desc="ablations", progress=progress)):
        with applied(model, resolved.restricted_to(item)):
            ablated[:, index] = _measure(model, data, name, examples, batch_size)
    return AblationEffects(
        ablated=ablated,
        baseline=baseline,
        components=tuple(chosen),
        metric=name,
        method=method,
        data=examples.name,
    )
