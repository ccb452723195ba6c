"""Bad input to circuitlab.load and ModelHandle gets a clear CircuitlabError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import circuitlab
from circuitlab import CircuitlabError, InputError, ModelHandle
from circuitlab.errors import (
    DeviceUnavailableError,
    ModelNotFoundError,
    NotAModelError,
    OfflineError,
    UnsupportedArchitectureError,
)
from circuitlab.testing import tiny_hf_model


def test_unknown_model_name_lists_known_names_and_local_folders() -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        circuitlab.load("smollm-9000")
    message = str(caught.value)
    assert "'smollm-9000'" in message
    assert "smollm2-135m-instruct" in message and "gemma3-270m" in message
    assert "local Hugging Face model folder" in message


def test_hub_name_without_network_says_how_to_load_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError) as caught:
        circuitlab.load("someorg/some-model-that-is-not-cached")
    message = str(caught.value)
    assert "someorg/some-model-that-is-not-cached" in message
    assert "circuitlab.load('DIR')" in message


def test_folder_without_config_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(NotAModelError, match=r"no config\.json"):
        circuitlab.load(tmp_path)
    with pytest.raises(NotAModelError, match="is a file"):
        circuitlab.load(tmp_path / "notes.txt")


def test_folder_with_config_but_no_weights_is_not_a_model(tmp_path: Path) -> None:
    model, _ = tiny_hf_model("llama")
    model.config.save_pretrained(tmp_path)
    with pytest.raises(NotAModelError, match="weights or tokenizer cannot be read"):
        circuitlab.load(tmp_path)


def test_local_folder_loads(tmp_path: Path) -> None:
    model, tokenizer = tiny_hf_model("gpt2")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    handle = circuitlab.load(tmp_path)
    torch.testing.assert_close(
        handle.logits("the cat")[0],
        model(torch.tensor([tokenizer("the cat").input_ids])).logits[0],
        atol=1e-5,
        rtol=0,
    )


def test_unsupported_architecture_is_named(tmp_path: Path) -> None:
    from transformers import GPTNeoXConfig

    GPTNeoXConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        architectures=["GPTNeoXForCausalLM"],
    ).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedArchitectureError) as caught:
        circuitlab.load(tmp_path)
    message = str(caught.value)
    assert "GPTNeoXForCausalLM" in message
    assert (
        "LlamaForCausalLM" in message
        and "Gemma3ForCausalLM" in message
        and "GPT2LMHeadModel" in message
    )


def test_unknown_model_type_in_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "not-a-real-model"}))
    with pytest.raises(UnsupportedArchitectureError, match="cannot read the config"):
        circuitlab.load(tmp_path)


def test_cuda_without_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailableError, match=r"device='cuda'.*Use device='cpu'"):
        circuitlab.load("smollm2-135m-instruct", device="cuda")
    with pytest.raises(InputError, match="Unknown device"):
        circuitlab.load(device="gpu-please")


def test_bad_dtype() -> None:
    with pytest.raises(InputError, match="Unsupported dtype 'int8'"):
        circuitlab.load(dtype="int8")
    assert circuitlab.loading.resolve_dtype("bf16") is torch.bfloat16
    assert circuitlab.loading.resolve_dtype(torch.float16) is torch.float16


def test_bfloat16_handle_runs() -> None:
    model, tokenizer = tiny_hf_model("llama")
    reference = model(torch.tensor([tokenizer("the cat sat").input_ids])).logits[0]
    handle = ModelHandle(model.to(torch.bfloat16), tokenizer, name="bf16")
    assert handle.dtype is torch.bfloat16
    logits = handle.logits("the cat sat")[0].float()
    torch.testing.assert_close(logits, reference, atol=0.1, rtol=0.05)


def test_second_bridge_on_one_model_is_refused() -> None:
    model, tokenizer = tiny_hf_model("llama")
    ModelHandle(model, tokenizer, name="first")
    with pytest.raises(CircuitlabError, match="already has a bridge"):
        ModelHandle(model, tokenizer, name="second")


def test_unknown_hook_name_in_run_with_cache() -> None:
    from circuitlab.testing import tiny_model

    with pytest.raises(InputError, match="Unknown hook name"):
        tiny_model().run_with_cache("the cat", names=["blocks.0.attn.hook_zz"])
    identity = lambda activation, hook: activation  # noqa: E731
    with pytest.raises(InputError, match=r"layers 0 \.\. 1"):
        tiny_model().run_with_hooks("the cat", [("blocks.7.hook_attn_out", identity)])
    with pytest.raises(InputError, match="Unknown hook name"):
        with tiny_model().hooks([("blocks.0.hook_nope", identity)]):
            pass


def test_repr_and_model_card_are_readable() -> None:
    from circuitlab.testing import tiny_model

    model = tiny_model("gemma3")
    assert repr(model) == (
        "ModelHandle('tiny-gemma3': gemma3, 2 layers x 4/1kv heads, d_model=64, vocab=53, "
        "float32 on cpu)"
    )
    card = model.model_card()
    assert card["norms"] == [
        "ln1",
        "ln1_post",
        "ln2",
        "ln2_post",
        "attn.q_norm",
        "attn.k_norm",
        "ln_final",
    ]
    json.dumps(card)
    assert "| n_layers | 2 |" in model._repr_markdown_()
