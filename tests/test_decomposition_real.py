"""Integration: the decomposition is exact on the embedded real models."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch

import circuitlab
from circuitlab import LogitDiff, component_accuracy, decompose_residual, direct_logit_attribution
from circuitlab.tasks import load_task

pytestmark = pytest.mark.real_model

PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was a little",
    "The Eiffel Tower is located in the city of",
]


def test_residual_reconstruction(real: circuitlab.ModelHandle) -> None:
    parts = decompose_residual(real, PROMPTS, batch_size=2)
    assert len(parts.components) == 1 + real.n_layers * (real.n_heads + 1)
    relative = (parts.total() - parts.residual).norm(dim=-1) / parts.residual.norm(dim=-1)
    assert float(relative.max()) <= 1e-5


def test_attribution_reproduces_plain_transformers_logits(
    real: circuitlab.ModelHandle, plain_transformers_model: Callable[[str], torch.nn.Module]
) -> None:
    result = direct_logit_attribution(
        real, PROMPTS, [" Paris", LogitDiff(" Paris", " London")], batch_size=2
    )
    reference = plain_transformers_model(real.name)
    paris, london = real.token_ids([" Paris", " London"])
    for row, prompt in enumerate(PROMPTS):
        ids = torch.tensor([real.tokenizer(prompt).input_ids])
        with torch.no_grad():
            logits = reference(ids).logits[0, -1]
        expected = torch.stack([logits[paris], logits[paris] - logits[london]])
        reconstructed = result.values[row].sum(dim=0) + result.constant[row]
        torch.testing.assert_close(reconstructed, expected, atol=1e-3, rtol=0)


def test_smollm2_heads_and_mlps_match_transformerlens(smollm2: circuitlab.ModelHandle) -> None:
    """Cross-check against TransformerLens's own get_full_resid_decomposition (no branch norms)."""
    prompt = PROMPTS[0]
    ours = decompose_residual(smollm2, prompt)
    batch = smollm2.tokenize(prompt)
    with torch.no_grad():
        _, cache = smollm2.bridge.run_with_cache(batch.input_ids)
        stack, labels = cache.get_full_resid_decomposition(
            expand_neurons=False, return_labels=True, pos_slice=-1
        )
    theirs = {label: stack[i, 0].reshape(-1) for i, label in enumerate(labels)}
    for index, component in enumerate(ours.components):
        if isinstance(component, circuitlab.Head):
            key = str(component)
        elif isinstance(component, circuitlab.Mlp):
            key = f"{component.layer}_mlp_out"
        else:
            key = "embed"
        torch.testing.assert_close(ours.contributions[0, index], theirs[key], atol=1e-4, rtol=0)
    torch.testing.assert_close(
        stack[:, 0].reshape(len(labels), -1).sum(0), ours.residual[0], atol=1e-3, rtol=0
    )


def test_component_accuracy_agrees_with_the_logits(smollm2: circuitlab.ModelHandle) -> None:
    task = load_task("sentiment").balanced_sample(24, seed=1)
    result = component_accuracy(smollm2, task, batch_size=8)
    ids = smollm2.token_ids(task.label_words)
    logits = smollm2.next_token_logits(task.prompts())[:, ids]
    labels = torch.tensor(task.labels)
    assert result.model_accuracy == pytest.approx(
        float((logits.argmax(-1) == labels).float().mean())
    )
    attribution = direct_logit_attribution(smollm2, task.prompts(), list(task.label_words))
    best, best_accuracy = result.good(1)[0]
    column = attribution.components.index(best)
    by_hand = (attribution.values[:, column].argmax(-1) == labels).float().mean()
    assert best_accuracy == pytest.approx(float(by_hand))
    assert result.bad(1)[0][1] <= result.good(1)[0][1]
    biased = dict(result.label_biased())
    for component, word in biased.items():
        column = result.components.index(component)
        assert set(result.predictions[:, column].tolist()) == {task.label_words.index(word)}


def test_a_target_without_its_leading_space_is_flagged(smollm2: circuitlab.ModelHandle) -> None:
    prompt = "The Eiffel Tower is in the city of"
    with pytest.warns(UserWarning, match=r"Target 'Paris' has no leading space; ' Paris'"):
        result = circuitlab.direct_logit_attribution(smollm2, prompt, "Paris")
    assert result.targets == ("'Paris'",) and result.values.shape[-1] == 1  # extra column gone
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        circuitlab.direct_logit_attribution(smollm2, prompt, " Paris")
        circuitlab.direct_logit_attribution(smollm2, prompt, [" Paris", "Paris"])
