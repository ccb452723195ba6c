"""The logit lens on tiny random models: the last layer is the model's own output, every layer
equals plain transformers' final norm and lm_head on its hidden state, the recomputed scale is
not the cached one, choices of positions/layers/batches agree, bad input is refused."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

import circuitlab
from circuitlab import InputError, sites
from circuitlab.cli.lens import logit_lens_command
from circuitlab.cli.main import build_parser
from circuitlab.collector import collect
from circuitlab.lens import LensReader, LogitLens, lens_logits, logit_lens
from circuitlab.testing import tiny_hf_model, tiny_model
from circuitlab.weights import norm_bias, norm_gain, unembedding

PROMPTS = ["the capital of france is", "the cat sat on the mat", "a dog"]
TARGETS = ["paris", "mat", 7]


def _plain_lens(reference: torch.nn.Module, batch: object) -> list[torch.Tensor]:
    """Ground truth: plain transformers' own final norm and lm_head applied to each of its
    hidden states [batch, pos, d_vocab] per depth (its last hidden state is normed already,
    so the norm is lifted out of the forward pass and applied to every state alike)."""
    owner, name = (
        (reference.transformer, "ln_f")
        if hasattr(reference, "transformer")
        else (reference.model, "norm")
    )
    norm = getattr(owner, name)
    assert getattr(reference.config, "final_logit_softcapping", None) is None
    setattr(owner, name, torch.nn.Identity())
    try:
        with torch.no_grad():
            hidden = reference(
                batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True
            ).hidden_states
            head = reference.get_output_embeddings()
            return [head(norm(state)).float() for state in hidden]
    finally:
        setattr(owner, name, norm)


def _check_against(lens: LogitLens, logits: torch.Tensor, prompt: int, row: int) -> None:
    """The lens row ``row`` of ``prompt`` (every token read) against reference logits [pos, V]."""
    count = int(lens.lengths[prompt])
    logits = logits[:count]
    logprobs = logits.log_softmax(dim=-1)
    top = logprobs.topk(lens.k, dim=-1)
    assert torch.equal(lens.top_ids[prompt, :count, row], top.indices)
    torch.testing.assert_close(
        lens.top_probs[prompt, :count, row], top.values.exp(), atol=1e-4, rtol=0
    )
    ids = list(lens.target_ids)
    torch.testing.assert_close(
        lens.target_logits[prompt, :count, row], logits[:, ids], atol=1e-4, rtol=0
    )
    torch.testing.assert_close(
        lens.target_probs[prompt, :count, row], logprobs[:, ids].exp(), atol=1e-4, rtol=0
    )
    target = logits[:, ids][:, :, None]
    ranks = (logits[:, None, :] > target).sum(dim=-1)
    # a rank may differ only by the tokens whose logits lie within float error of the target's
    # (a vocabulary of 262,144 puts near-ties thousands of ranks down)
    ties = ((logits[:, None, :] - target).abs() <= 1e-4).sum(dim=-1) - 1
    assert ((lens.target_ranks[prompt, :count, row] - ranks).abs() <= ties).all()


def test_last_layer_reproduces_the_model_logits(tiny_architecture: str) -> None:
    model = tiny_model(tiny_architecture)
    lens = logit_lens(model, PROMPTS, TARGETS, positions="all", batch_size=2)
    width = int(model.tokenize(PROMPTS).lengths.max())
    assert lens.layers == ("embed", "0", "1") and lens.top_ids.shape == (3, width, 3, 5)
    logits = model.logits(PROMPTS).float()
    for prompt in range(len(PROMPTS)):
        _check_against(lens, logits[prompt], prompt, row=-1)


def test_every_layer_equals_plain_transformers_norm_and_lm_head(tiny_architecture: str) -> None:
    model = tiny_model(tiny_architecture)
    reference, _ = tiny_hf_model(tiny_architecture)
    batch = model.tokenize(PROMPTS)
    plain = _plain_lens(reference, batch)
    lens = logit_lens(model, PROMPTS, TARGETS, positions="all")
    assert len(plain) == lens.n_layers == model.n_layers + 1
    for row, logits in enumerate(plain):
        for prompt in range(len(PROMPTS)):
            _check_against(lens, logits[prompt], prompt, row)


def test_output_softcapping_is_applied() -> None:
    hf_model, tokenizer = tiny_hf_model("gemma3")
    hf_model.config.final_logit_softcapping = 0.5
    model = circuitlab.ModelHandle(hf_model, tokenizer, name="tiny-gemma3-capped")
    lens = logit_lens(model, PROMPTS, TARGETS, positions="all", layers=[0, 1])
    logits = model.logits(PROMPTS).float()
    assert float(logits.abs().max()) <= 0.5  # the cap is in force on the model's own output
    for prompt in range(len(PROMPTS)):
        _check_against(lens, logits[prompt], prompt, row=-1)
    assert float(lens.target_logits.abs().max()) <= 0.5


def _with_cached_final_scale(model: circuitlab.ModelHandle, prompt: str, layer: int) -> tuple:
    """The pitfall: block ``layer``'s residual stream [pos, d_model] and its logits read with
    the final norm's scale cached in the forward pass (``ln_final.hook_scale``)."""
    final = model.arch.norm("final")
    assert final is not None
    site, scale = sites.resid_post(layer), final.scale_site()
    _, cache = model.run_with_cache(prompt, names=[site, scale])
    residual = cache[site.hook_name][0]
    centred = residual
    if model.arch.norm_type == "layernorm":
        centred = residual - residual.mean(-1, keepdim=True)
    normed = centred / cache[scale.hook_name][0] * norm_gain(model, final)
    bias = norm_bias(model, final)
    w_u, b_u = unembedding(model)
    logits = (normed if bias is None else normed + bias) @ w_u
    return residual, logits if b_u is None else logits + b_u


