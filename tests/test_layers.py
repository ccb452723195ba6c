"""Layer importance on tiny models: AVSS against a hook-free computation, baselines, bad input."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import circuitlab
from circuitlab.errors import InputError
from circuitlab.layers import (
    LayerScores,
    check_percent,
    drop_last_scores,
    layers_to_remove,
    random_scores,
    score_layers,
)
from circuitlab.model import ModelHandle
from circuitlab.testing import tiny_hf_model
from circuitlab.tokenization import TokenBatch

TEXTS = [
    "the cat sat on the mat . the dog sat on the cat",
    "paris is the capital city of france",
    "this movie was really good , a great film",
    "no",
    "is the sky blue or green ? the sky is blue .",
] * 3


def handle_and_reference(architecture: str) -> tuple[ModelHandle, torch.nn.Module]:
    """A handle and an untouched copy of the same HF model whose final norm is the identity.

    ``output_hidden_states`` of the copy then gives every block's raw output: the hook-free
    reference of what the statistics measure.
    """
    hf_model, tokenizer = tiny_hf_model(architecture)
    reference = copy.deepcopy(hf_model)
    base = reference.base_model
    for name in ("norm", "ln_f"):
        if hasattr(base, name):
            setattr(base, name, torch.nn.Identity())
    return ModelHandle(hf_model, tokenizer, name=f"tiny-{architecture}"), reference


def reference_statistics(
    reference: torch.nn.Module, batch: TokenBatch, epsilon: float
) -> dict[str, np.ndarray]:
    """Every statistic computed at once from all activations, by the formulas, no hooks."""
    with torch.no_grad():
        hidden = reference(
            batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True
        ).hidden_states
    mask = batch.attention_mask.bool()
    variance, sparsity, influence, angular = [], [], [], []
    for layer in range(len(hidden) - 1):
        inputs = hidden[layer][mask].double()
        outputs = hidden[layer + 1][mask].double()
        values = outputs.flatten()
        variance.append(float(((values - values.mean()) ** 2).mean()))
        sparsity.append(float((values.abs() < epsilon).double().mean()))
        cosine = (inputs * outputs).sum(-1) / (inputs.norm(dim=-1) * outputs.norm(dim=-1))
        cosine = cosine.clamp(-1, 1)
        influence.append(float((1 - cosine).mean()))
        angular.append(float((torch.arccos(cosine) / math.pi).mean()))
    variance_array = np.array(variance)
    nav = variance_array / variance_array.sum()
    avss = nav / np.maximum(np.array(sparsity), 1e-6)
    navss = avss / avss.sum()
    order = np.argsort(avss)
    cavss = np.empty_like(navss)
    cavss[order] = np.cumsum(navss[order])
    return {
        "variance": variance_array,
        "sparsity": np.array(sparsity),
        "nav": nav,
        "avss": avss,
        "navss": navss,
        "cavss": cavss,
        "block_influence": np.array(influence),
        "angular_distance": np.array(angular),
    }


# ------------------------------------------------------------ against the formulas
def test_scores_match_a_hook_free_computation(tiny_architecture: str) -> None:
    model, reference = handle_and_reference(tiny_architecture)
    epsilon = 0.05
    batch = model.tokenize(TEXTS)
    expected = reference_statistics(reference, batch, epsilon)
    scores = score_layers(model, batch, epsilon=epsilon, batch_size=4)
    avss = scores["avss"]
    # The bridge runs the same modules as HF; batches of other shapes (length-sorted, trimmed
    # to their longest row) move float32 activations by ~1e-8 relative. GPT-2 is the
    # exception: the bridge splits its fused c_attn projection, which moves them by ~1e-7.
    rtol = 1e-6 if tiny_architecture == "gpt2" else 1e-7
    for name in ("variance", "sparsity", "nav", "navss", "cavss"):
        np.testing.assert_allclose(avss.details[name], expected[name], rtol=rtol, atol=0)
    np.testing.assert_allclose(avss.values, expected["avss"], rtol=rtol, atol=0)
    alone = score_layers(model, batch, ("avss",), epsilon=epsilon, batch_size=4)["avss"]
    assert alone.values == avss.values  # without the cosine hooks: the same numbers
    for name in ("block_influence", "angular_distance"):
        np.testing.assert_allclose(scores[name].values, expected[name], rtol=rtol, atol=1e-12)
    assert avss.settings["tokens"] == int(batch.attention_mask.sum())


def test_streaming_does_not_depend_on_batching_or_padding() -> None:
    model, _ = handle_and_reference("llama")
    one_by_one = score_layers(model, TEXTS, batch_size=1)
    together = score_layers(model, TEXTS, batch_size=16)
    for method in ("avss", "block_influence", "angular_distance"):  # float32 forward: 1e-6
        np.testing.assert_allclose(one_by_one[method].values, together[method].values, rtol=1e-6)
    batch = model.tokenize(TEXTS)
    junk = batch.input_ids.masked_fill(batch.attention_mask == 0, 7)  # other padding ids
    padded = TokenBatch(junk, batch.attention_mask)
    np.testing.assert_allclose(
        score_layers(model, padded, batch_size=16)["avss"].values,
        together["avss"].values,
        rtol=1e-10,
    )


def test_branch_sites_measure_what_the_branches_write() -> None:
    model, _ = handle_and_reference("gemma3")
    batch = model.tokenize(TEXTS[:5])
    mask = batch.attention_mask.bool()
    for site, hook in (("attn", "hook_attn_out"), ("mlp", "hook_mlp_out")):
        scores = score_layers(model, batch, ("avss",), site=site)["avss"]
        _, cache = model.run_with_cache(batch, [f"blocks.{i}.{hook}" for i in range(2)])
        for layer in range(2):
            values = cache[f"blocks.{layer}.{hook}"][mask].double().flatten()
            assert scores.details["variance"][layer] == pytest.approx(
                float(values.var(unbiased=False)), rel=1e-9
            )
        assert scores.settings["site"] == site


def test_zero_sparsity_is_guarded_and_noted() -> None:
    model, _ = handle_and_reference("llama")
    scores = score_layers(model, TEXTS, ("avss",), epsilon=0.0)["avss"]
    assert all(math.isfinite(value) for value in scores.values)
    assert scores.details["sparsity"] == (0.0, 0.0)
    assert scores.notes and "floor" in scores.notes[0]
    nav = np.array(scores.details["nav"])
    np.testing.assert_allclose(scores.values, nav / circuitlab.layers.DEFAULT_SPARSITY_FLOOR)


# ------------------------------------------------------------------- baselines
def test_random_and_drop_last_baselines() -> None:
    assert random_scores(10, seed=3).values == random_scores(10, seed=3).values
    assert random_scores(10, seed=3).values != random_scores(10, seed=4).values
    assert sorted(random_scores(10, seed=3).values) == list(range(10))
    assert drop_last_scores(8).lowest(25) == (6, 7)
    model, _ = handle_and_reference("llama")
    scores = score_layers(model, TEXTS, ("random", "drop_last"), seed=5)
    assert list(scores) == ["random", "drop_last"]
    assert scores["random"].values == random_scores(2, seed=5).values


# ---------------------------------------------------------------- LayerScores
def test_layer_scores_ranking_selection_and_storage(tmp_path: Path) -> None:
    scores = LayerScores("avss", [0.5, 0.1, 0.9, 0.1, 0.3, 0.7, 0.2, 0.8], model="m")
    assert scores.ranking == (1, 3, 6, 4, 0, 5, 7, 2)  # ties keep layer order
    assert scores.lowest(25) == (1, 3)
    assert scores.highest(25) == (2, 7)
    assert scores.lowest(10) == (1,)  # 0.8 layers rounds to one, never zero
    assert scores.pruning(25).layers == (1, 3)
    frame = scores.to_frame()
    assert list(frame["rank"]) == [4, 0, 7, 1, 3, 5, 2, 6]
    figure = scores.plot(25)
    assert isinstance(figure, Figure)
    colors = [patch.get_facecolor() for patch in figure.axes[0].patches]
    assert colors[1] == colors[3] != colors[0]
    path = scores.save(tmp_path / "scores.json")
    assert LayerScores.load(path) == scores
    assert scores.spearman(scores) == pytest.approx(1.0)
    assert scores.spearman([-v for v in scores.values]) == pytest.approx(-1.0)
    assert math.isnan(scores.spearman([1.0] * 8))
    with pytest.raises(InputError, match="8 layer scores with 3"):
        scores.spearman([1, 2, 3])
    with pytest.raises(InputError, match="finite"):
        LayerScores("x", [1.0, math.inf])


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("k", [0, 100, -5, 150, math.nan, math.inf, "25"])
def test_k_outside_0_100_is_refused(k: object) -> None:
    with pytest.raises(InputError, match="k"):
        check_percent(k)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        drop_last_scores(30).lowest(k)  # type: ignore[arg-type]


def test_pruning_that_leaves_no_layers_is_refused() -> None:
    assert layers_to_remove(30, 25) == 8 and layers_to_remove(18, 25) == 5
    with pytest.raises(InputError, match="leaves no layers"):
        layers_to_remove(2, 80)
    with pytest.raises(InputError, match="leaves no layers"):
        layers_to_remove(30, 99)
    model, _ = handle_and_reference("llama")
    with pytest.raises(InputError, match="leaves no layers"):
        circuitlab.pruning_study(model, [drop_last_scores(2)], percents=[80], ground_truth=False)


def test_empty_and_all_padding_data_are_refused() -> None:
    model, _ = handle_and_reference("llama")
    with pytest.raises(InputError, match="empty"):
        score_layers(model, [])
    with pytest.raises(InputError, match="no tokens"):
        score_layers(model, ["", ""])  # the tiny tokenizer adds no BOS: zero tokens
    batch = model.tokenize(TEXTS[:3])
    all_padding = TokenBatch(batch.input_ids, torch.zeros_like(batch.attention_mask))
    with pytest.raises(InputError, match="all padding"):
        score_layers(model, all_padding)


@pytest.mark.parametrize("epsilon", [-0.1, math.nan, math.inf, -math.inf, "0.1"])
def test_negative_or_non_finite_epsilon_is_refused(epsilon: object) -> None:
    model, _ = handle_and_reference("llama")
    with pytest.raises(InputError, match="epsilon"):
        score_layers(model, TEXTS, epsilon=epsilon)  # type: ignore[arg-type]


def test_other_bad_settings_are_refused() -> None:
    model, _ = handle_and_reference("llama")
    with pytest.raises(InputError, match="Unknown site"):
        score_layers(model, TEXTS, site="resid")
    with pytest.raises(InputError, match="ground_truth_scores"):
        score_layers(model, TEXTS, ("avss", "ground_truth"))
    with pytest.raises(InputError, match="No scoring method"):
        score_layers(model, TEXTS, ())
    with pytest.raises(InputError, match="window"):
        score_layers(model, TEXTS, window=1)
    with pytest.raises(InputError, match="another model"):
        circuitlab.pruning_study(model, [drop_last_scores(5)], ground_truth=False)
