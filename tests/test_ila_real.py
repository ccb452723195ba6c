"""ILA on the embedded SmolLM2: the chat template frames the data, and a gated adapter
(W₀ + γ·ΔW) exports to a plain transformers checkpoint that computes what circuitlab computes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import circuitlab
from circuitlab.ila import encode_instructions, fit_gates, fit_lora, load_instructions
from circuitlab.interventions.export import export_hf

pytestmark = pytest.mark.real_model


def test_gated_adapter_exports_to_plain_transformers(
    smollm2: circuitlab.ModelHandle, tmp_path: Path
) -> None:
    data = load_instructions("rewrite", limit=16)
    encoded = encode_instructions(smollm2, data)
    scored = smollm2.tokenizer.decode(encoded.rows[0][encoded.starts[0] :])
    assert scored == data.responses[0] + "<|im_end|>"  # only the response and EOS are scored
    stage1 = fit_lora(smollm2, data, max_steps=4, stable=None)
    try:
        stage2 = fit_gates(smollm2, data, steps=2)
        try:
            gamma = stage2.layer_gamma
            assert len(gamma) == smollm2.n_layers and len(set(gamma)) > 1
            batch = smollm2.tokenize(["Rewrite politely: Close the door.", "Sort: pear, fig"])
            ours = smollm2.logits(batch)
            export_hf(smollm2, [], tmp_path / "gated")
        finally:
            stage2.gates.remove()
    finally:
        stage1.adapter.remove()
    plain = AutoModelForCausalLM.from_pretrained(
        tmp_path / "gated", dtype=torch.float32, attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        theirs = plain(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    mask = batch.attention_mask.bool()
    torch.testing.assert_close(theirs[mask], ours[mask], atol=1e-4, rtol=0)
