"""What `circuitlab report` runs, and the checks every input passes before any work starts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuitlab.errors import InputError
from circuitlab.vocabulary import EVALUATION_TASKS, REPORT_SECTIONS

__all__ = ["DEFAULT_PAIR", "DEFAULT_PROMPTS", "REPORT_SECTIONS", "ReportSettings"]


DEFAULT_PROMPTS = (
    "The capital of France is",
    "The Eiffel Tower is in the city of",
    "The largest planet in the solar system is",
    "The chemical symbol for gold is",
)
"""Factual prompts decomposed by default: each one's top next token, attributed."""

DEFAULT_PAIR = (
    "The Eiffel Tower is in the city of",
    "The Colosseum is in the city of",
    " Paris",
    " Rome",
)
"""The patching section's default pair: (clean, corrupted, answer, wrong)."""


@dataclass(frozen=True)
class ReportSettings:
    """How much of each analysis the report runs (the defaults take a few minutes on a CPU).

    Attributes:
        prompts: factual prompts to decompose (each one's top next token is attributed).
        top_k: components listed per prompt, and rows of each ranking table.
        task: the classification task of the component-accuracy section: a shipped task
            name (``sentiment``, ``topic``, ``nli``, ``yesno``) or a task file.
        task_examples: balanced sample of the task (None: every example).
        k_shot: in-context demonstrations per component-accuracy prompt.
        calibration_texts: how many shipped calibration texts AVSS and Block Influence read
            (None: all eight, ~6.4k tokens on SmolLM2).
        ground_truth_tasks: the tasks the single-layer ground truth evaluates with each layer
            removed: any of ``perplexity`` (held-out prose), ``sentiment`` (4-shot accuracy)
            and ``qa`` (factual questions); default perplexity alone, the cheapest.
        ground_truth_tokens: held-out prose tokens of the perplexity task.
        ground_truth_examples: examples of the sentiment task and questions of the QA task.
        pairs: (clean, corrupted, answer, wrong) prompt pairs of the patching section; both
            prompts of a pair must have the same token count.
        paraphrase_task: shipped paraphrase task of the consistency section.
        paraphrase_inputs: balanced sample of its inputs.
        factual_questions: shipped factual questions whose answers are graded for the
            hallucination section (every n-th of the extended set).
        ila_adapter: folder of a stage-1 LoRA adapter (``circuitlab ila-rank --adapters``);
            the ILA section runs only with one.
        ila_data: shipped instruction set (or file) the ILA gates are fitted on.
        ila_steps: gate-fitting steps.
        sections: the sections to run, in page order (default every one).
        seed: seed of every sample and fit.
        batch_size: prompts per forward pass.
    """

    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    top_k: int = 8
    task: str = "sentiment"
    task_examples: int | None = 64
    k_shot: int = 0
    calibration_texts: int | None = 4
    ground_truth_tasks: tuple[str, ...] = ("perplexity",)
    ground_truth_tokens: int = 256
    ground_truth_examples: int = 16
    pairs: tuple[tuple[str, str, str, str], ...] = (DEFAULT_PAIR,)
    paraphrase_task: str = "sentiment"
    paraphrase_inputs: int = 16
    factual_questions: int = 48
    ila_adapter: str | None = None
    ila_data: str = "facts"
    ila_steps: int = 20
    sections: tuple[str, ...] = REPORT_SECTIONS
    seed: int = 0
    batch_size: int = 16

    def __post_init__(self) -> None:
        if not self.prompts or any(not str(p).strip() for p in self.prompts):
            raise InputError("The report needs at least one non-empty prompt (--prompt TEXT).")
        for name in ("top_k", "ground_truth_tokens", "ground_truth_examples", "batch_size"):
            _positive(name, getattr(self, name))
        for name in ("paraphrase_inputs", "factual_questions", "ila_steps"):
            _positive(name, getattr(self, name))
        for name in ("task_examples", "calibration_texts"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        unknown_tasks = [t for t in self.ground_truth_tasks if t not in EVALUATION_TASKS]
        if unknown_tasks or not self.ground_truth_tasks:
            raise InputError(
                f"Unknown ground-truth task(s) {unknown_tasks or '(none given)'}: choose from "
                f"{', '.join(EVALUATION_TASKS)}."
            )
        if self.ground_truth_examples < 6 or self.ground_truth_examples % 2:
            raise InputError(
                f"ground_truth_examples = {self.ground_truth_examples}: the ground truth's "
                f"4-shot sentiment task needs an even number of at least 6 examples."
            )
        if self.k_shot < 0:
            raise InputError(f"k_shot = {self.k_shot} must be 0 or more.")
        unknown = [s for s in self.sections if s not in REPORT_SECTIONS]
        if unknown or not self.sections:
            raise InputError(
                f"Unknown report section(s) {unknown or '(none given)'}: choose from "
                f"{', '.join(REPORT_SECTIONS)}."
            )
        if "patching" in self.sections and not self.pairs:
            raise InputError("The patching section needs at least one prompt pair.")
        for pair in self.pairs:
            if len(pair) != 4 or any(not isinstance(text, str) or not text for text in pair):
                raise InputError(
                    f"A patching pair is (clean, corrupted, answer, wrong), four non-empty "
                    f"texts; got {pair!r}."
                )
        if self.ila_adapter is not None and not Path(self.ila_adapter).is_dir():
            raise InputError(
                f"The ILA adapter folder {self.ila_adapter} does not exist. Give the folder "
                f"`circuitlab ila-rank --adapters DIR` wrote (one sub-folder per run)."
            )

    @property
    def runs(self) -> tuple[str, ...]:
        """The sections that run: the chosen ones, ILA only with an adapter."""
        return tuple(
            s for s in REPORT_SECTIONS if s in self.sections and (s != "ila" or self.ila_adapter)
        )

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready data (written into ``results.json``)."""
        return dataclasses.asdict(self)


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a whole number of at least 1, got {value!r}.")
