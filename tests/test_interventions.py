"""Interventions on tiny models: hooks, reversibility, export round trips, bad input."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from circuitlab import InputError, ModelHandle, decompose_residual
from circuitlab.errors import ExportCheckError
from circuitlab.interventions import (
    Ablate,
    Intervention,
    PruneHeads,
    PruneLayers,
    Scale,
    SteerHead,
    SteerResidual,
)
from circuitlab.interventions.bake import BakeError
from circuitlab.interventions.export import check_export, export_hf
from circuitlab.testing import tiny_model

PROMPTS = ["the cat sat on the mat", "yes", "a dog ."]
REFERENCE = ["the capital of france is paris", "a cat", "the dog sat"]

# intervention kinds, and the architectures that have no weight to hold them
KINDS: dict[str, tuple[Callable[[ModelHandle], list[Intervention]], set[str]]] = {
    "zero_head": (lambda m: [Ablate("L0H1")], set()),
    "scale_head": (lambda m: [Scale("L1H2", 1.7)], set()),
    "zero_mlp": (lambda m: [Ablate("MLP1")], set()),
    "scale_mlp": (lambda m: [Scale("MLP0", 0.3)], set()),
    "zero_layer": (lambda m: [Ablate("L1")], set()),
    "scale_layer": (lambda m: [Scale("L0", 1.5)], set()),
    "mean_head": (lambda m: [Ablate("L0H3", "mean", reference=REFERENCE)], {"mistral", "qwen2"}),
    "mean_mlp": (
        lambda m: [Ablate("MLP1", "mean", reference=REFERENCE)],
        {"gemma3", "mistral", "qwen2", "qwen3"},
    ),
    "steer_head": (
        lambda m: [SteerHead("L1H0", torch.linspace(-1, 1, m.d_model))],
        {"mistral", "qwen2"},
    ),
    "steer_residual": (
        lambda m: [SteerResidual(0, torch.linspace(1, -1, m.d_model))],
        {"gemma3", "mistral", "qwen2", "qwen3"},
    ),
    "prune_layer": (lambda m: [PruneLayers([0])], set()),
    "prune_heads": (lambda m: [PruneHeads(["L0H0", "L1H3"])], set()),
    "composed": (
        lambda m: [
            Ablate("L0H1", "mean", reference=REFERENCE),
            Scale("L0H1", 2.0),
            Scale("L0", 0.5),
        ],
        {"mistral", "qwen2"},
    ),
}


def _real_token_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return logits[mask.bool()]


@pytest.mark.parametrize("kind", list(KINDS))
def test_export_reloads_with_plain_transformers_to_the_hooked_logits(
    tiny_architecture: str, kind: str, tmp_path: Path
) -> None:
    model = tiny_model(tiny_architecture)
    build, unsupported = KINDS[kind]
    interventions = build(model)
    batch = model.tokenize(PROMPTS)
    plain = model.logits(batch)
    with model.intervene(*interventions):
        hooked = model.logits(batch)
    assert (hooked - plain).abs().max() > 1e-3  # the intervention does something
    if tiny_architecture in unsupported:
        with pytest.raises(BakeError, match=r"model\.intervene"):
            export_hf(model, interventions, tmp_path / "out")
        assert not (tmp_path / "out").exists()
        return
    with (
        pytest.warns(UserWarning, match="zero output columns")
        if kind == "prune_heads"
        else contextlib.nullcontext()
    ):
        export_hf(model, interventions, tmp_path / "out")
    reloaded = AutoModelForCausalLM.from_pretrained(
        tmp_path / "out", attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        exported = reloaded(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    torch.testing.assert_close(
        _real_token_logits(exported, batch.attention_mask),
        _real_token_logits(hooked, batch.attention_mask),
        atol=1e-4,
        rtol=0,
    )
    if kind == "prune_layer":
        assert reloaded.config.num_hidden_layers == model.n_layers - 1
        assert len(list(reloaded.state_dict())) < len(
            [k for k in model.hf_model.state_dict() if "_original_component" in k]
        )


def test_intervening_leaves_the_model_bit_identical(tiny_architecture: str) -> None:
    model = tiny_model(tiny_architecture)
    before_logits = model.logits(PROMPTS)
    before_state = {key: value.clone() for key, value in model.hf_model.state_dict().items()}
    with model.intervene(Ablate("L0H1"), Scale("MLP1", 0.0), PruneLayers([1])):
        assert not torch.equal(model.logits(PROMPTS), before_logits)
    assert torch.equal(model.logits(PROMPTS), before_logits)
    after_state = model.hf_model.state_dict()
    assert all(torch.equal(after_state[key], value) for key, value in before_state.items())


def test_interventions_compose_in_order_and_nest() -> None:
    model = tiny_model("llama")
    with model.intervene(Scale("L0H1", 0.0)):
        zeroed = model.logits(PROMPTS)
    with model.intervene(Ablate("L0H1")):
        torch.testing.assert_close(model.logits(PROMPTS), zeroed, atol=0, rtol=0)
    with model.intervene(Scale("L0H1", 1.0)):
        torch.testing.assert_close(model.logits(PROMPTS), model.logits(PROMPTS), atol=0, rtol=0)
    with model.intervene(Scale("L0H1", 2.0)), model.intervene(Scale("L0H1", 0.25)):
        nested = model.logits(PROMPTS)
    with model.intervene(Scale("L0H1", 0.5)):
        torch.testing.assert_close(nested, model.logits(PROMPTS), atol=1e-6, rtol=0)


def test_mean_ablation_uses_the_mean_over_real_reference_tokens() -> None:
    model = tiny_model("llama")
    _, cache = model.run_with_cache(REFERENCE, names=["blocks.0.attn.hook_z"])
    mask = model.tokenize(REFERENCE).attention_mask.bool()
    expected = cache["blocks.0.attn.hook_z"][mask][:, 2].mean(dim=0)
    with model.intervene(Ablate("L0H2", "mean", reference=REFERENCE)):
        _, inside = model.run_with_cache(PROMPTS, names=["blocks.0.attn.hook_z"])
    z = inside["blocks.0.attn.hook_z"]
    torch.testing.assert_close(z[:, :, 2], expected.expand_as(z[:, :, 2]), atol=1e-6, rtol=0)
    assert not torch.allclose(z[:, :, 1], expected.expand_as(z[:, :, 1]))


def test_resampling_from_the_prompt_itself_changes_nothing() -> None:
    model = tiny_model("qwen2")
    prompt = [PROMPTS[0]]
    plain = model.logits(prompt)
    with model.intervene(Ablate("L1", "resample", reference=prompt)):
        torch.testing.assert_close(model.logits(prompt), plain, atol=1e-6, rtol=0)
    with model.intervene(Ablate("L1", "resample", reference=REFERENCE, seed=3)):
        first = model.logits(prompt)
    with model.intervene(Ablate("L1", "resample", reference=REFERENCE, seed=3)):
        torch.testing.assert_close(model.logits(prompt), first, atol=0, rtol=0)
    assert (first - plain).abs().max() > 1e-3


def test_position_restriction_to_the_last_real_token() -> None:
    model = tiny_model("llama")
    batch = model.tokenize(PROMPTS)
    plain = model.logits(batch)
    with model.intervene(Ablate("L1", positions="last")):
        edited = model.logits(batch)
    last = batch.lengths - 1
    for row, position in enumerate(last.tolist()):
        torch.testing.assert_close(edited[row, :position], plain[row, :position], atol=0, rtol=0)
        assert (edited[row, position] - plain[row, position]).abs().max() > 1e-3
    with model.intervene(Ablate("L1", positions=-1)):
        torch.testing.assert_close(model.logits(batch), edited, atol=0, rtol=0)
    mask = torch.zeros(batch.input_ids.shape, dtype=torch.bool)
    mask[:, 0] = True
    with model.intervene(Ablate("L1", positions=mask)):
        masked = model.logits(batch)
    assert (masked[:, 0] - plain[:, 0]).abs().max() > 1e-3
    with model.intervene(Ablate("L1", positions=mask)), pytest.raises(InputError, match="shape"):
        model.logits(PROMPTS[:1])


def test_generation_under_hooks_matches_the_exported_model(tmp_path: Path) -> None:
    model = tiny_model("llama")
    edits = [Ablate("L0H1"), Scale("MLP1", 0.2)]
    with model.intervene(*edits):
        hooked = model.generate_ids("the cat", max_new_tokens=6, stop_at_eos=False)[0]
    assert hooked != model.generate_ids("the cat", max_new_tokens=6, stop_at_eos=False)[0]
    export_hf(model, edits, tmp_path / "out")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    ids = model.tokenize(["the cat"]).input_ids
    generated = reloaded.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=6,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )
    assert generated[0, ids.shape[1] :].tolist() == hooked


@pytest.mark.parametrize(
    "edits",
    [
        [Ablate("L0H1"), Scale("MLP1", 0.5)],
        [Ablate("L1H2", "mean", reference=REFERENCE)],
        [Scale("L0", 0.5), PruneLayers([1])],
        [Scale("L1", 3.0, positions="last")],
    ],
    ids=["head-and-mlp", "mean-head", "layer-scale-and-prune", "layer-scale-last"],
)
def test_decomposition_stays_exact_under_interventions(
    tiny_architecture: str, edits: list[Intervention]
) -> None:
    model = tiny_model(tiny_architecture)
    plain = decompose_residual(model, PROMPTS)
    with model.intervene(*edits):
        parts = decompose_residual(model, PROMPTS)
    torch.testing.assert_close(parts.total(), parts.residual, atol=1e-5, rtol=0)
    assert (parts.residual - plain.residual).abs().max() > 1e-3


def test_decomposition_refuses_vectors_no_component_owns() -> None:
    model = tiny_model("llama")
    with (
        model.intervene(SteerResidual(0, torch.ones(model.d_model))),
        pytest.raises(InputError, match="belongs to no component"),
    ):
        decompose_residual(model, PROMPTS)


def test_exports_refuse_what_weights_cannot_express(tmp_path: Path) -> None:
    model = tiny_model("llama")
    with pytest.raises(BakeError, match="differs per prompt"):
        export_hf(model, Ablate("L0H1", "resample", reference=REFERENCE), tmp_path / "a")
    with pytest.raises(BakeError, match="only at some positions"):
        export_hf(model, Ablate("L0H1", positions="last"), tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_a_non_empty_folder_unless_overwrite(tmp_path: Path) -> None:
    model = tiny_model("llama")
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="overwrite=True"):
        export_hf(model, Ablate("L0H1"), target)
    assert (target / "notes.txt").read_text() == "keep me"
    export_hf(model, Ablate("L0H1"), target, overwrite=True)
    assert (target / "config.json").exists() and not (target / "notes.txt").exists()


def test_an_interrupted_export_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_model("llama")

    def fail_midway(self: object, folder: Path, **kwargs: object) -> None:
        (Path(folder) / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(type(model.tokenizer), "save_pretrained", fail_midway)
    with pytest.raises(KeyboardInterrupt):
        export_hf(model, Ablate("L0H1"), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda m: [Ablate("L5H0")], "layer 5"),
        (lambda m: [Scale("L0H9", 2.0)], "head 9"),
        (lambda m: [PruneLayers([0, 1])], "every layer"),
        (lambda m: [PruneLayers([2])], "layer 2"),
        (lambda m: [SteerHead("L0H0", torch.ones(3))], "d_model"),
        (lambda m: [SteerResidual(-1, torch.ones(m.d_model))], "layer -1"),
    ],
    ids=["layer-range", "head-range", "prune-all", "prune-range", "vector-size", "steer-layer"],
)
def test_bad_interventions_are_refused_clearly(
    make: Callable[[ModelHandle], list[Intervention]], message: str
) -> None:
    model = tiny_model("llama")
    with pytest.raises(InputError, match=message), model.intervene(*make(model)):
        pass  # pragma: no cover - never reached


def test_bad_intervention_values_are_refused_when_built() -> None:
    with pytest.raises(InputError, match="non-empty list of reference prompts"):
        Ablate("L0H1", "mean", reference=[])
    with pytest.raises(InputError, match="floating-point"):
        SteerHead("L0H0", torch.ones(64, dtype=torch.int64))
    with pytest.raises(InputError, match=r"an MLP \(MLP3\) or a whole layer"):
        Ablate("EMBED")
    with pytest.raises(InputError, match="Unknown ablation method"):
        Ablate("L0H1", "noise")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="Cannot parse component"):
        Scale("head 3", 2.0)
    with pytest.raises(InputError, match="positions"):
        Ablate("L0H1", positions=[1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("heads", "kept"),
    [
        (["L0H1", "L0H3", "L1H0", "L1H2"], "one query head per key/value group"),
        (["L0H0", "L0H1", "L1H2", "L1H3"], "a whole key/value group per layer"),
    ],
)
def test_heads_pruned_alike_in_every_layer_are_removed_from_the_checkpoint(
    tiny_architecture: str, heads: list[str], kept: str, tmp_path: Path
) -> None:
    model = tiny_model(tiny_architecture)
    prune = PruneHeads(heads)
    if tiny_architecture == "gpt2":  # head size n_embd / n_head: heads stay, as zero columns
        with pytest.warns(UserWarning, match="n_embd / n_head"):
            export_hf(model, prune, tmp_path / "out")
    else:
        export_hf(model, prune, tmp_path / "out")
        config = AutoModelForCausalLM.from_pretrained(tmp_path / "out").config
        n_kv = model.n_kv_heads if kept.startswith("one") else max(model.n_kv_heads // 2, 1)
        assert (config.num_attention_heads, config.num_key_value_heads) == (2, n_kv)
        assert config.head_dim == model.d_head
        record = json.loads((tmp_path / "out" / "circuitlab_export.json").read_text())
        assert record["export"]["removed_heads"] == heads
    assert check_export(model, prune, tmp_path / "out", PROMPTS) <= 1e-4
    with pytest.raises(ExportCheckError, match="differs from the hooked model"):
        check_export(model, [], tmp_path / "out", PROMPTS, tolerance=1e-3)  # not what was baked


def test_heads_that_cannot_be_removed_are_zeroed_with_the_reason(tmp_path: Path) -> None:
    model = tiny_model("llama")  # 4 heads in 2 key/value groups
    with pytest.warns(UserWarning, match=r"layer 0 would keep \[2, 1\] query heads"):
        export_hf(model, PruneHeads(["L0H3", "L1H3"]), tmp_path / "uneven")
    with pytest.warns(UserWarning, match="different numbers of"):
        export_hf(model, PruneHeads(["L0H0", "L0H2"]), tmp_path / "one-layer")
    for folder in ("uneven", "one-layer"):
        config = AutoModelForCausalLM.from_pretrained(tmp_path / folder).config
        assert config.num_attention_heads == 4


def test_export_keeps_tied_embeddings_tied(tiny_architecture: str, tmp_path: Path) -> None:
    from safetensors import safe_open

    model = tiny_model(tiny_architecture)
    export_hf(model, [Scale("MLP0", 0.5)], tmp_path / "out")
    with safe_open(str(tmp_path / "out" / "model.safetensors"), framework="pt") as handle:
        saved = set(handle.keys())
    source = model.hf_model.get_output_embeddings().weight
    tied = source is model.hf_model.get_input_embeddings().weight
    unembedding = "lm_head.weight" in saved
    assert unembedding != tied, f"tied={tied} but lm_head.weight saved={unembedding}"