@pytest.mark.parametrize("architecture", ["llama", "gemma3", "gpt2"])
def test_recomputed_scale_is_not_the_cached_final_scale(architecture: str) -> None:
    """The TransformerLens pitfall: the final norm's scale cached in the forward pass is right
    for the last residual stream only; an earlier one divided by it reads another distribution."""
    model = tiny_model(architecture)
    prompt = PROMPTS[0]
    _, last = _with_cached_final_scale(model, prompt, model.n_layers - 1)
    torch.testing.assert_close(last, model.logits(prompt)[0], atol=1e-4, rtol=0)
    residual, early = _with_cached_final_scale(model, prompt, 0)
    reference, _ = tiny_hf_model(architecture)
    truth = _plain_lens(reference, model.tokenize(prompt))[1][0].softmax(dim=-1)  # after block 0
    pitfall = (early.softmax(-1) - truth).abs().max()
    ours = (lens_logits(model, residual).softmax(-1) - truth).abs().max()
    assert float(ours) < 1e-5 and float(pitfall) > 1e-2
    lens = logit_lens(model, prompt, positions="all", layers=0, k=model.d_vocab)
    torch.testing.assert_close(
        lens.top_probs[0, :, 0].sort(-1).values, truth.sort(-1).values, atol=1e-5, rtol=0
    )


def test_positions_layers_batches_and_chunks_agree() -> None:
    model = tiny_model("qwen2")
    every = logit_lens(model, PROMPTS, TARGETS, positions="all", batch_size=1)
    last = logit_lens(model, PROMPTS, TARGETS)
    lengths = model.tokenize(PROMPTS).lengths
    assert torch.equal(last.lengths, torch.ones(3, dtype=torch.long))
    assert torch.equal(last.positions[:, 0], lengths - 1)
    for prompt, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(
            last.target_logits[prompt, 0], every.target_logits[prompt, length - 1]
        )
        assert torch.equal(last.top_ids[prompt, 0], every.top_ids[prompt, length - 1])
        assert last.tokens[prompt] == (every.tokens[prompt][-1],)
    second = logit_lens(model, PROMPTS, TARGETS, positions=1)
    torch.testing.assert_close(second.top_probs[:, 0], every.top_probs[:, 1])
    chosen = logit_lens(model, PROMPTS, TARGETS, positions=[0, -2, 1], layers=[1, "embed"])
    assert chosen.layers == ("embed", "1") and chosen.positions[:, 0].tolist() == [0, 4, 1]
    torch.testing.assert_close(chosen.target_ranks[1, 0], every.target_ranks[1, 4][[0, 2]])
    assert every.tokens[0] == tuple(model.to_str_tokens(PROMPTS[0]))
    assert every.top_ids[2, 2:].eq(-1).all() and every.positions[2, 2:].eq(-1).all()
    lens_sites = [sites.resid_pre(0), sites.resid_post(0), sites.resid_post(1)]
    reader = LensReader(model, lens_sites, every.target_ids, k=5, chunk_rows=3)
    chunked = collect(model, PROMPTS, {"lens": reader}, positions="all", batch_size=3)["lens"]
    for name in ("top_ids", "target_ranks", "positions"):
        assert torch.equal(chunked[name], getattr(every, name))
    for name in ("top_probs", "target_logits", "target_logprobs"):
        torch.testing.assert_close(chunked[name], getattr(every, name), atol=1e-5, rtol=0)


