"""Integration: attention views on the embedded real models (SmolLM2 and Gemma 3)."""

from __future__ import annotations

import html
from collections.abc import Callable

import pytest
import torch

import circuitlab
from circuitlab.attention import attention_pattern, head_summary
from circuitlab.components import Head

pytestmark = pytest.mark.real_model

PROMPT = "When Mary and John went to the store, John gave a drink to"


def _attentions(reference: torch.nn.Module, ids: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return [layer[0] for layer in reference(ids[None], output_attentions=True).attentions]


def test_every_heads_pattern_equals_plain_transformers(
    real: circuitlab.ModelHandle, plain_transformers_model: Callable[[str], torch.nn.Module]
) -> None:
    reference = plain_transformers_model(real.name)
    ids = real.tokenize(PROMPT).row(0)
    every_head = [Head(layer, h) for layer in range(real.n_layers) for h in range(real.n_heads)]
    view = attention_pattern(real, PROMPT, every_head)  # one pass, every layer
    expected = torch.cat(_attentions(reference, ids))
    torch.testing.assert_close(view.pattern, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(view.pattern.sum(-1), torch.ones(view.pattern.shape[:2]))
    assert torch.all(view.pattern.triu(diagonal=1) == 0)
    size = real.n_heads // real.n_kv_heads
    assert view.kv_groups == tuple(h.head // size for h in every_head)


def test_smollm2_kv_groups_follow_the_key_projection(
    smollm2: circuitlab.ModelHandle, plain_transformers_model: Callable[[str], torch.nn.Module]
) -> None:
    """Scaling key/value head 1's keys in plain transformers changes query heads 3-5 only."""
    assert (smollm2.n_heads, smollm2.n_kv_heads) == (9, 3)
    reference = plain_transformers_model(smollm2.name)
    ids = smollm2.tokenize(PROMPT).row(0)
    before = _attentions(reference, ids)[17]
    with torch.no_grad():
        reference.model.layers[17].self_attn.k_proj.weight[64:128] *= 3.0
    after = _attentions(reference, ids)[17]
    changed = [h for h in range(9) if not torch.allclose(after[h], before[h], atol=1e-4)]
    assert changed == [3, 4, 5]
    frame = attention_pattern(smollm2, PROMPT, layer=17).to_frame()
    assert sorted(set(frame.query("kv_group == 1")["head_index"])) == changed


def test_smollm2_induction_heads_on_repeated_random_tokens(
    smollm2: circuitlab.ModelHandle,
) -> None:
    """Measured (seed 0, 16 × 2 × 24 tokens): L18H6 0.89, L17H4 0.79, L17H3 0.77, L17H5 0.74
    (the three layer-17 heads share key/value head 1)."""
    summary = head_summary(smollm2)
    induction = summary.values("induction")
    strong = [head for head, value in summary.top("induction", 10) if value > 0.5]
    assert len(strong) >= 3, summary.top("induction", 10)
    assert float(induction.mean()) < 0.15  # the high scores are specific heads, not everyone
    for head in strong:  # an induction head looks one token past the copy, not at the copy
        assert summary.score_of(head, "same_token") < summary.score_of(head, "induction")
    top = summary.top("previous_token", 1)[0]
    assert top[1] > 0.8  # and there are previous-token heads (the other half of the circuit)


def test_html_and_figure_escape_real_tokens(real: circuitlab.ModelHandle) -> None:
    prompt = 'A <b>bold</b> & "quoted" price of $5'
    view = attention_pattern(real, prompt, "L0H0")
    page = view.to_html()
    for token in view.tokens:
        assert html.escape(token) in page
    assert "<b>" not in page and "http" not in page and "src=" not in page
    labels = [label.get_text() for label in view.plot().axes[0].get_xticklabels()]
    assert any(r"\$" in label for label in labels)
