"""Activation patching, attribution patching and position-matched mean ablation (tiny models).

Ground truth: the unpatched runs themselves (a self-patch changes nothing, patching the whole
input reproduces the source run), hand-written hooks on plain ``transformers`` models, and a
model made linear in the patched activation, where the gradient estimate is exact.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from circuitlab import InputError, ModelHandle, sites
from circuitlab.components import Head, Mlp
from circuitlab.interventions import Ablate, Patch, export_hf
from circuitlab.interventions.bake import BakeError
from circuitlab.patching import (
    AttributionPatching,
    PatchingMap,
    PromptPair,
    activation_patching,
    attribution_patching,
    load_pairs,
)
from circuitlab.testing import tiny_hf_model, tiny_model

CLEAN, CORRUPTED = "the cat sat on the", "the dog sat on the"
PAIRS = [
    PromptPair(CLEAN, CORRUPTED, "mat", "rug"),
    PromptPair("a cat sat on a", "a dog sat on a", "mat", "rug"),
]
KINDS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z")


def _o_proj(model: torch.nn.Module, architecture: str, layer: int) -> torch.nn.Module:
    path = (
        f"transformer.h.{layer}.attn.c_proj"
        if architecture == "gpt2"
        else f"model.layers.{layer}.self_attn.o_proj"
    )
    return model.get_submodule(path)


# ------------------------------------------------------------------ exactness
@pytest.mark.parametrize("kind", KINDS)
def test_patching_a_site_with_the_same_prompt_changes_nothing(
    tiny_architecture: str, kind: str
) -> None:
    model = tiny_model(tiny_architecture)
    prompts = [CLEAN, "a dog sat on a mat ."]
    before = model.logits(prompts)
    with model.intervene(Patch(sites.Site(kind, 1), source=prompts)):
        after = model.logits(prompts)
    assert torch.equal(before, after)


def test_patching_every_position_of_layer_0_reproduces_the_source_run(
    tiny_architecture: str,
) -> None:
    model = tiny_model(tiny_architecture)
    source = model.logits([CLEAN])
    assert not torch.equal(model.logits([CORRUPTED]), source)
    with model.intervene(Patch(sites.resid_pre(0), source=[CLEAN])):
        patched = model.logits([CORRUPTED])
    assert torch.equal(patched, source)


def test_a_head_patch_equals_a_hook_on_plain_transformers(tiny_architecture: str) -> None:
    hf_model, tokenizer = tiny_hf_model(tiny_architecture)
    reference = copy.deepcopy(hf_model)
    model = ModelHandle(hf_model, tokenizer, name=tiny_architecture)
    layer, head, d_head = 1, 2, model.d_head
    columns = slice(head * d_head, (head + 1) * d_head)
    projection = _o_proj(reference, tiny_architecture, layer)
    captured: dict[str, torch.Tensor] = {}

    def capture(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        captured["z"] = args[0].detach().clone()

    def write(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        z = args[0].clone()
        z[:, -1, columns] = captured["z"][:, -1, columns]
        return (z,)

    with torch.no_grad():
        handle = projection.register_forward_pre_hook(capture)
        reference(torch.tensor([tokenizer(CLEAN).input_ids]))
        handle.remove()
        handle = projection.register_forward_pre_hook(write)
        expected = reference(torch.tensor([tokenizer(CORRUPTED).input_ids])).logits
        handle.remove()
    with model.intervene(Patch(Head(layer, head), source=[CLEAN], positions=-1)):
        patched = model.logits([CORRUPTED])
    torch.testing.assert_close(patched, expected, atol=1e-4, rtol=0)
    assert (patched - model.logits([CORRUPTED])).abs().max() > 1e-3  # the patch did something


def _freeze_downstream(model: ModelHandle, architecture: str) -> list:
    """Hooks that make the logits linear in the last layer's head outputs and MLP output:
    the final norm's scale (and Gemma's branch-norm scale) held constant."""

    def constant(value: torch.Tensor, hook: object) -> torch.Tensor:
        return torch.full_like(value, 2.0)

    last = model.n_layers - 1
    frozen = [(sites.norm_scale("ln_final"), constant)]
    if architecture == "gemma3":
        frozen.append((sites.norm_scale("ln1_post", last), constant))
    return frozen


def test_attribution_patching_is_exact_where_the_model_is_linear(tiny_architecture: str) -> None:
    model = tiny_model(tiny_architecture)
    last = model.n_layers - 1
    with (
        warnings.catch_warnings(),
        model.hooks(_freeze_downstream(model, tiny_architecture)),
        model.intervene(Ablate(Mlp(last))),  # the last MLP would read the heads' outputs
    ):
        warnings.simplefilter("ignore")  # TransformerLens notes the edited norm scale
        result = attribution_patching(model, PAIRS, exact=True)
    chosen = [i for i, c in enumerate(result.components) if isinstance(c, Head) and c.layer == last]
    assert result.exact is not None
    torch.testing.assert_close(
        result.estimates[:, chosen], result.exact[:, chosen], atol=1e-4, rtol=1e-4
    )
    assert result.exact[:, chosen].abs().max() > 1e-2


def test_attribution_patching_of_an_mlp_is_exact_under_a_frozen_final_norm() -> None:
    model = tiny_model("llama")
    with warnings.catch_warnings(), model.hooks(_freeze_downstream(model, "llama")):
        warnings.simplefilter("ignore")
        result = attribution_patching(model, PAIRS, exact=True)
    index = result.components.index(Mlp(model.n_layers - 1))
    assert result.exact is not None
    torch.testing.assert_close(
        result.estimates[:, index], result.exact[:, index], atol=1e-4, rtol=1e-4
    )


# ------------------------------------------------------------------ sweeps
def test_a_position_sweep_equals_one_patch_per_forward_pass() -> None:
    model = tiny_model("llama")
    result = activation_patching(model, PAIRS, site="resid_pre", batch_size=7)
    assert isinstance(result, PatchingMap)
    assert result.values.shape == (2, model.n_layers, 5)
    answer, wrong = model.token_id("mat"), model.token_id("rug")
    for p, pair in enumerate(PAIRS):
        for layer in range(model.n_layers):
            for position in range(5):
                patch = Patch(sites.resid_pre(layer), source=[pair.clean], positions=position)
                with model.intervene(patch):
                    logits = model.next_token_logits([pair.corrupted])[0]
                expected = float(logits[answer] - logits[wrong])
                assert result.values[p, layer, position].item() == pytest.approx(expected, abs=1e-5)
    clean = model.next_token_logits([pair.clean for pair in PAIRS])
    torch.testing.assert_close(result.clean, clean[:, answer] - clean[:, wrong])


def test_a_head_sweep_equals_one_head_patch_per_forward_pass() -> None:
    model = tiny_model("gpt2")
    result = activation_patching(model, PAIRS, site="z", positions=[-1, -2], direction="noise")
    assert result.column_kind == "head" and result.patched_positions == (3, 4)
    mask = torch.zeros(1, 5, dtype=torch.bool)
    mask[0, 3:] = True
    answer, wrong = model.token_id("mat"), model.token_id("rug")
    for layer in range(model.n_layers):
        for head in range(model.n_heads):
            with model.intervene(
                Patch(sites.z(layer), source=[PAIRS[1].corrupted], head=head, positions=mask)
            ):
                logits = model.next_token_logits([PAIRS[1].clean])[0]
            expected = float(logits[answer] - logits[wrong])
            assert result.values[1, layer, head].item() == pytest.approx(expected, abs=1e-5)


def test_normalised_effect_is_one_for_a_full_restore_and_zero_for_nothing() -> None:
    model = tiny_model("llama")
    result = activation_patching(model, PAIRS, site="resid_pre", layers=[0])
    normalised = result.normalised
    # the changed word sits at position 1: patching it at layer 0 restores the clean run
    torch.testing.assert_close(normalised[:, 0, 1], torch.ones(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(normalised[:, 0, 0], torch.zeros(2), atol=1e-5, rtol=0)
    mean, sem = result.mean(), result.sem()
    assert mean.shape == sem.shape == (1, 5)
    expected_sem = normalised[:, 0, 3].std() / 2**0.5
    assert sem[0, 3].item() == pytest.approx(expected_sem.item(), abs=1e-6)


def test_custom_metrics_and_the_other_built_in_metrics() -> None:
    model = tiny_model("llama")
    answer = model.token_id("mat")

    def log_prob(logits: torch.Tensor) -> torch.Tensor:
        return logits.log_softmax(dim=-1)[:, answer]

    ours = activation_patching(model, PAIRS, log_prob, site="mlp_out")
    built_in = activation_patching(model, PAIRS, "log_prob", site="mlp_out")
    torch.testing.assert_close(ours.values, built_in.values)
    with_pairs = activation_patching(
        model, PAIRS, lambda logits, pairs: logits[:, answer] + pairs, site="mlp_out", layers=[1]
    )
    assert with_pairs.clean[1] - with_pairs.clean[0] != 0


def test_interventions_in_force_stay_under_the_sweep() -> None:
    model = tiny_model("llama")
    plain = activation_patching(model, PAIRS, site="attn_out")
    with model.intervene(Ablate("MLP0")):
        ablated = activation_patching(model, PAIRS, site="attn_out")
        clean = model.next_token_logits([PAIRS[0].clean])[0]
    assert not torch.allclose(plain.values, ablated.values)
    expected = clean[model.token_id("mat")] - clean[model.token_id("rug")]
    assert ablated.clean[0].item() == pytest.approx(expected.item(), abs=1e-5)


def test_patch_composes_and_is_reversible() -> None:
    model = tiny_model("llama")
    before = model.logits([CORRUPTED])
    with model.intervene(Patch(sites.resid_post(0), source=[CLEAN]), Ablate("L1H0")):
        inside = model.logits([CORRUPTED])
    assert not torch.equal(inside, before)
    assert torch.equal(model.logits([CORRUPTED]), before)


def test_results_round_trip_and_show_themselves(tmp_path) -> None:
    model = tiny_model("llama")
    result = activation_patching(model, PAIRS, site="resid_pre")
    path = result.save(tmp_path / "map.safetensors")
    again = PatchingMap.load(path)
    assert torch.equal(again.values, result.values) and again.labels == result.labels
    frame = result.to_frame()
    assert len(frame) == model.n_layers * 5 and "normalised_sem" in frame
    assert "resid_pre" in repr(result)
    result.plot()
    estimate = attribution_patching(model, PAIRS, exact=True)
    again = AttributionPatching.load(estimate.save(tmp_path / "ap.json"))
    assert again.spearman == pytest.approx(estimate.spearman)
    assert len(estimate.components) == 1 + model.n_layers * (model.n_heads + 1)
    assert estimate.residual.shape == (2, model.n_layers, 5)
    estimate.plot()
    attribution_patching(model, PAIRS).plot()


# -------------------------------------------------------- position-matched mean
def test_position_matched_mean_ablation_writes_each_positions_reference_mean() -> None:
    model = tiny_model("llama")
    reference = ["the cat sat on the mat", "a dog ran to a"]
    _, cache = model.run_with_cache(reference, names=[sites.mlp_out(0)])
    values = cache[sites.mlp_out(0).hook_name]
    expected = torch.stack(
        [
            values[0, position] if position == 5 else values[:, position].mean(0)
            for position in range(6)
        ]
    )
    seen: dict[str, torch.Tensor] = {}

    def record(value: torch.Tensor, hook: object) -> None:
        seen["mlp"] = value.detach().clone()

    with (
        model.intervene(Ablate("MLP0", "mean", reference=reference, per_position=True)),
        model.hooks([(sites.mlp_out(0), record)]),
    ):
        model.logits(["the cat sat on the mat"])
    torch.testing.assert_close(seen["mlp"][0], expected, atol=1e-6, rtol=0)
    assert "position-matched" in repr(
        Ablate("MLP0", "mean", reference=reference, per_position=True)
    )


def test_position_matched_mean_refuses_positions_past_the_references() -> None:
    model = tiny_model("llama")
    with pytest.raises(InputError, match="at least as long"):
        with model.intervene(Ablate("L0H1", "mean", reference=["the cat"], per_position=True)):
            model.logits([CLEAN])
    with pytest.raises(InputError, match="method='mean'"):
        Ablate("L0H1", "resample", reference=["the cat"], per_position=True)


def test_patches_and_position_matched_means_cannot_be_exported(tmp_path) -> None:
    model = tiny_model("llama")
    for item in (
        Patch(sites.mlp_out(0), source=[CLEAN]),
        Ablate("MLP0", "mean", reference=[CLEAN], per_position=True),
    ):
        with pytest.raises(BakeError, match="differs per prompt or position"):
            export_hf(model, [item], tmp_path / "out")


# ------------------------------------------------------------------ bad input
def test_pairs_of_different_token_lengths_are_refused_with_both_token_lists() -> None:
    model = tiny_model("llama")
    with pytest.raises(InputError, match="same token count") as error:
        activation_patching(model, [PromptPair("the cat sat", "the good dog sat", "mat", "rug")])
    assert "'good'" in str(error.value)
    uneven = [PAIRS[0], PromptPair("the cat sat", "the dog sat", "mat", "rug")]
    with pytest.raises(InputError, match="different token counts"):
        activation_patching(model, uneven, site="resid_pre")
    with pytest.raises(InputError, match="same length"):
        with model.intervene(Patch(sites.resid_pre(0), source=["the cat"])):
            model.logits([CLEAN])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: activation_patching(m, PAIRS, site="hook_z"), "Unknown patching site"),
        (lambda m: activation_patching(m, PAIRS, layers=[9]), "Layer 9 does not exist"),
        (lambda m: activation_patching(m, PAIRS, positions=[7]), "outside the prompts"),
        (lambda m: activation_patching(m, PAIRS, direction="up"), "Unknown direction"),
        (lambda m: activation_patching(m, PAIRS, "loss"), "Unknown patching metric"),
        (lambda m: activation_patching(m, []), "No prompt pairs"),
        (lambda m: attribution_patching(m, []), "No prompt pairs"),
        (
            lambda m: activation_patching(m, PAIRS, lambda logits: logits.mean()),
            "one number per run",
        ),
        (
            lambda m: activation_patching(m, PAIRS, lambda logits: logits[:, :2]),
            "one number per run",
        ),
        (
            lambda m: activation_patching(m, [PromptPair(CLEAN, CORRUPTED, "mat mat", "rug")]),
            "answer token of pair 1",
        ),
        (lambda m: activation_patching(m, [PromptPair(CLEAN, CORRUPTED, "mat")]), "no 'wrong'"),
        (
            lambda m: activation_patching(m, [PromptPair(CLEAN, CORRUPTED, "mat", "mat")]),
            "same answer and wrong",
        ),
        (
            lambda m: m.intervene(Patch(sites.z(5), source=[CLEAN])).__enter__(),
            "refers to layer 5",
        ),
        (
            lambda m: m.intervene(Patch(sites.z(1), source=[CLEAN], head=9)).__enter__(),
            "head 9 does not exist",
        ),
        (lambda m: Patch("MLP3", source=[CLEAN]), "sites.mlp_out"),
        (lambda m: Patch(sites.pattern(1), source=[CLEAN]), "Patch writes one of"),
        (lambda m: Patch(sites.resid_pre(1), source=[CLEAN], head=0), "head= picks"),
        (lambda m: Patch(sites.resid_pre(1), source=[]), "non-empty list"),
        (lambda m: PromptPair("", CORRUPTED), "clean prompt of a pair is empty"),
    ],
)
def test_bad_input_gets_a_clear_error(call, message: str) -> None:
    model = tiny_model("llama")
    with pytest.raises(InputError, match=message):
        call(model)


def test_a_patch_with_the_wrong_number_of_source_rows_is_refused() -> None:
    model = tiny_model("llama")
    with pytest.raises(InputError, match="2 source rows, but this forward pass has 1"):
        with model.intervene(Patch(sites.resid_pre(1), source=[CLEAN, CORRUPTED])):
            model.logits([CLEAN])


def test_pairs_load_from_jsonl_and_csv(tmp_path) -> None:
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text(
        '{"clean": "the cat sat on the", "corrupted": "the dog sat on the", "answer": " mat",'
        ' "wrong": " rug"}\n',
        encoding="utf-8",
    )
    assert load_pairs(jsonl) == [PromptPair(CLEAN, CORRUPTED, " mat", " rug")]
    table = tmp_path / "pairs.csv"
    table.write_text("clean,corrupted,answer\nthe cat,the dog,mat\n", encoding="utf-8")
    assert load_pairs(table) == [PromptPair("the cat", "the dog", "mat")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"clean": "the cat"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="row 1 has no 'corrupted'"):
        load_pairs(bad)
    with pytest.raises(InputError, match="not a pair file"):
        load_pairs(tmp_path / "pairs.txt")


def test_patches_round_trip_through_a_spec(tmp_path) -> None:
    from circuitlab.interventions import from_spec, load_interventions, save_interventions, to_spec

    model = tiny_model("llama")
    items = [
        Patch(sites.resid_pre(1), source=[CLEAN], positions=-1),
        Patch("L1H2", source=[CLEAN]),
    ]
    path = save_interventions(items, tmp_path / "spec.yaml")
    loaded = load_interventions(path).interventions
    assert to_spec(loaded) == to_spec(items)
    with model.intervene(*items):
        expected = model.logits([CORRUPTED])
    with model.intervene(*loaded):
        assert torch.equal(model.logits([CORRUPTED]), expected)
    (tmp_path / "sources.txt").write_text(CLEAN + "\n", encoding="utf-8")
    spec = [{"kind": "patch", "site": "L1H2", "source": {"file": "sources.txt"}}]
    assert from_spec(spec, base_dir=tmp_path).interventions[0].source == (CLEAN,)
    with pytest.raises(InputError, match="activation tensors"):
        to_spec([Patch(sites.resid_pre(1), source=torch.zeros(1, 5, model.d_model))])
    with pytest.raises(InputError, match="Unknown site kind"):
        from_spec([{"kind": "patch", "site": {"kind": "resid", "layer": 1}, "source": ["x"]}])


def test_the_decomposition_stays_exact_under_head_patches_and_refuses_branch_patches() -> None:
    from circuitlab import decompose_residual

    model = tiny_model("llama")
    with model.intervene(Patch("L1H2", source=[CLEAN]), Patch(sites.mlp_out(0), source=[CLEAN])):
        parts = decompose_residual(model, [CORRUPTED])
        patched = model.next_token_logits([CORRUPTED])
    torch.testing.assert_close(parts.total(), parts.residual, atol=1e-4, rtol=0)
    torch.testing.assert_close(parts.logits, patched, atol=1e-5, rtol=0)
    assert not torch.allclose(patched, model.next_token_logits([CORRUPTED]))
    for site in (sites.attn_out(1), sites.resid_post(0)):
        with (
            model.intervene(Patch(site, source=[CLEAN])),
            pytest.raises(InputError, match="cannot attribute"),
        ):
            decompose_residual(model, [CORRUPTED])
