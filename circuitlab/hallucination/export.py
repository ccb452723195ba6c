"""Export a contrastively fine-tuned model and check its answers with plain Hugging Face code.

`export_contrastive` writes one folder holding

- ``adapter/``: the trained LoRA adapter (``peft.PeftModel.from_pretrained`` reads it onto the
  plain base model),
- ``merged/``: the model with the adapter merged into its weights (`circuitlab.export_hf`, with
  its logit check; plain ``transformers.AutoModelForCausalLM.from_pretrained`` reads it),
- ``circuitlab_contrastive.json``: the layers, the training settings and the check,

and then answers every check question greedily three ways: through circuitlab's hooked model
with the adapter, through the plain merged checkpoint, and through plain ``peft`` on the plain
base model. Any answer that differs removes the folder and raises `ExportCheckError`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from circuitlab.checks import checked_arguments
from circuitlab.errors import ExportCheckError, InputError
from circuitlab.evaluation.data import FactualQuestion
from circuitlab.evaluation.qa import QA_DEMOS, qa_prompt
from circuitlab.hallucination.evaluate import hallucination_rates
from circuitlab.hf_compat import plain_greedy_ids
from circuitlab.lora import LoraAdapter
from circuitlab.model import ModelHandle
from circuitlab.output_folder import check_writable_folder, staged_folder

__all__ = ["CONTRASTIVE_RECORD", "base_model_folder", "export_contrastive", "plain_answers"]

CONTRASTIVE_RECORD = "circuitlab_contrastive.json"
"""The record `export_contrastive` writes into its folder."""


def base_model_folder(model: ModelHandle) -> Path:
    """The folder of ``model``'s own plain weights: the registry cache or the folder it was
    loaded from.

    Args:
        model: The loaded model (a registry name, or loaded from a local folder).
    """
    from circuitlab.models import KNOWN_MODELS, cached_model_dir, get_spec

    if model.name in KNOWN_MODELS:
        return cached_model_dir(get_spec(model.name))
    folder = getattr(model.hf_model.config, "_name_or_path", "") or ""
    if folder and Path(folder).is_dir():
        return Path(folder)
    raise InputError(
        f"Cannot find the plain weights of {model.name!r} for the peft check; pass base= (a "
        f"folder that AutoModelForCausalLM.from_pretrained reads, e.g. from save_pretrained)."
    )


@torch.no_grad()
def plain_answers(
    hf_model: Any, model: ModelHandle, prompts: Sequence[str], *, max_new_tokens: int = 8
) -> list[str]:
    """Greedy answers of a plain Hugging Face model to ``prompts``, cut at the first newline
    (the QA harness's rule); ``model`` only tokenizes, so the token ids are circuitlab's.

    Args:
        hf_model: A plain Hugging Face causal LM (e.g. a merged checkpoint or a peft model).
        model: The circuitlab model whose tokenizer (and device) is used.
        prompts: The prompts to answer.
        max_new_tokens: Most tokens generated per answer.
    """
    hf_model.eval()
    by_length: dict[int, list[int]] = {}
    rows = [model.tokenize([prompt]).input_ids[0] for prompt in prompts]
    for index, row in enumerate(rows):
        by_length.setdefault(len(row), []).append(index)
    answers: list[str] = [""] * len(prompts)
    for indices in by_length.values():
        ids = torch.stack([rows[i] for i in indices]).to(model.device)
        generated = plain_greedy_ids(
            hf_model,
            ids,
            max_new_tokens=max_new_tokens,
            eos_token_id=model.tokenizer.eos_token_id,
            pad_token_id=model.pad_token_id,
        )
        for index, tokens in zip(indices, generated, strict=True):
            text = model.tokenizer.decode(tokens, skip_special_tokens=True)
            answers[index] = text.split("\n")[0].strip()
    return answers


@checked_arguments
def export_contrastive(
    model: ModelHandle,
    adapter: LoraAdapter,
    path: str | os.PathLike[str],
    questions: Sequence[FactualQuestion],
    *,
    base: str | os.PathLike[str] | None = None,
    settings: dict[str, Any] | None = None,
    overwrite: bool = False,
    demos: Sequence[tuple[str, str]] = QA_DEMOS,
    max_new_tokens: int = 8,
) -> Path:
    """Write the adapter and the merged model to ``path`` and check their answers (module
    docstring).

    Args:
        model: the model handle with ``adapter`` in it (e.g. `ContrastiveRun.adapter`).
        adapter: the trained adapter.
        path: the folder to create (``adapter/``, ``merged/`` and the record).
        questions: the questions the three ways must answer alike (e.g. the test questions).
        base: the plain base model's folder for the peft check (default: `base_model_folder`).
        settings: facts to keep in the record (e.g. `ContrastiveRun.settings`).
        overwrite: replace an existing non-empty folder.
        demos: the QA harness's demonstrations.
        max_new_tokens: longest answer, in tokens.

    Returns:
        The folder written.

    Raises:
        ExportCheckError: the merged checkpoint or the peft adapter answers some question
            differently from circuitlab (nothing is left under ``path``).
    """
    from circuitlab.interventions.export import export_hf

    questions = list(questions)
    if not questions:
        raise InputError("No check questions; pass at least one FactualQuestion.")
    target = Path(path)
    check_writable_folder(target, overwrite=overwrite)
    base_folder = Path(base) if base is not None else base_model_folder(model)
    expected = hallucination_rates(
        model, questions, demos=demos, max_new_tokens=max_new_tokens, progress=False
    )
    prompts = [qa_prompt(question.question, demos) for question in questions]
    with staged_folder(target) as staging:
        adapter.save(staging / "adapter")
        export_hf(model, [], staging / "merged", check=True)
        merged = AutoModelForCausalLM.from_pretrained(
            staging / "merged", dtype=model.dtype, attn_implementation="eager"
        ).to(model.device)
        merged_answers = plain_answers(merged, model, prompts, max_new_tokens=max_new_tokens)
        del merged
        peft_answers = _peft_answers(
            base_folder, staging / "adapter", model, prompts, max_new_tokens
        )
        for way, answers in (("merged checkpoint", merged_answers), ("peft adapter", peft_answers)):
            differ = [
                i for i, (a, b) in enumerate(zip(answers, expected.predictions, strict=True))
                if a != b
            ]  # fmt: skip
            if differ:
                first = differ[0]
                raise ExportCheckError(
                    f"The exported {way} answers {len(differ)} of {len(questions)} questions "
                    f"differently from circuitlab (first: {questions[first].question!r}: "
                    f"{answers[first]!r} vs {expected.predictions[first]!r}); nothing was "
                    f"written. Please report this."
                )
        record = {
            "layers": sorted(adapter.config.layers_to_transform or []),
            "modules": sorted(adapter.config.target_modules or []),
            "settings": settings or {},
            "check": {
                "questions": len(questions),
                "accuracy": expected.accuracy,
                "hallucination_rate": expected.hallucination_rate,
                "same_answers": ["circuitlab", "merged checkpoint", "peft adapter"],
                "base": str(base_folder),
            },
        }
        (staging / CONTRASTIVE_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return target


def _peft_answers(
    base: Path, adapter: Path, model: ModelHandle, prompts: Sequence[str], max_new_tokens: int
) -> list[str]:
    from peft import PeftModel

    if not base.is_dir():
        raise InputError(f"The base model folder {base} does not exist; pass base= a folder.")
    plain = AutoModelForCausalLM.from_pretrained(
        base, dtype=model.dtype, attn_implementation="eager"
    ).to(model.device)
    with warnings.catch_warnings():  # peft asks transformers a deprecated question; not ours
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
        )
        with_adapter = PeftModel.from_pretrained(plain, adapter)
    return plain_answers(with_adapter, model, prompts, max_new_tokens=max_new_tokens)
