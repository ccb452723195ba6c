"""Integration: the embedded real models agree with plain transformers (eager attention)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import circuitlab

pytestmark = pytest.mark.real_model

PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was a little",
    "def add(a, b):\n    return",
]


def test_logits_equal_plain_transformers(
    real: circuitlab.ModelHandle, plain_transformers_model: Callable[[str], torch.nn.Module]
) -> None:
    reference = plain_transformers_model(real.name)
    batch = real.tokenize(PROMPTS)
    logits = real.logits(batch)
    for row, prompt in enumerate(PROMPTS):
        ids = torch.tensor([real.tokenizer(prompt).input_ids])
        with torch.no_grad():
            expected = reference(ids).logits[0]
        torch.testing.assert_close(logits[row, : ids.shape[1]], expected, atol=1e-3, rtol=0)


def test_greedy_generation_equals_transformers_generate(
    real: circuitlab.ModelHandle, plain_transformers_model: Callable[[str], torch.nn.Module]
) -> None:
    reference = plain_transformers_model(real.name)
    prompt = PROMPTS[1]
    ids = torch.tensor([real.tokenizer(prompt).input_ids])
    with torch.no_grad():
        expected = reference.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=12,
            do_sample=False,
            pad_token_id=real.pad_token_id,
            eos_token_id=None,
        )
    ours = real.generate_ids(prompt, max_new_tokens=12, stop_at_eos=False)[0]
    assert ours == expected[0, ids.shape[1] :].tolist()


def test_smollm2_knows_the_capital_of_france(smollm2: circuitlab.ModelHandle) -> None:
    top = smollm2.top_next_tokens("The capital of France is", k=3)
    assert top[0].token == " Paris"
    assert top[0].probability > 0.5
    assert smollm2.generate("The capital of France is", max_new_tokens=2).startswith(" Paris")


def test_real_architecture_facts(
    smollm2: circuitlab.ModelHandle, gemma3: circuitlab.ModelHandle
) -> None:
    assert (smollm2.n_layers, smollm2.n_heads, smollm2.n_kv_heads) == (30, 9, 3)
    assert (smollm2.d_model, smollm2.d_head, smollm2.d_vocab) == (576, 64, 49152)
    assert [site.name for site in smollm2.arch.norms] == ["ln1", "ln2", "ln_final"]
    assert (gemma3.n_layers, gemma3.n_heads, gemma3.n_kv_heads) == (18, 4, 1)
    assert (gemma3.d_model, gemma3.d_head) == (640, 256)
    assert gemma3.arch.has_branch_norms and gemma3.arch.norm_weight_offset == 1.0
    assert gemma3.arch.embedding_scale == pytest.approx(640**0.5, rel=1e-3)


def test_bos_policy_follows_each_tokenizer(
    smollm2: circuitlab.ModelHandle, gemma3: circuitlab.ModelHandle
) -> None:
    assert smollm2.to_str_tokens("The capital")[0] == "The"
    assert gemma3.to_str_tokens("The capital")[0] == "<bos>"
