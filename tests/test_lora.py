"""LoRA on chosen layers: hooks keep working, adapters reload with plain peft, export merges."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from circuitlab import InputError, decompose_residual, sites
from circuitlab.interventions import Ablate
from circuitlab.interventions.export import export_hf
from circuitlab.lora import adapted, add_lora, load_lora, lora_delta
from circuitlab.testing import tiny_model
from circuitlab.tokenization import TokenBatch
from circuitlab.training import Step, Stopping, train

PROMPTS = ["the cat sat on the mat", "a dog ."]


def _plain_logits(model: torch.nn.Module, batch: TokenBatch) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits


def test_adapter_trains_through_hooks_and_reloads_with_plain_peft(
    tiny_architecture: str, tmp_path: Path
) -> None:
    model = tiny_model(tiny_architecture)
    export_hf(model, [], tmp_path / "base")  # the untouched base, as a plain checkpoint
    batch = model.tokenize(PROMPTS)
    before = model.logits(batch)
    adapter = add_lora(model, layers=[1], r=4)
    torch.testing.assert_close(model.logits(batch), before, atol=1e-6, rtol=0)  # B starts at 0
    seen: dict[str, torch.Tensor] = {}

    def objective(batch: object) -> Step:  # a loss read from a hook point, through the handle
        model.logits(batch, grad=True)
        return Step(seen["r"].pow(2).mean())

    with model.hooks([(sites.resid_post(1), lambda x, hook: seen.update(r=x))]):
        history = train(
            adapter.parameters(), objective, [batch], learning_rate=0.02, stopping=Stopping(3)
        )
    assert history.epochs == 3 and history.losses[-1] < history.losses[0]
    after = model.logits(batch)
    assert (after - before).abs().max() > 1e-3
    assert all(
        not p.requires_grad for n, p in model.hf_model.named_parameters() if "lora_" not in n
    )
    _, cache = model.run_with_cache(batch, names=["blocks.1.attn.hook_z"])
    assert cache["blocks.1.attn.hook_z"].shape[2] == model.n_heads

    adapter.save(tmp_path / "adapter")
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base", attn_implementation="eager")
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    mask = batch.attention_mask.bool()
    torch.testing.assert_close(_plain_logits(reloaded, batch)[mask], after[mask], atol=1e-5, rtol=0)

    export_hf(model, [Ablate("L0H1")], tmp_path / "merged")
    with model.intervene(Ablate("L0H1")):
        hooked = model.logits(batch)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", attn_implementation="eager")
    torch.testing.assert_close(
        _plain_logits(merged.eval(), batch)[mask], hooked[mask], atol=1e-4, rtol=0
    )


def test_bad_lora_requests_are_refused() -> None:
    model = tiny_model("llama")
    with pytest.raises(InputError, match="out of range"):
        add_lora(model, layers=[7])
    with pytest.raises(InputError, match="Unknown module names"):
        add_lora(model, layers=[0], modules=["c_attn"])
    with pytest.raises(InputError, match="at least one layer"):
        add_lora(model, layers=[])


@pytest.mark.parametrize("architecture", ["llama", "gemma3", "qwen2", "qwen3"])
def test_decomposition_stays_exact_with_an_adapter_on_the_output_projection(
    architecture: str,
) -> None:
    model = tiny_model(architecture)  # GPT-2 takes adapters on its MLP only
    adapter = add_lora(model, layers=[0, 1], modules=["o_proj", "down_proj"], r=4)
    with torch.no_grad():  # a trained-looking adapter: B no longer zero
        for name, parameter in model.hf_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.2, generator=torch.Generator().manual_seed(0))
    assert len(adapter.parameters()) == 8
    parts = decompose_residual(model, PROMPTS)
    torch.testing.assert_close(parts.total(), parts.residual, atol=1e-5, rtol=0)


def test_an_adapter_saved_loads_back_and_adapted_removes_it(
    tiny_architecture: str, tmp_path: Path
) -> None:
    model = tiny_model(tiny_architecture)
    batch = model.tokenize(PROMPTS)
    before = model.logits(batch)
    grads_before = {n: p.requires_grad for n, p in model.hf_model.named_parameters()}
    modules = ["c_fc"] if tiny_architecture == "gpt2" else ["q_proj", "down_proj"]
    with adapted(model, layers=[0, 1], modules=modules, r=2, init="gaussian") as adapter:
        with torch.no_grad():
            for parameter in adapter.parameters():  # B starts at 0: give it a value
                parameter.add_(0.05 * torch.randn_like(parameter))
        during = model.logits(batch)
        assert (during - before).abs().max() > 1e-4
        adapter.save(tmp_path / "adapter")
        deltas = [lora_delta(m) for m in model.hf_model.modules()]
        assert sum(delta is not None for delta in deltas) == 2 * len(modules)
    assert not any("lora_" in n for n, _ in model.hf_model.named_parameters())
    assert {n: p.requires_grad for n, p in model.hf_model.named_parameters()} == grads_before
    torch.testing.assert_close(model.logits(batch), before, atol=0, rtol=0)

    loaded = load_lora(model, tmp_path / "adapter")
    torch.testing.assert_close(model.logits(batch), during, atol=1e-6, rtol=0)
    assert loaded.config.r == 2
    loaded.remove()
    torch.testing.assert_close(model.logits(batch), before, atol=0, rtol=0)


def test_loading_something_that_is_not_an_adapter_is_a_clear_error(tmp_path: Path) -> None:
    model = tiny_model("llama")
    with pytest.raises(InputError, match="is not a saved LoRA adapter"):
        load_lora(model, tmp_path)
    with adapted(model, layers=[1], modules=["q_proj", "v_proj"], r=2) as adapter:
        adapter.save(tmp_path / "adapter")
    with pytest.raises(InputError, match="Unknown module names"):
        load_lora(tiny_model("gpt2"), tmp_path / "adapter")  # GPT-2 has no q_proj
    tensors = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    save_file(
        {k: v for k, v in tensors.items() if "v_proj" not in k},
        tmp_path / "adapter" / "adapter_model.safetensors",
    )
    with pytest.raises(InputError, match="does not fit"):
        load_lora(model, tmp_path / "adapter")
    assert not any("lora_" in n for n, _ in model.hf_model.named_parameters())  # taken out
