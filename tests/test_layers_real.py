"""Layer scores and the evaluation harness on the embedded real models, against plain HF."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

import circuitlab
from circuitlab.evaluation import greedy_continuations, load_heldout_prose, perplexity
from circuitlab.evaluation.qa import qa_prompt
from circuitlab.layers import score_layers
from circuitlab.tokenization import pad_rows, token_windows

pytestmark = pytest.mark.real_model


def test_scores_match_plain_transformers_hidden_states(
    real: circuitlab.ModelHandle, plain_transformers_model: Callable[[str], torch.nn.Module]
) -> None:
    texts = load_heldout_prose("calibration")[:2]
    rows = token_windows(real.tokenizer, texts, prepend_bos=real.prepend_bos, window=64)[:6]
    batch = pad_rows(rows, real.pad_token_id)
    scores = score_layers(real, batch, batch_size=3)
    reference = plain_transformers_model(real.name)
    reference.model.norm = torch.nn.Identity()  # hidden_states[-1]: the last block's raw output
    with torch.no_grad():
        hidden = reference(
            batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True
        ).hidden_states
    mask = batch.attention_mask.bool()
    variance, sparsity, influence = [], [], []
    for layer in range(real.n_layers):
        inputs, outputs = hidden[layer][mask].double(), hidden[layer + 1][mask].double()
        variance.append(float(outputs.flatten().var(unbiased=False)))
        sparsity.append(float((outputs.abs() < 0.05).double().mean()))
        cosine = torch.nn.functional.cosine_similarity(inputs, outputs, dim=-1)
        influence.append(float((1 - cosine).mean()))
    avss = scores["avss"]
    np.testing.assert_allclose(avss.details["variance"], variance, rtol=1e-4)
    np.testing.assert_allclose(avss.details["sparsity"], sparsity, atol=2e-4)
    np.testing.assert_allclose(scores["block_influence"].values, influence, rtol=1e-3, atol=1e-5)
    assert all(math.isfinite(value) for value in avss.values)


def test_perplexity_matches_transformers_loss(
    real: circuitlab.ModelHandle, plain_transformers_model: Callable[[str], torch.nn.Module]
) -> None:
    text = load_heldout_prose()[0]
    result = perplexity(real, [text], window=128, max_tokens=300)
    reference = plain_transformers_model(real.name)
    ids = token_windows(real.tokenizer, [text], prepend_bos=real.prepend_bos, window=128)[:3]
    total = 0.0
    for window in ids:
        tensor = torch.tensor([window])
        with torch.no_grad():
            total += float(reference(tensor, labels=tensor).loss) * (len(window) - 1)
    assert result.tokens == sum(len(window) - 1 for window in ids)
    assert result.nll == pytest.approx(total / result.tokens, rel=1e-4)


def test_qa_decoding_matches_generate_and_knows_capitals(real: circuitlab.ModelHandle) -> None:
    questions = [
        "What is the capital of Japan?",
        "What is the capital of Italy?",
        "Who wrote Hamlet?",
    ]
    prompts = [qa_prompt(question) for question in questions]
    batched = greedy_continuations(real, prompts, max_new_tokens=4, stop=None)
    single = real.generate(prompts, max_new_tokens=4, stop_at_eos=True)
    assert batched == single
    answers = greedy_continuations(real, prompts[:2], max_new_tokens=4)
    assert answers[0].strip().startswith("Tokyo") and answers[1].strip().startswith("Rome")
