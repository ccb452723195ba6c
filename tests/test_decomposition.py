"""Exactness of the residual decomposition and direct logit attribution on tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from circuitlab import (
    Attribution,
    Head,
    InputError,
    LogitDiff,
    Mlp,
    decompose_residual,
    direct_logit_attribution,
)
from circuitlab.testing import tiny_model

PROMPTS = ["the cat sat on the mat", "yes", "the capital of france is paris", "a dog ."]


def test_contributions_sum_to_the_final_residual(tiny_architecture: str) -> None:
    model = tiny_model(tiny_architecture)
    parts = decompose_residual(model, PROMPTS, batch_size=3)
    assert parts.contributions.shape[:2] == (len(PROMPTS), len(parts.components))
    torch.testing.assert_close(parts.total(), parts.residual, atol=1e-5, rtol=0)
    lengths = model.tokenize(PROMPTS).lengths
    assert parts.positions.tolist() == (lengths - 1).tolist()  # each prompt's last real token
    _, cache = model.run_with_cache(PROMPTS, names=[f"blocks.{model.n_layers - 1}.hook_resid_post"])
    rows = torch.arange(len(PROMPTS))
    expected = cache[f"blocks.{model.n_layers - 1}.hook_resid_post"][rows, parts.positions]
    torch.testing.assert_close(parts.residual, expected, atol=1e-5, rtol=0)


def test_per_head_contributions_match_a_hand_written_einsum(tiny_architecture: str) -> None:
    model = tiny_model(tiny_architecture)
    parts = decompose_residual(model, PROMPTS[:1])
    names = ["blocks.1.attn.hook_z", "blocks.1.hook_mlp_out", "blocks.1.ln1_post.hook_scale"]
    names = [n for n in names if n in model.hook_names()]
    _, cache = model.run_with_cache(PROMPTS[:1], names=names)
    z = cache["blocks.1.attn.hook_z"][0, -1]  # [head, d_head]
    w_o = model.hf_model.get_submodule(_o_proj_path(tiny_architecture)).weight
    for head in range(model.n_heads):
        columns = slice(head * model.d_head, (head + 1) * model.d_head)
        if tiny_architecture == "gpt2":  # Conv1D: weight is [in, out]
            by_hand = z[head] @ w_o[columns]
        else:
            by_hand = w_o[:, columns] @ z[head]
        if "blocks.1.ln1_post.hook_scale" in names:  # Gemma: the branch norm, scale frozen
            norm = model.hf_model.model.layers[1].post_attention_layernorm
            by_hand = by_hand / cache["blocks.1.ln1_post.hook_scale"][0, -1] * (1 + norm.weight)
        index = parts.components.index(Head(1, head))
        torch.testing.assert_close(parts.contributions[0, index], by_hand, atol=1e-5, rtol=0)
    mlp = parts.contributions[0, parts.components.index(Mlp(1))]
    torch.testing.assert_close(mlp, cache["blocks.1.hook_mlp_out"][0, -1], atol=0, rtol=0)


def _o_proj_path(architecture: str) -> str:
    return (
        "transformer.h.1.attn.c_proj"
        if architecture == "gpt2"
        else "model.layers.1.self_attn.o_proj"
    )


def test_attributions_plus_constant_equal_the_logits(tiny_architecture: str) -> None:
    model = tiny_model(tiny_architecture)
    targets = ["paris", LogitDiff("yes", "no"), 7]
    result = direct_logit_attribution(model, PROMPTS, targets, batch_size=3)
    assert result.values.shape == (len(PROMPTS), len(result.components), 3)
    assert result.reconstruction_error() <= 1e-5
    ids = model.token_ids(["paris", "yes", "no"])
    logits = model.next_token_logits(PROMPTS)
    expected = torch.stack(
        [logits[:, ids[0]], logits[:, ids[1]] - logits[:, ids[2]], logits[:, 7]], dim=1
    )
    torch.testing.assert_close(result.values.sum(1) + result.constant, expected, atol=1e-5, rtol=0)
    if model.arch.norm_type == "rmsnorm" and model.hf_model.get_output_embeddings().bias is None:
        assert result.constant.abs().max() == 0  # nothing else writes to the logits


def test_identity_hook_changes_nothing() -> None:
    model = tiny_model("gemma3")
    before = direct_logit_attribution(model, PROMPTS, "paris")
    with model.hooks([("blocks.0.hook_attn_out", lambda activation, hook: activation)]):
        during = direct_logit_attribution(model, PROMPTS, "paris")
    torch.testing.assert_close(during.values, before.values, atol=0, rtol=0)


def test_positions_choose_the_token(tiny_architecture: str) -> None:
    model = tiny_model(tiny_architecture)
    last = decompose_residual(model, PROMPTS, positions=-1)
    default = decompose_residual(model, PROMPTS)
    torch.testing.assert_close(last.contributions, default.contributions, atol=0, rtol=0)
    first = decompose_residual(model, PROMPTS, positions=0)
    assert first.positions.tolist() == [0, 0, 0, 0]
    mixed = decompose_residual(model, PROMPTS, positions=[1, 0, -2, 2], batch_size=2)
    lengths = model.tokenize(PROMPTS).lengths.tolist()
    assert mixed.positions.tolist() == [1, 0, lengths[2] - 2, 2]
    alone = decompose_residual(model, ["the cat sat on the mat"], positions=1)
    torch.testing.assert_close(mixed.contributions[0], alone.contributions[0], atol=1e-5, rtol=0)


def test_bad_positions() -> None:
    model = tiny_model("llama")
    with pytest.raises(InputError, match=r"Position 3 is out of range for prompt 1, which has 1 "):
        decompose_residual(model, PROMPTS, positions=3)
    with pytest.raises(InputError, match=r"Position -2 is out of range for prompt 1"):
        direct_logit_attribution(model, PROMPTS, "paris", positions=-2)
    with pytest.raises(InputError, match="Got 2 positions for 4 prompts"):
        decompose_residual(model, PROMPTS, positions=[0, 0])


def test_bad_targets_and_prompts() -> None:
    model = tiny_model("llama")
    with pytest.raises(InputError, match=r"'paris france' is 2 tokens"):
        direct_logit_attribution(model, PROMPTS, "paris france")
    with pytest.raises(InputError, match="out of range for a vocabulary"):
        direct_logit_attribution(model, PROMPTS, 10_000)
    with pytest.raises(InputError, match="No targets"):
        direct_logit_attribution(model, PROMPTS, [])
    with pytest.raises(InputError, match="No prompts"):
        direct_logit_attribution(model, [], "paris")
    with pytest.raises(InputError, match="No prompts"):
        decompose_residual(model, [])


def test_attribution_tables_files_and_figures(tmp_path: Path) -> None:
    model = tiny_model("gpt2")
    result = direct_logit_attribution(model, PROMPTS, ["paris", LogitDiff("yes", "no")])
    scores = result.scores("paris")
    assert torch.equal(scores, result.values[:, :, 0].mean(0))
    top = result.top(3)
    assert [value for _, value in top] == sorted(scores.tolist(), reverse=True)[:3]
    assert result.bottom(1)[0][1] == min(scores.tolist())
    assert result.score_of("L1H2") == pytest.approx(
        float(scores[result.components.index(Head(1, 2))])
    )
    assert result.head_matrix(1).shape == (2, 4)
    frame = result.to_frame()
    assert len(frame) == len(PROMPTS) * len(result.components) * 2
    assert set(frame.columns) == {"prompt", "component", "target", "attribution"}
    path = result.save(tmp_path / "dla.safetensors")
    loaded = Attribution.load(path)
    assert loaded.components == result.components and loaded.targets == result.targets
    assert loaded.prompts == result.prompts
    torch.testing.assert_close(loaded.values, result.values, atol=0, rtol=0)
    heatmap = result.plot_heads()
    axes = heatmap.axes[0]
    assert axes.get_xlabel() == "head" and axes.get_ylabel() == "layer"
    assert "paris" in axes.get_title()
    colorbar = heatmap.axes[1]
    low, high = colorbar.get_ylim()
    assert low == pytest.approx(-high)  # diverging, centred on zero
    heatmap.savefig(tmp_path / "heads.png")
    bars = result.plot(5, column=1)
    assert len(bars.axes[0].patches) == 5
    bars.savefig(tmp_path / "top.png")
    assert (tmp_path / "heads.png").stat().st_size > 1000
    with pytest.raises(InputError, match="Unknown target"):
        result.scores("london")
    with pytest.raises(InputError, match="not part of this result"):
        result.score_of("L9H0")
    with pytest.raises(InputError, match="does not hold a circuitlab"):
        from circuitlab import ComponentAccuracy

        ComponentAccuracy.load(path)


def test_transformerlens_cross_check(tiny_architecture: str) -> None:
    """TransformerLens's get_full_resid_decomposition agrees where it applies; where a model
    normalises each branch output (Gemma 3) TL's head rows are the pre-norm outputs and do not
    sum to the residual, while circuitlab's do."""
    model = tiny_model(tiny_architecture)
    ours = decompose_residual(model, PROMPTS[0])
    batch = model.tokenize(PROMPTS[0])
    with torch.no_grad():
        _, cache = model.bridge.run_with_cache(batch.input_ids)
        stack, labels = cache.get_full_resid_decomposition(
            expand_neurons=False, return_labels=True, pos_slice=-1
        )
    theirs = {label: stack[i, 0].reshape(-1) for i, label in enumerate(labels)}
    heads = [(i, c) for i, c in enumerate(ours.components) if isinstance(c, Head)]
    tl_sum = stack[:, 0].reshape(len(labels), -1).sum(0)
    if model.arch.has_branch_norms:
        scale = cache["blocks.1.ln1_post.hook_scale"][0, -1]
        gain = model.hf_model.model.layers[1].post_attention_layernorm.weight + 1
        for index, component in heads:
            if component.layer == 1:
                pre_norm = ours.contributions[0, index] * scale / gain
                torch.testing.assert_close(pre_norm, theirs[str(component)], atol=1e-5, rtol=0)
        assert (tl_sum - ours.residual[0]).abs().max() > 1e-2
    else:
        for index, component in heads:
            torch.testing.assert_close(
                ours.contributions[0, index], theirs[str(component)], atol=1e-5, rtol=0
            )
        torch.testing.assert_close(tl_sum, ours.residual[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.total()[0], ours.residual[0], atol=1e-5, rtol=0)