def test_a_shared_prefix_run_once_reads_the_same() -> None:
    """Prompts sharing a long prefix run it once (the collector's KV cache); same lens."""
    model = tiny_model("llama")
    prompts = ["the cat sat on the mat . " * 3 + ending for ending in ("a dog", "the sky is")]
    last = logit_lens(model, prompts, "mat", positions=[-1, -2])
    every = logit_lens(model, prompts, "mat", positions="all")
    for prompt, back in enumerate((1, 2)):
        read = int(every.lengths[prompt]) - back
        assert int(last.positions[prompt, 0]) == read
        assert torch.equal(last.top_ids[prompt, 0], every.top_ids[prompt, read])
        torch.testing.assert_close(
            last.target_logits[prompt, 0], every.target_logits[prompt, read], atol=1e-4, rtol=0
        )


def test_interventions_in_force_apply() -> None:
    model = tiny_model("llama")
    plain = logit_lens(model, PROMPTS[0], "paris")
    with model.intervene(circuitlab.Ablate("MLP1")):
        ablated = logit_lens(model, PROMPTS[0], "paris")
    torch.testing.assert_close(ablated.target_logits[0, 0, :2], plain.target_logits[0, 0, :2])
    assert not torch.allclose(ablated.target_logits[0, 0, 2], plain.target_logits[0, 0, 2])


def test_result_table_figure_and_files(tmp_path: Path) -> None:
    model = tiny_model("gpt2")
    lens = logit_lens(model, PROMPTS[:2], ["paris", "mat"], positions="all", k=3)
    frame = lens.to_frame()
    assert len(frame) == (5 + 6) * 3
    assert list(frame.columns[:4]) == ["prompt", "position", "token", "layer"]
    assert {"top_1", "prob_3", "'paris' prob", "'mat' rank", "'mat' logprob"} <= set(frame.columns)
    row = frame[(frame.prompt == 1) & (frame.position == 5) & (frame.layer == "1")].iloc[0]
    assert row.token == "mat" and row.top_1 == lens.top(1, prompt=1)[0][0]
    assert row["'mat' rank"] == int(lens.target_ranks[1, 5, 2, 1])
    table = lens.layer_table(prompt=1)
    assert list(table.layer) == ["embed", "0", "1"] and table["'mat' prob"].between(0, 1).all()
    assert [token for token, _ in lens.top("embed", 0, 0)] == [
        lens.token_text(int(i)) for i in lens.top_ids[0, 0, 0]
    ]
    text = repr(lens)
    assert text.startswith("LogitLens('tiny-gpt2': 2 prompt(s), 3 layers") and "\n" not in text
    for figure in (lens.plot(), lens.plot(1, "mat"), lens.plot(1, top=True, annotate=False)):
        assert isinstance(figure, Figure)
    bare = logit_lens(model, PROMPTS[0])
    assert bare.target_logits.shape == (1, 1, 3, 0) and isinstance(bare.plot(), Figure)
    for result in (lens, bare):
        for suffix in (".json", ".safetensors"):
            loaded = LogitLens.load(result.save(tmp_path / f"lens{suffix}"))
            assert loaded.layers == result.layers and loaded.vocabulary == result.vocabulary
            assert loaded.tokens == result.tokens and loaded.targets == result.targets
            assert torch.equal(loaded.target_ranks, result.target_ranks)
            assert torch.equal(loaded.top_probs, result.top_probs)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"targets": "paris london"}, "Target token 'paris london' is 2 tokens"),
        ({"targets": 10_000}, "out of range for tiny-llama's vocabulary"),
        ({"layers": 2}, "Layer 2 does not exist in tiny-llama, which has 2 layers"),
        ({"layers": [0, -1]}, "Layer -1 does not exist"),
        ({"layers": "final"}, "'embed' (the embedding output)"),
        ({"layers": []}, "layers is empty"),
        ({"k": 0}, "k must be at least 1"),
        ({"k": 10_000}, "pass k between 1 and"),
        ({"positions": 9}, "Position 9 is out of range for prompt 0"),
        ({"positions": -7}, "out of range"),
        ({"positions": "every"}, "Unknown positions 'every'"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"prompts": []}, "No prompts were given"),
        ({"prompts": ["a", 3]}, "its items are str, int"),
    ],
)
def test_bad_input_is_refused(arguments: dict[str, object], message: str) -> None:
    model = tiny_model("llama")
    call = {"prompts": PROMPTS[:1], **arguments}
    with pytest.raises(InputError, match=re.escape(message)):
        logit_lens(model, call.pop("prompts"), **call)


