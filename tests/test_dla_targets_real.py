"""Three facts, three answers: per-prompt direct logit attribution on the real models, against
plain transformers' logits."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from circuitlab import ModelHandle, direct_logit_attribution

pytestmark = pytest.mark.real_model

FACTS = ["The capital of France is", "The capital of Germany is", "The capital of Japan is"]
ANSWERS = [" Paris", " Berlin", " Tokyo"]


def test_three_facts_with_three_answers_sum_to_plain_transformers_logits(
    real: ModelHandle, plain_transformers_model: Callable[[str], torch.nn.Module]
) -> None:
    result = direct_logit_attribution(real, FACTS, ANSWERS, per_prompt=True)
    reference = plain_transformers_model(real.name)
    expected = []
    for prompt, answer in zip(FACTS, ANSWERS, strict=True):
        with torch.no_grad():
            logits = reference(real.tokenize([prompt]).input_ids).logits[0, -1]
        expected.append(logits[real.token_id(answer)])
    torch.testing.assert_close(result.logits[:, 0], torch.stack(expected), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        result.values.sum(dim=1) + result.constant, result.logits, atol=1e-3, rtol=0
    )
    assert result.prompt_targets == tuple(repr(answer) for answer in ANSWERS)
