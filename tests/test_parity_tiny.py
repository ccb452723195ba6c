"""The handle's logits and greedy generation equal plain transformers on every tiny architecture."""

from __future__ import annotations

import copy

import torch

from circuitlab import ModelHandle
from circuitlab.testing import tiny_hf_model

PROMPTS = [
    "the capital of france is",
    "the movie was very good and",
    "yes",
    "a cat sat on the mat .",
]


def _handle_and_reference(architecture: str) -> tuple[ModelHandle, torch.nn.Module, object]:
    hf_model, tokenizer = tiny_hf_model(architecture)
    reference = copy.deepcopy(hf_model)
    return ModelHandle(hf_model, tokenizer, name=architecture), reference, tokenizer


def test_batched_logits_equal_plain_transformers(tiny_architecture: str) -> None:
    handle, reference, tokenizer = _handle_and_reference(tiny_architecture)
    batch = handle.tokenize(PROMPTS)
    logits = handle.logits(batch)
    assert logits.shape == (len(PROMPTS), batch.input_ids.shape[1], handle.d_vocab)
    for row, prompt in enumerate(PROMPTS):
        ids = torch.tensor([tokenizer(prompt).input_ids])
        with torch.no_grad():
            expected = reference(ids).logits[0]
        torch.testing.assert_close(logits[row, : ids.shape[1]], expected, atol=1e-4, rtol=0)


def test_next_token_logits_pick_each_prompts_last_real_token(tiny_architecture: str) -> None:
    handle, reference, tokenizer = _handle_and_reference(tiny_architecture)
    next_logits = handle.next_token_logits(PROMPTS)
    for row, prompt in enumerate(PROMPTS):
        with torch.no_grad():
            expected = reference(torch.tensor([tokenizer(prompt).input_ids])).logits[0, -1]
        torch.testing.assert_close(next_logits[row], expected, atol=1e-4, rtol=0)


def test_greedy_generation_equals_transformers_generate(tiny_architecture: str) -> None:
    handle, reference, tokenizer = _handle_and_reference(tiny_architecture)
    ours = handle.generate_ids(PROMPTS[:2], max_new_tokens=8, stop_at_eos=False)
    for row, prompt in enumerate(PROMPTS[:2]):
        ids = torch.tensor([tokenizer(prompt).input_ids])
        with torch.no_grad():
            expected = reference.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=8,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=None,
            )
        assert ours[row] == expected[0, ids.shape[1] :].tolist()


def test_architecture_facts_match_the_config(tiny_architecture: str) -> None:
    handle, reference, _ = _handle_and_reference(tiny_architecture)
    config = reference.config
    arch = handle.arch
    assert arch.n_layers == config.num_hidden_layers
    assert arch.n_heads == config.num_attention_heads
    assert arch.n_kv_heads == getattr(config, "num_key_value_heads", config.num_attention_heads)
    assert arch.d_model == config.hidden_size
    expected_d_head = (
        getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    )
    assert arch.d_head == expected_d_head
    assert arch.d_vocab == config.vocab_size
    assert arch.norms[-1].placement == "final"
    final_scale = arch.norm("final").scale_hook()
    _, cache = handle.run_with_cache("the cat sat", names=[final_scale])
    assert cache[final_scale].shape[-1] == 1


def test_model_is_unchanged_after_hooks_exit(tiny_architecture: str) -> None:
    handle, _, _ = _handle_and_reference(tiny_architecture)
    before = handle.logits(PROMPTS)

    def zero_attention(activation: torch.Tensor, hook: object) -> torch.Tensor:
        return torch.zeros_like(activation)

    with handle.hooks([("blocks.0.hook_attn_out", zero_attention)]):
        changed = handle.logits(PROMPTS)
    assert not torch.allclose(before, changed)
    torch.testing.assert_close(handle.logits(PROMPTS), before, atol=0, rtol=0)
    hooked = handle.run_with_hooks(PROMPTS, [("blocks.0.hook_attn_out", zero_attention)])
    torch.testing.assert_close(hooked, changed, atol=1e-6, rtol=0)
    torch.testing.assert_close(handle.logits(PROMPTS), before, atol=0, rtol=0)


def test_cached_activations_combine_with_weights(tiny_architecture: str) -> None:
    """Per-head outputs rebuilt by hand from hook_z and W_O match the attention output."""
    handle, _, _ = _handle_and_reference(tiny_architecture)
    names = ["blocks.1.attn.hook_z", "blocks.1.attn.hook_out"]
    _, cache = handle.run_with_cache(PROMPTS, names=names)
    w_o = handle.bridge.W_O[1]  # [head_index, d_head, d_model]
    per_head = torch.einsum("bphd,hdm->bpm", cache[names[0]], w_o)
    bias = handle.bridge.b_O[1] if handle.arch.family == "gpt2" else 0.0
    torch.testing.assert_close(per_head + bias, cache[names[1]], atol=1e-5, rtol=0)
