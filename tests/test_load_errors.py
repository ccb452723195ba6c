"""Bad input to circuitlab.load and ModelHandle gets a clear CircuitlabError."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete tiny Llama folder (config, model.safetensors, tokenizer files)."""
    folder = tmp_path_factory.mktemp("model")
    model, tokenizer = tiny_hf_model("llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _only_pickled_weights(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x02 a pickle that must never be read")


def _sharded_with_a_shard_missing(folder: Path) -> None:
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def _config_with(**changes: object) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **changes}))

    return change


BROKEN_FOLDERS: dict[str, tuple[Callable[[Path], None], str]] = {
    # case: (how the folder is broken, what the message must say)
    "config not JSON": (
        lambda f: (f / "config.json").write_text("{not json"),
        r"config\.json is not valid JSON",
    ),
    "config truncated": (lambda f: _truncate(f / "config.json"), r"config\.json is not valid JSON"),
    "config a list": (lambda f: (f / "config.json").write_text("[1, 2]"), "holds a JSON list"),
    "config not UTF-8": (
        lambda f: (f / "config.json").write_bytes(b'{"model_type": "\xe9"}'),
        r"config\.json is not UTF-8",
    ),
    "generation config truncated": (
        lambda f: _truncate(f / "generation_config.json"),
        r"generation_config\.json is not valid JSON",
    ),
    "tokenizer.json missing": (
        lambda f: (f / "tokenizer.json").unlink(),
        "no tokenizer files.*tokenizer.save_pretrained",
    ),
    "tokenizer.json truncated": (
        lambda f: _truncate(f / "tokenizer.json"),
        r"tokenizer\.json is not valid JSON.*truncated",
    ),
    "tokenizer config truncated": (
        lambda f: _truncate(f / "tokenizer_config.json", 0.3),
        r"tokenizer_config\.json is not valid JSON",
    ),
    "tokenizer.json not a tokenizer": (
        lambda f: (f / "tokenizer.json").write_text("{}"),
        "cannot be loaded as a Hugging Face model",
    ),
    "only pytorch_model.bin": (
        _only_pickled_weights,
        r"only pickled PyTorch weights \(pytorch_model\.bin\).*never loads",
    ),
    "no weights": (lambda f: (f / "model.safetensors").unlink(), r"has no weights.*safetensors"),
    "safetensors truncated": (
        lambda f: _truncate(f / "model.safetensors"),
        r"model\.safetensors is not a readable safetensors file.*truncated or corrupt",
    ),
    "safetensors empty": (
        lambda f: (f / "model.safetensors").write_bytes(b""),
        r"model\.safetensors is not a readable safetensors file",
    ),
    "shard missing": (_sharded_with_a_shard_missing, r"model-00002-of-00002\.safetensors"),
    "config with more layers than the weights": (
        _config_with(num_hidden_layers=3),
        r"do not fit its config\.json: \d+ tensor\(s\) missing \(model\.layers\.2\.",
    ),
    "config with another width than the weights": (
        _config_with(intermediate_size=96),
        r"do not fit its config\.json: \d+ of another shape",
    ),
}


@pytest.mark.parametrize("case", BROKEN_FOLDERS)
def test_broken_model_folder_says_what_is_wrong(
    case: str, model_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pickles(*args: object, **kwargs: object) -> None:
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(torch, "load", no_pickles)
    break_folder, expected = BROKEN_FOLDERS[case]
    folder = tmp_path / "broken"
    shutil.copytree(model_folder, folder)
    break_folder(folder)
    with pytest.raises(NotAModelError, match=expected) as caught:
        circuitlab.load(folder)
    assert str(folder) in str(caught.value)


def test_large_broken_json_is_named_after_the_loader_fails(
    model_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON files too large to parse up front (a tokenizer.json) are checked after a failure."""
    monkeypatch.setattr(circuitlab.loading, "_LARGE_JSON", 16)
    folder = tmp_path / "broken"
    shutil.copytree(model_folder, folder)
    _truncate(folder / "tokenizer.json")
    with pytest.raises(NotAModelError, match=r"tokenizer\.json is not valid JSON"):
        circuitlab.load(folder)


def test_weights_are_read_as_safetensors_only(
    model_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModelForCausalLM

    calls: list[dict[str, object]] = []
    real = AutoModelForCausalLM.from_pretrained

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    circuitlab.load(model_folder)
    assert calls and all(call.get("use_safetensors") is True for call in calls)
    assert not calls[0].get("trust_remote_code")


@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
def test_empty_model_name_is_an_input_error(name: str) -> None:
    with pytest.raises(InputError) as caught:
        circuitlab.load(name)
    message = str(caught.value)
    assert "model name is empty" in message
    assert "smollm2-135m-instruct" in message and "gemma3-270m" in message
    assert "local Hugging Face model folder" in message and "'org/model'" in message
    assert "is not a Hugging Face model folder" not in message


@pytest.mark.parametrize("name", [123, 2.5, b"smollm2-135m-instruct", ["gemma3-270m"], object()])
def test_model_name_of_another_type_is_an_input_error(name: object) -> None:
    with pytest.raises(InputError, match=r"must be a string or a path, not \w+.*registry name"):
        circuitlab.load(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["a\x00b", "x" * 5000, "~no-such-user-circuitlab/x/y"])
def test_impossible_path_is_an_unknown_model(name: str) -> None:
    with pytest.raises(ModelNotFoundError, match="Unknown model"):
        circuitlab.load(name)


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
