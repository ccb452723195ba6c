"""Integration: hallucination-prone layers on the embedded SmolLM2."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import circuitlab
from circuitlab.evaluation import load_factual_qa
from circuitlab.evaluation.qa import qa_prompt
from circuitlab.hallucination import (
    hallucination_rates,
    hallucination_scores,
    label_model_answers,
)
from circuitlab.hallucination.export import plain_answers

pytestmark = pytest.mark.real_model


def test_probe_separates_truthful_from_hallucinated_answers_above_chance(
    smollm2: circuitlab.ModelHandle,
) -> None:
    questions = load_factual_qa(extended=True)[::6]  # 110 questions over every category
    answers = label_model_answers(smollm2, questions)
    truthful, hallucinated = answers.counts()
    assert truthful >= 25 and hallucinated >= 25  # a real mix, as the shipped set promises
    scores = hallucination_scores(smollm2, answers, batch_size=16)
    assert scores.n_layers == smollm2.n_layers
    best = scores.top(1, "probe")[0]
    assert scores["probe"].values[best] >= scores.chance + 0.1
    details = scores["eavss"].details
    for layer in range(smollm2.n_layers):  # both groups' statistics are real numbers
        assert details["variance_truthful"][layer] > 0
        assert 0 <= details["sparsity_hallucinated"][layer] <= 1


def test_plain_transformers_generation_gives_circuitlabs_answers(
    smollm2: circuitlab.ModelHandle,
    plain_transformers_model: Callable[[str], torch.nn.Module],
) -> None:
    questions = load_factual_qa(extended=True)[::33]  # 20 questions
    expected = hallucination_rates(smollm2, questions).predictions
    plain = plain_transformers_model("smollm2-135m-instruct")
    prompts = [qa_prompt(question.question) for question in questions]
    assert plain_answers(plain, smollm2, prompts) == list(expected)
