"""Three facts, three answers: per-prompt direct logit attribution and the two-token logit
difference of ablation studies on the real models, against plain transformers' logits."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch

from circuitlab import LogitDiff, ModelHandle, ablation_study, direct_logit_attribution

pytestmark = pytest.mark.real_model

FACTS = ["The capital of France is", "The capital of Germany is", "The capital of Japan is"]
ANSWERS = [" Paris", " Berlin", " Tokyo"]
OTHERS = [" Rome", " Paris", " Berlin"]


def _plain_last_logits(
    real: ModelHandle, build: Callable[[str], torch.nn.Module]
) -> list[torch.Tensor]:
    reference = build(real.name)
    with torch.no_grad():
        return [reference(real.tokenize([fact]).input_ids).logits[0, -1] for fact in FACTS]


def test_three_facts_with_three_answers_sum_to_plain_transformers_logits(
    real: ModelHandle, plain_transformers_model: Callable[[str], torch.nn.Module]
) -> None:
    for word in ANSWERS + OTHERS:  # single tokens on both tokenizers
        assert len(real.tokenizer(word, add_special_tokens=False)["input_ids"]) == 1, word
    result = direct_logit_attribution(real, FACTS, ANSWERS, per_prompt=True)
    plain = _plain_last_logits(real, plain_transformers_model)
    expected = torch.stack([row[real.token_id(a)] for row, a in zip(plain, ANSWERS, strict=True)])
    torch.testing.assert_close(result.logits[:, 0], expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(
        result.values.sum(dim=1) + result.constant, result.logits, atol=1e-3, rtol=0
    )
    assert result.prompt_targets == tuple(repr(answer) for answer in ANSWERS)

    pairs = [LogitDiff(a, b) for a, b in zip(ANSWERS, OTHERS, strict=True)]
    effects = ablation_study(real, FACTS, pairs, components=["MLP0"])
    differences = torch.stack(
        [row[real.token_id(pair.positive)] - row[real.token_id(pair.negative)]
         for row, pair in zip(plain, pairs, strict=True)]
    )  # fmt: skip
    torch.testing.assert_close(effects.baseline, differences, atol=2e-4, rtol=0)
    diffs = direct_logit_attribution(real, FACTS, pairs, per_prompt=True)
    torch.testing.assert_close(diffs.logits[:, 0], differences, atol=2e-4, rtol=0)


def test_a_per_prompt_target_without_its_space_is_flagged_at_the_caller(
    smollm2: ModelHandle,
) -> None:
    facts = ["The Eiffel Tower is in the city of", "The capital of Germany is"]
    with pytest.warns(UserWarning, match=r"Target 'Paris' has no leading space") as caught:
        result = direct_logit_attribution(smollm2, facts, ["Paris", " Berlin"], per_prompt=True)
    assert caught[0].filename == __file__
    with pytest.warns(UserWarning, match=r"Target 'Paris' has no leading space") as caught:
        direct_logit_attribution(smollm2, facts[0], "Paris")  # one target for every prompt
    assert caught[0].filename == __file__
    assert result.prompt_targets == ("'Paris'", "' Berlin'") and result.values.shape[-1] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        direct_logit_attribution(smollm2, facts, [" Paris", " Berlin"], per_prompt=True)
