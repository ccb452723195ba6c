"""Applying interventions by hooks, reversibly: ``with model.intervene(...)``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from circuitlab.interventions.edits import ForwardState, ResolvedInterventions, resolve
from circuitlab.interventions.spec import Intervention
from circuitlab.model import ModelHandle

__all__ = ["applied", "intervene"]


@contextlib.contextmanager
def intervene(
    model: ModelHandle, *interventions: Intervention | Sequence[Intervention]
) -> Iterator[ResolvedInterventions]:
    """Apply interventions to every forward pass inside the block, then undo them.

    Works for forward passes, caching runs, the decomposition and generation. Nothing is
    written into the weights: on exit the hooks are removed and the model is bit-identical.
    Interventions compose in the order given; nested blocks stack.

    Args:
        model: the model handle the interventions apply to.
        interventions: interventions, or lists of them, applied in the order given.

    Yields:
        The resolved interventions in force inside the block.

    Example:
        >>> with model.intervene(Ablate("L23H4"), Scale("MLP29", 0.5)):
        ...     model.top_next_tokens("The capital of France is")
    """
    flat: list[Intervention] = []
    for item in interventions:
        flat.extend(item if isinstance(item, (list, tuple)) else [item])
    with applied(model, resolve(model, flat)) as resolved:
        yield resolved


@contextlib.contextmanager
def applied(model: ModelHandle, resolved: ResolvedInterventions) -> Iterator[ResolvedInterventions]:
    """Hook already resolved interventions into ``model`` for the block (see `intervene`).

    Resolving once and applying many times spares the reference passes of mean and resample
    ablations (an ablation study applies one component's edits at a time).

    Args:
        model: the model handle the interventions were resolved for.
        resolved: interventions already resolved against ``model`` (``resolve(model, ...)``).

    Yields:
        ``resolved``, in force inside the block.
    """
    state = ForwardState()
    handle = model.hf_model.register_forward_pre_hook(state.capture, with_kwargs=True)
    try:
        with (
            model.bridge.hooks(fwd_hooks=[edit.hook(state) for edit in resolved.edits]),
            model.interventions_in_force(resolved),
        ):
            yield resolved
    finally:
        handle.remove()
