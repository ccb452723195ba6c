"""The logit lens on the embedded real models: the last layer is the model's own output, every
layer equals plain transformers' final norm and lm_head on its hidden state, and the cached
final-norm scale (the TransformerLens pitfall) would give other distributions."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import circuitlab
from circuitlab.lens import lens_logits, logit_lens

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_logit_lens import _check_against, _plain_lens, _with_cached_final_scale

pytestmark = pytest.mark.real_model

PROMPT = "The capital of France is"
TARGETS = [" Paris", " London"]


def test_last_layer_is_the_model_output(real: circuitlab.ModelHandle) -> None:
    lens = logit_lens(real, PROMPT, TARGETS, positions="all", layers=real.n_layers - 1)
    _check_against(lens, real.logits(PROMPT)[0].float(), prompt=0, row=0)


def test_every_layer_equals_plain_transformers(
    real: circuitlab.ModelHandle, plain_transformers_model: Callable[[str], torch.nn.Module]
) -> None:
    lens = logit_lens(real, PROMPT, TARGETS, positions="all")
    plain = _plain_lens(plain_transformers_model(real.name), real.tokenize(PROMPT))
    assert len(plain) == lens.n_layers == real.n_layers + 1
    for row, logits in enumerate(plain):
        _check_against(lens, logits[0], prompt=0, row=row)


def test_the_cached_final_scale_would_mislead(real: circuitlab.ModelHandle) -> None:
    """Dividing a middle layer's residual stream by the final norm's cached scale (what
    TransformerLens's ``apply_ln_to_stack`` does) reads a distribution far from the lens's."""
    _, last = _with_cached_final_scale(real, PROMPT, real.n_layers - 1)
    torch.testing.assert_close(last, real.logits(PROMPT)[0], atol=1e-3, rtol=0)
    layer = real.n_layers // 2
    residual, cached = _with_cached_final_scale(real, PROMPT, layer)
    ours = lens_logits(real, residual).softmax(-1)
    lens = logit_lens(real, PROMPT, positions="all", layers=layer, k=1)
    torch.testing.assert_close(lens.top_probs[0, :, 0, 0], ours.max(-1).values)
    gap = (cached.softmax(-1) - ours).abs().max(-1).values
    assert float(gap.max()) > 0.05  # SmolLM2 0.68, Gemma 3 0.09 at the middle layer


def test_smollm2_settles_on_paris_in_its_last_layers(smollm2: circuitlab.ModelHandle) -> None:
    lens = logit_lens(smollm2, PROMPT, " Paris")
    ranks = lens.target_ranks[0, 0, :, 0]
    assert int(ranks[-1]) == 0 and int(ranks[0]) > 100
