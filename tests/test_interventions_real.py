"""Integration: interventions on the embedded real models survive export to plain transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import circuitlab
from circuitlab.interventions import (
    Ablate,
    PruneHeads,
    PruneLayers,
    Scale,
    SteerHead,
)
from circuitlab.interventions.export import export_hf

pytestmark = pytest.mark.real_model

PROMPTS = ["The capital of France is", "Once upon a time, there was a little"]
REFERENCE = ["The weather today is", "My favourite food is", "The Eiffel Tower is in"]


def test_every_bakeable_kind_round_trips_through_plain_transformers(
    real: circuitlab.ModelHandle, tmp_path: Path
) -> None:
    last = real.n_layers - 1
    steering = torch.linspace(-0.5, 0.5, real.d_model)
    edits = [
        Ablate(f"L{last}H0"),
        Ablate(f"L{last - 1}H1", "mean", reference=REFERENCE),
        Scale(f"MLP{last}", 0.5),
        Scale(f"L{last - 2}", 1.5),
        SteerHead(f"L{last - 3}H0", steering),
        PruneHeads([f"L{last - 4}H0"]),
        PruneLayers([2, 5]),
    ]
    batch = real.tokenize(PROMPTS)
    plain = real.logits(batch)
    with real.intervene(*edits):
        hooked = real.logits(batch)
    assert (hooked - plain).abs().max() > 0.1
    with pytest.warns(UserWarning, match="zero output columns"):
        export_hf(real, edits, tmp_path / "edited")
    reloaded = AutoModelForCausalLM.from_pretrained(
        tmp_path / "edited", dtype=torch.float32, attn_implementation="eager"
    ).eval()
    assert reloaded.config.num_hidden_layers == real.n_layers - 2
    with torch.no_grad():
        exported = reloaded(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    mask = batch.attention_mask.bool()
    assert float((exported[mask] - hooked[mask]).abs().max()) <= 1e-3
    assert torch.equal(real.logits(batch), plain)  # the handle itself is untouched
