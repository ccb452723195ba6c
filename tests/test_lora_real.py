"""Integration: LoRA on chosen layers of the embedded model, reloaded with plain peft."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

import circuitlab
from circuitlab.lora import add_lora

pytestmark = pytest.mark.real_model

PROMPTS = ["The capital of France is", "Once upon a time, there was a little"]


def test_smollm2_adapter_trains_through_hooks_and_reloads_with_plain_peft(
    tmp_path: Path, plain_transformers_model: Callable[[str], torch.nn.Module]
) -> None:
    model = circuitlab.load("smollm2-135m-instruct")  # a fresh handle: the adapter stays in it
    batch = model.tokenize(PROMPTS)
    before = model.logits(batch)
    adapter = add_lora(model, layers=[10, 20], modules=["q_proj", "v_proj", "down_proj"], r=4)
    assert len(adapter.parameters()) == 2 * 3 * 2  # A and B, 3 modules, 2 layers
    optimiser = torch.optim.AdamW(adapter.parameters(), lr=1e-3)
    for _ in range(2):  # language-modelling steps through the bridge
        optimiser.zero_grad()
        logits = model.bridge(batch.input_ids, attention_mask=batch.attention_mask)
        targets = batch.input_ids[:, 1:].masked_fill(batch.attention_mask[:, 1:] == 0, -100)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten())
        loss.backward()
        optimiser.step()
    after = model.logits(batch)
    mask = batch.attention_mask.bool()
    assert float((after - before)[mask].abs().max()) > 1e-2
    _, cache = model.run_with_cache(batch, names=["blocks.20.attn.hook_z"])
    assert cache["blocks.20.attn.hook_z"].shape[2] == model.n_heads  # hooks still work

    adapter.save(tmp_path / "adapter")
    base = plain_transformers_model("smollm2-135m-instruct")
    with torch.no_grad():
        peft_logits = (
            PeftModel.from_pretrained(base, tmp_path / "adapter")
            .eval()(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
            .logits
        )
    assert float((peft_logits[mask] - after[mask]).abs().max()) <= 1e-3

    circuitlab.export_hf(model, [], tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(
        tmp_path / "merged", dtype=torch.float32, attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        merged_logits = merged(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask
        ).logits
    assert float((merged_logits[mask] - after[mask]).abs().max()) <= 1e-3
