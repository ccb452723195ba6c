"""Export a consistency edit and check that plain ``transformers`` gives the same answers.

`export_consistency_edit` bakes the chosen `SteerHead` biases into the output projections'
biases (`circuitlab.export_hf`, with its logit check) and then answers every held-out prompt
with the reloaded checkpoint, through plain ``transformers`` only: the answers must equal the
hooked, edited model's on every prompt.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor
from transformers import AutoModelForCausalLM

from circuitlab.checks import checked_arguments
from circuitlab.consistency.answers import ParaphraseAnswers
from circuitlab.consistency.heads import read_paraphrases
from circuitlab.errors import ExportCheckError
from circuitlab.interventions.export import export_hf
from circuitlab.model import ModelHandle

__all__ = ["export_consistency_edit", "plain_answers"]


@torch.no_grad()
def plain_answers(
    folder: str | os.PathLike[str],
    model: ModelHandle,
    task: Any,
    templates: Sequence[int],
    *,
    batch_size: int = 8,
) -> Int[Tensor, "input paraphrase"]:
    """The answers of the checkpoint at ``folder``, loaded with plain ``transformers`` (eager
    attention), to every (input, paraphrase) prompt; ``model`` only tokenizes.

    Args:
        folder: The exported Hugging Face checkpoint.
        model: The circuitlab model whose tokenizer and label words are used.
        task: The paraphrase task whose prompts are answered.
        templates: Indices of the paraphrases to answer under.
        batch_size: Prompts per forward pass.
    """
    reloaded = AutoModelForCausalLM.from_pretrained(
        Path(folder), dtype=model.dtype, attn_implementation="eager", local_files_only=True
    ).to(model.device)
    reloaded.eval()
    prompts = task.prompts(templates=list(templates))
    columns = torch.tensor(model.token_ids(list(task.task.label_words)), device=model.device)
    answers = []
    for start in range(0, len(prompts), batch_size):
        batch = model.tokenize(prompts[start : start + batch_size]).to(model.device)
        logits = reloaded(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        last = logits[torch.arange(len(batch), device=logits.device), batch.lengths - 1]
        answers.append(last[:, columns].argmax(dim=-1).cpu())
    return torch.cat(answers).reshape(len(task.task), len(templates))


@checked_arguments
def export_consistency_edit(
    model: ModelHandle,
    edits: Sequence[Any],
    path: str | os.PathLike[str],
    task: Any,
    *,
    templates: Sequence[int] | None = None,
    overwrite: bool = False,
    batch_size: int = 8,
) -> tuple[Path, ParaphraseAnswers]:
    """Export ``edits`` as a plain checkpoint and check its answers on ``task``'s prompts.

    Args:
        model: the model handle.
        edits: the `SteerHead` edits (e.g. `ConsistencyHeads.interventions`).
        path: the checkpoint folder to write.
        task: the `ParaphraseTask` whose prompts the check answers.
        templates: the paraphrases to check (default: the held-out ones).
        overwrite: replace an existing non-empty folder.
        batch_size: prompts per forward pass.

    Returns:
        The folder and the edited model's answers (which the checkpoint reproduces).

    Raises:
        ExportCheckError: the reloaded checkpoint answers some prompt differently (the folder
            is removed) or its logits differ beyond the export check's tolerance.
    """
    chosen = list(task.heldout if templates is None else templates)
    folder = export_hf(model, list(edits), path, overwrite=overwrite, check=True)
    with model.intervene(*edits):
        answers, _ = read_paraphrases(model, task, chosen, batch_size=batch_size, progress=False)
    reloaded = plain_answers(folder, model, task, chosen, batch_size=batch_size)
    differ = int((reloaded != answers.answers).sum())
    if differ:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        raise ExportCheckError(
            f"The exported checkpoint answers {differ} of {reloaded.numel()} prompts differently "
            f"from the edited model; it was removed. Please report this."
        )
    return folder, answers
