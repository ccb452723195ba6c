"""Activation and attribution patching on the embedded real models, against plain transformers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from circuitlab import ModelHandle, sites
from circuitlab.components import Head
from circuitlab.interventions import Patch
from circuitlab.patching import PromptPair, activation_patching, attribution_patching

pytestmark = pytest.mark.real_model

CAPITALS = [
    PromptPair("The capital of France is", "The capital of Italy is", " Paris", " Rome"),
    PromptPair("The capital of Germany is", "The capital of Japan is", " Berlin", " Tokyo"),
]


def test_a_head_patch_equals_a_hook_on_plain_transformers(
    real: ModelHandle, plain_transformers_model: Callable[[str], torch.nn.Module]
) -> None:
    reference = plain_transformers_model(real.name)
    layer, head, d_head = real.n_layers // 2, real.n_heads - 1, real.d_head
    columns = slice(head * d_head, (head + 1) * d_head)
    projection = reference.get_submodule(f"model.layers.{layer}.self_attn.o_proj")
    clean, corrupted = real.tokenize([CAPITALS[0].clean]), real.tokenize([CAPITALS[0].corrupted])
    captured: dict[str, torch.Tensor] = {}

    def capture(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        captured["z"] = args[0].detach().clone()

    def write(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        z = args[0].clone()
        z[..., columns] = captured["z"][..., columns]
        return (z,)

    with torch.no_grad():
        handle = projection.register_forward_pre_hook(capture)
        reference(clean.input_ids)
        handle.remove()
        handle = projection.register_forward_pre_hook(write)
        expected = reference(corrupted.input_ids).logits
        handle.remove()
    with real.intervene(Patch(Head(layer, head), source=[CAPITALS[0].clean])):
        patched = real.logits([CAPITALS[0].corrupted])
    torch.testing.assert_close(patched, expected, atol=1e-4, rtol=0)
    assert (patched - real.logits([CAPITALS[0].corrupted])).abs().max() > 1e-3


def test_self_patches_change_nothing_and_layer_0_reproduces_the_source(real: ModelHandle) -> None:
    prompts = [pair.corrupted for pair in CAPITALS]
    before = real.logits(prompts)
    middle = real.n_layers // 2
    with real.intervene(
        Patch(sites.resid_pre(middle), source=prompts), Patch(sites.z(middle + 1), source=prompts)
    ):
        assert torch.equal(real.logits(prompts), before)
    with real.intervene(Patch(sites.resid_pre(0), source=[pair.clean for pair in CAPITALS])):
        patched = real.logits(prompts)
    assert torch.equal(patched, real.logits([pair.clean for pair in CAPITALS]))


LANDMARKS = [
    PromptPair(
        "The Eiffel Tower is in the city of", "The Colosseum is in the city of", " Paris", " Rome"
    ),
    PromptPair(
        "The Colosseum is in the city of", "The Eiffel Tower is in the city of", " Rome", " Paris"
    ),
]


def test_the_residual_map_moves_from_the_landmark_to_the_last_token(real: ModelHandle) -> None:
    last = real.n_layers - 1
    result = activation_patching(real, LANDMARKS, site="resid_post", layers=[0, last])
    normalised = result.normalised
    # at the top only the last position matters: patching it restores the clean run exactly
    torch.testing.assert_close(normalised[:, 1, -1], torch.ones(2), atol=1e-4, rtol=0)
    # at layer 0 the answer lives on the landmark's tokens, not on the shared words
    tokens = real.to_str_tokens(LANDMARKS[0].clean)
    landmark = [i for i, token in enumerate(tokens) if token.strip() in ("E", "iffel", "Tower")]
    assert int(result.mean()[0].argmax()) in landmark
    assert (result.clean > 0).all() and (result.corrupted < 0).all()
    assert result.sem().shape == (2, len(tokens))


def test_attribution_patching_ranks_components_like_exact_patching(real: ModelHandle) -> None:
    result = attribution_patching(real, LANDMARKS, exact=True)
    assert len(result.components) == 1 + real.n_layers * (real.n_heads + 1)
    assert result.spearman > 0.5, result.spearman