def test_result_methods_refuse_bad_choices() -> None:
    lens = logit_lens(tiny_model("llama"), PROMPTS[:2], "paris")
    bare = logit_lens(tiny_model("llama"), PROMPTS[0])
    for call, message in [
        (lambda: lens.top(5), "Layer 5 is not in this lens"),
        (lambda: lens.top(0, prompt=2), "Prompt 2 is out of range"),
        (lambda: lens.top(0, position=1), "Read position 1 is out of range"),
        (lambda: lens.plot(target="rome"), "Target 'rome' is not one of 'paris'"),
        (lambda: lens.plot(target=1), "Target index 1 is out of range"),
        (lambda: lens.plot(target=0, top=True), "not both"),
        (lambda: bare.plot(target=0), "follows no target"),
        (lambda: lens.top("0", prompt="first"), "prompt must be a whole number"),
    ]:
        with pytest.raises(InputError, match=message):
            call()


# ------------------------------------------------------------------------------- the command
def _parse(arguments: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(["logit-lens", *arguments])


def test_command_prints_the_table_and_writes_json_and_plot(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, plot = tmp_path / "lens.json", tmp_path / "lens.png"
    args = _parse(
        ["--model", str(tiny_folder), "--prompt", PROMPTS[0], "--prompt", PROMPTS[1],
         "--target", "paris", "--target", "mat", "--k", "3", "--position", "all",
         "--json", str(out), "--plot", str(plot)]
    )  # fmt: skip
    logit_lens_command(args, circuitlab.load(str(tiny_folder)))
    printed = capsys.readouterr().out
    assert "logit lens of 2 prompt(s) over 3 layers" in printed
    assert "'the cat sat on the mat', read after token 5 'mat':" in printed
    lens = LogitLens.from_document(json.loads(out.read_text()))
    assert lens.targets == ("'paris'", "'mat'") and lens.k == 3 and lens.lengths.tolist() == [5, 6]
    lines = printed.splitlines()
    header = lines.index("'the cat sat on the mat', read after token 5 'mat':")
    assert lines[header + 1].split() == [
        "layer",
        "top-1",
        "p",
        "'paris'",
        "p",
        "rank",
        "'mat'",
        "p",
        "rank",
    ]
    for line, layer in zip(lines[header + 2 : header + 5], lens.layers, strict=True):
        cells = line.split()
        assert cells[0] == layer and cells[1] == repr(lens.top(layer, prompt=1)[0][0])
        assert cells[-1] == str(int(lens.target_ranks[1, 5, lens.layers.index(layer), 1]))
    assert plot.stat().st_size > 1000


def test_command_arguments_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert _parse(["--prompt", "a", "--position", "-2"]).position == -2
    for bad, message in [(["--k", "0"], "at least 1"), (["--position", "last"], "or 'all'")]:
        with pytest.raises(SystemExit):
            _parse(["--prompt", "a", *bad])
        assert message in capsys.readouterr().err
