"""Few-shot classification accuracy of the full model on a labelled task."""

from __future__ import annotations

from circuitlab.model import ModelHandle
from circuitlab.reweighting.icl import label_logits
from circuitlab.tasks import ClassificationTask, load_task

__all__ = ["classification_accuracy"]


def classification_accuracy(
    model: ModelHandle,
    task: ClassificationTask | str = "sentiment",
    *,
    k_shot: int = 4,
    template: int = 0,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool | None = None,
) -> float:
    """Fraction of examples whose highest label-word logit is the gold label.

    Every example gets the same ``k_shot`` demonstrations drawn from the task (never itself),
    so the shared prefix runs once.

    Args:
        model: The model.
        task: A task or a built-in task name.
        k_shot: In-context demonstrations per prompt.
        template: Index of the task's prompt template.
        seed: Seed of the demonstration draw.
        batch_size: Prompts per forward pass.
        progress: Show a progress bar (default: only on a terminal).
    """
    task = load_task(task) if isinstance(task, str) else task
    prompts = task.prompts(template=template, k_shot=k_shot, seed=seed)
    logits = label_logits(
        model, prompts, task.label_words, batch_size=batch_size, progress=progress
    )
    predicted = logits.argmax(dim=-1).tolist()
    return sum(p == gold for p, gold in zip(predicted, task.labels, strict=True)) / len(task)
