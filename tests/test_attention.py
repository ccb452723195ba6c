"""Attention views on tiny models: patterns equal plain transformers' attention weights, the
summary scores equal a hand computation, the HTML is self-contained, the CLI prints and writes."""

from __future__ import annotations

import argparse
import copy
import html
import inspect
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from circuitlab import ModelHandle
from circuitlab.attention import (
    SCORES,
    AttentionPattern,
    HeadSummary,
    attention_pattern,
    head_summary,
)
from circuitlab.attention.summary import (
    DEFAULT_LENGTH,
    DEFAULT_SEQUENCES,
    repeated_random_tokens,
)
from circuitlab.cli import attention as cli
from circuitlab.cli.main import build_parser, cli_message
from circuitlab.components import Head, Mlp
from circuitlab.errors import CircuitlabError, InputError
from circuitlab.loading import load
from circuitlab.testing import tiny_hf_model, tiny_model

PROMPT = "the cat sat on the mat . the cat sat on the mat"
PROMPTS = [PROMPT, "a dog is a dog", "yes no yes no yes"]


def _handle_and_reference(architecture: str) -> tuple[ModelHandle, torch.nn.Module]:
    hf_model, tokenizer = tiny_hf_model(architecture)
    reference = copy.deepcopy(hf_model)
    return ModelHandle(hf_model, tokenizer, name=f"tiny-{architecture}"), reference


def _reference_attentions(reference: torch.nn.Module, ids: torch.Tensor) -> list[torch.Tensor]:
    """Plain transformers' eager attention weights, one [head, q, k] per layer."""
    with torch.no_grad():
        out = reference(ids[None], output_attentions=True)
    return [layer[0] for layer in out.attentions]


@pytest.fixture(scope="module")
def llama() -> ModelHandle:
    return tiny_model("llama")


# ------------------------------------------------------------------ ground truth
def test_pattern_equals_plain_transformers(tiny_architecture: str) -> None:
    model, reference = _handle_and_reference(tiny_architecture)
    ids = model.tokenize(PROMPT).row(0)
    expected = _reference_attentions(reference, ids)
    every_head = [Head(layer, head) for layer in range(model.n_layers) for head in range(4)]
    view = attention_pattern(model, PROMPT, every_head)
    assert view.pattern.shape == (len(every_head), len(ids), len(ids))
    torch.testing.assert_close(view.pattern, torch.cat(expected), atol=1e-4, rtol=0)
    one = attention_pattern(model, PROMPT, "L1H2")
    torch.testing.assert_close(one.weights("L1H2"), expected[1][2], atol=1e-4, rtol=0)
    layer = attention_pattern(model, PROMPT, layer=0)
    assert layer.heads == tuple(Head(0, h) for h in range(model.n_heads))
    torch.testing.assert_close(layer.pattern, expected[0], atol=1e-4, rtol=0)
    # rows are distributions over the keys at or before the query; nothing above the diagonal
    torch.testing.assert_close(view.pattern.sum(-1), torch.ones(view.pattern.shape[:2]))
    assert torch.all(view.pattern.triu(diagonal=1) == 0)
    assert torch.all(view.pattern >= 0)


def test_kv_group_is_the_key_value_head_each_query_head_reads() -> None:
    """Perturb one key/value head's keys in plain transformers: exactly its group's query
    heads change their pattern, and those are the heads the view labels with that group."""
    model, reference = _handle_and_reference("llama")
    assert (model.n_heads, model.n_kv_heads) == (4, 2)
    ids = model.tokenize(PROMPT).row(0)
    before = _reference_attentions(reference, ids)[1]
    d_head = model.d_head
    view = attention_pattern(model, PROMPT, layer=1)
    summary = head_summary(model, PROMPT, sequences=0)
    for group in range(model.n_kv_heads):
        perturbed = copy.deepcopy(reference)
        with torch.no_grad():
            k_proj = perturbed.model.layers[1].self_attn.k_proj.weight
            k_proj[group * d_head : (group + 1) * d_head] *= 3.0
        after = _reference_attentions(perturbed, ids)[1]
        changed = {
            h for h in range(model.n_heads) if not torch.allclose(after[h], before[h], atol=1e-4)
        }
        labelled = {h.head for h, g in zip(view.heads, view.kv_groups, strict=True) if g == group}
        assert changed == labelled == {2 * group, 2 * group + 1}
        in_frame = view.to_frame().query("kv_group == @group")["head_index"]
        assert set(in_frame) == labelled
        rows = summary.to_frame().query("layer == 1 and kv_group == @group")["head_index"]
        assert set(rows) == labelled


def _hand_scores(
    patterns: list[list[torch.Tensor]], tokens: list[list[int]], n_layers: int, n_heads: int
) -> dict[str, torch.Tensor]:
    """The four scores by plain loops: patterns[prompt][layer] is [head, q, k]."""
    sums = {name: torch.zeros(n_layers, n_heads, dtype=torch.float64) for name in SCORES}
    counts = dict.fromkeys(SCORES, 0)
    for pattern, ids in zip(patterns, tokens, strict=True):
        for q in range(len(ids)):
            keys = {
                "previous_token": [q - 1] if q >= 1 else [],
                "first_token": [0] if q >= 1 else [],
                "same_token": [k for k in range(q) if ids[k] == ids[q]],
                "induction": [k for k in range(1, q) if ids[k - 1] == ids[q]],
            }
            for name, chosen in keys.items():
                if not chosen:
                    continue
                counts[name] += 1
                for layer in range(n_layers):
                    for head in range(n_heads):
                        sums[name][layer, head] += sum(
                            float(pattern[layer][head, q, k]) for k in chosen
                        )
    return {name: sums[name] / counts[name] for name in SCORES} | {
        f"{name}_count": torch.tensor(counts[name]) for name in SCORES
    }


@pytest.mark.parametrize("architecture", ["llama", "gemma3"])
def test_summary_equals_a_hand_computation_on_plain_transformers(architecture: str) -> None:
    model, reference = _handle_and_reference(architecture)
    random = repeated_random_tokens(model, 3, 6, seed=1)
    user = model.tokenize(PROMPTS)
    tokens = [random.row(i).tolist() for i in range(len(random))]
    tokens += [user.row(i).tolist() for i in range(len(user))]
    patterns = [_reference_attentions(reference, torch.tensor(ids)) for ids in tokens]
    expected = _hand_scores(patterns, tokens, model.n_layers, model.n_heads)
    summary = head_summary(model, PROMPTS, sequences=3, length=6, seed=1, batch_size=2)
    assert summary.score_names == tuple(SCORES)
    for index, name in enumerate(SCORES):
        torch.testing.assert_close(summary.scores[index], expected[name], atol=1e-5, rtol=0)
        assert summary.counts[index] == int(expected[f"{name}_count"])
    assert summary.settings == {
        "sequences": 3,
        "length": 6,
        "seed": 1,
        "prompts": 3,
        "tokens": sum(len(ids) for ids in tokens),
    }
    # batching and sorting change nothing
    again = head_summary(model, PROMPTS, sequences=3, length=6, seed=1, batch_size=5)
    torch.testing.assert_close(again.scores, summary.scores, atol=1e-6, rtol=0)


def test_a_score_no_query_defines_is_nan(llama: ModelHandle) -> None:
    summary = head_summary(llama, "the cat sat", sequences=0)  # no token repeats
    frame = summary.to_frame()
    assert frame["same_token"].isna().all() and frame["induction"].isna().all()
    assert summary.counts == (2, 2, 0, 0)
    assert summary.top("induction", 3) == []
    assert frame["previous_token"].notna().all()


def test_repeated_random_tokens(llama: ModelHandle) -> None:
    batch = repeated_random_tokens(llama, 5, 7, seed=3)
    assert batch.input_ids.shape == (5, 14) and bool(batch.attention_mask.all())
    torch.testing.assert_close(batch.input_ids[:, :7], batch.input_ids[:, 7:])
    special = set(llama.tokenizer.all_special_ids)
    assert not special & set(batch.input_ids.flatten().tolist())
    assert torch.equal(repeated_random_tokens(llama, 5, 7, seed=3).input_ids, batch.input_ids)
    assert not torch.equal(repeated_random_tokens(llama, 5, 7, seed=4).input_ids, batch.input_ids)
    gemma = tiny_model("gemma3")  # its tokenizer adds BOS: so does every random row
    rows = repeated_random_tokens(gemma, 2, 4).input_ids
    bos = gemma.tokenizer.bos_token_id
    assert rows.shape == (2, 9) and rows[:, 0].tolist() == [bos, bos]
    assert bos not in rows[:, 1:].flatten().tolist()
    torch.testing.assert_close(rows[:, 1:5], rows[:, 5:])


def test_summary_defaults_and_result(llama: ModelHandle) -> None:
    summary = head_summary(llama)
    assert summary.settings["sequences"] == DEFAULT_SEQUENCES
    assert summary.settings["length"] == DEFAULT_LENGTH
    assert summary.scores.shape == (4, 2, 4)
    frame = summary.to_frame()
    assert list(frame.columns) == [
        "head", "layer", "head_index", "kv_group", *SCORES,
    ]  # fmt: skip
    assert frame["kv_group"].tolist() == [0, 0, 1, 1] * 2
    top = summary.top("previous_token", 3)
    assert [value for _, value in top] == sorted(frame["previous_token"], reverse=True)[:3]
    assert summary.score_of(top[0][0], "previous_token") == top[0][1]
    figure = summary.plot()
    assert isinstance(figure, Figure)
    titles = [axes.get_title() for axes in figure.axes if axes.get_title()]
    assert titles == ["previous token", "first token", "same token", "induction"]
    text = repr(summary)
    assert text.startswith("HeadSummary(2 layers × 4 heads") and "\n" not in text


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_results_save_and_load(llama: ModelHandle, tmp_path: Path, suffix: str) -> None:
    view = attention_pattern(llama, PROMPT, ["L0H1", "L1H3"])
    loaded = AttentionPattern.load(view.save(tmp_path / f"view{suffix}"))
    assert loaded.heads == view.heads and loaded.tokens == view.tokens
    assert torch.equal(loaded.pattern, view.pattern) and loaded.kv_groups == (0, 1)
    summary = head_summary(llama, PROMPTS, sequences=2, length=5)
    back = HeadSummary.load(summary.save(tmp_path / f"summary{suffix}"))
    assert torch.equal(back.scores, summary.scores) and back.counts == summary.counts
    assert back.settings == summary.settings


# ------------------------------------------------------------------ presentation
def test_frame_is_long_form_over_causal_pairs(llama: ModelHandle) -> None:
    view = attention_pattern(llama, PROMPT, ["L1H3", "L0H0"])
    n = len(view.tokens)
    frame = view.to_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 2 * n * (n + 1) // 2
    assert list(frame.columns) == [
        "head", "layer", "head_index", "kv_group", "query_pos", "query_token", "key_pos",
        "key_token", "weight",
    ]  # fmt: skip
    assert view.heads == (Head(0, 0), Head(1, 3))  # model order
    assert set(frame.query("head == 'L1H3'")["kv_group"]) == {1}
    row = frame.query("head == 'L1H3' and query_pos == 7 and key_pos == 2").iloc[0]
    assert row.query_token == view.tokens[7] and row.key_token == view.tokens[2]
    assert row.weight == pytest.approx(float(view.pattern[1, 7, 2]))
    sums = frame.groupby(["head", "query_pos"])["weight"].sum()
    assert sums.to_numpy() == pytest.approx(1.0, abs=1e-5)


def test_plot_has_a_panel_per_head_with_tokens_and_kv_groups(llama: ModelHandle) -> None:
    view = attention_pattern(llama, "the $ cat sat", layer=1)
    figure = view.plot()
    panels = [axes for axes in figure.axes if axes.get_title()]
    assert [axes.get_title() for axes in panels] == [
        f"L1H{h} · KV group {h // 2} of 2" for h in range(4)
    ]
    labels = [label.get_text() for label in panels[0].get_xticklabels()]
    assert labels == [f"{i} {t}".replace("$", r"\$") for i, t in enumerate(view.tokens)]
    assert isinstance(view.plot(columns=1), Figure)
    assert repr(view) == "AttentionPattern(L1H0, L1H1, L1H2, L1H3 on 4 tokens, model 'tiny-llama')"


class _Cells(HTMLParser):
    """The title of every table cell, and every tag name."""

    def __init__(self) -> None:
        super().__init__()
        self.titles: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "td":
            title = dict(attrs).get("title")
            if title is not None:
                self.titles.append(title)


def test_html_is_self_contained_escaped_and_hoverable(llama: ModelHandle, tmp_path: Path) -> None:
    prompt = "the <b> cat & sat on the mat"  # the tiny tokenizer turns '<b>' and '&' into <unk>
    view = attention_pattern(llama, prompt, ["L0H1", "L1H2"])
    assert "<unk>" in view.tokens
    page = view.to_html()
    assert view._repr_html_() == page
    for forbidden in ("http", "src=", "<link", "<script", "@import", "url("):
        assert forbidden not in page.lower()
    assert "<unk>" not in page and "&lt;unk&gt;" in page
    for token in view.tokens:
        assert html.escape(token) in page
    parser = _Cells()
    parser.feed(page)
    n = len(view.tokens)
    assert parser.tags.count("table") == 2
    assert len(parser.titles) == 2 * n * (n + 1) // 2  # one hover text per causal cell
    weight = float(view.pattern[1, 5, 2])
    expected = f"5 {view.tokens[5]!r} → 2 {view.tokens[2]!r}: {weight:.3f}"
    assert parser.titles[n * (n + 1) // 2 + 5 * 6 // 2 + 2] == expected
    assert "KV group 1 of 2" in page and "overflow-x:auto" in page
    path = view.save_html(tmp_path / "view.html")
    written = path.read_text(encoding="utf-8")
    assert written.startswith("<!DOCTYPE html>") and page in written
    assert 'name="viewport"' in written and "http" not in written
    assert [p.name for p in tmp_path.iterdir()] == ["view.html"]  # no partial file left


# ------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize(
    ("heads", "layer", "message"),
    [
        ("L1H4", None, r"refers to head 4, but each layer has 4 heads \(0 \.\. 3\)"),
        ("L2H0", None, r"refers to layer 2, but the model has 2 layers \(0 \.\. 1\)"),
        (None, 2, r"layer=2 is out of range: the model has 2 layers \(0 \.\. 1\)"),
        (None, -1, r"layer=-1 is out of range"),
        ("MLP1", None, "MLP1 is not an attention head.*L3H1.*layer="),
        (Mlp(1), None, "MLP1 is not an attention head"),
        ("L1", None, "L1 is not an attention head"),
        ("head three", None, "Cannot parse component 'head three'"),
        (None, None, "No heads to show"),
        ([], None, "No heads to show"),
        (3, None, "heads must be"),
    ],
)
def test_bad_heads_and_layers(
    llama: ModelHandle, heads: object, layer: object, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        attention_pattern(llama, PROMPT, heads, layer=layer)  # type: ignore[arg-type]


def test_gqa_head_errors_say_query_versus_key_value_heads(llama: ModelHandle) -> None:
    with pytest.raises(InputError) as caught:
        attention_pattern(llama, PROMPT, "L0H7")
    text = str(caught.value)
    assert "0 .. 3" in text and "query heads" in text and "2 key/value heads" in text
    gpt2 = tiny_model("gpt2")  # no GQA: no note
    with pytest.raises(InputError) as plain:
        attention_pattern(gpt2, PROMPT, "L0H7")
    assert "key/value" not in str(plain.value)


def test_bad_prompts_and_summary_arguments(llama: ModelHandle) -> None:
    with pytest.raises(InputError, match="The prompt is empty"):
        attention_pattern(llama, "", "L0H0")
    with pytest.raises(InputError, match="prompt must be"):
        attention_pattern(llama, ["a", "b"], "L0H0")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="has no tokens"):
        attention_pattern(llama, "   ", "L0H0")
    with pytest.raises(InputError, match="No data to summarise"):
        head_summary(llama, sequences=0)
    with pytest.raises(InputError, match="an empty list"):
        head_summary(llama, [])
    with pytest.raises(InputError, match="sequences must be at least 0"):
        head_summary(llama, sequences=-1)
    with pytest.raises(InputError, match="does not fit the model's context of 128"):
        head_summary(llama, length=100)
    summary = head_summary(llama, "a cat a cat", sequences=0)
    with pytest.raises(InputError, match="Unknown score 'copying'; choose one of previous_token"):
        summary.top("copying")
    with pytest.raises(InputError, match="n must be at least 1"):
        summary.top("induction", 0)
    with pytest.raises(InputError, match="outside this summary"):
        summary.score_of("L5H0", "induction")
    view = attention_pattern(llama, PROMPT, "L0H0")
    with pytest.raises(InputError, match="L1H1 is not in this view; it shows L0H0"):
        view.weights("L1H1")


# ------------------------------------------------------------------ command line
def _run(arguments: list[str]) -> None:
    """Parse as ``circuitlab attention ...`` and run the handler as commands.py does."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = sub.choices["attention"]  # the CLI's defaults are the library's
    assert command.get_default("sequences") == DEFAULT_SEQUENCES
    assert command.get_default("length") == DEFAULT_LENGTH
    args = parser.parse_args(["attention", *arguments])
    cli.check_arguments(args)
    cli.attention_command(args, load(args.model, device=args.device, dtype=args.dtype))


def test_cli_pattern_view_prints_and_writes(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page, figure, out = tmp_path / "view.html", tmp_path / "view.png", tmp_path / "view.json"
    _run([
        "--model", str(tiny_folder), "--prompt", "the cat sat on the mat", "--head", "L1H3",
        "--head", "L0H0", "--html", str(page), "--plot", str(figure), "--json", str(out),
    ])  # fmt: skip
    printed = capsys.readouterr().out
    view = AttentionPattern.from_document(json.loads(out.read_text()))
    assert view.heads == (Head(0, 0), Head(1, 3)) and len(view.tokens) == 6
    assert "L1H3 (KV group 1 of 2): query → the key it attends to most" in printed
    for query, key, weight in view.strongest_keys("L1H3"):
        line = f"{query:>3} {view.tokens[query]!r:<16} → {key:>3} {view.tokens[key]!r:<16} "
        assert f"  {line}{weight:.2f}" in printed
    assert "http" not in page.read_text() and figure.stat().st_size > 1000
    assert json.loads(out.read_text())["run"]["seconds"] > 0


def test_cli_summary_prints_top_heads_per_score(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, figure = tmp_path / "summary.json", tmp_path / "summary.png"
    _run([
        "--model", str(tiny_folder), "--summary", "--prompt", "a cat a cat", "--top", "2",
        "--sequences", "4", "--length", "6", "--json", str(out), "--plot", str(figure),
    ])  # fmt: skip
    printed = capsys.readouterr().out
    summary = HeadSummary.from_document(json.loads(out.read_text()))
    assert summary.settings["sequences"] == 4 and summary.settings["prompts"] == 1
    for name in SCORES:
        ranked = ", ".join(f"{h} {v:.2f}" for h, v in summary.top(name, 2))
        assert f"  {name:<15} {ranked}" in printed
    assert figure.stat().st_size > 1000


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--head", "L0H0"], "give exactly one --prompt TEXT \\(got 0\\)"),
        (["--prompt", "a", "--prompt", "b", "--head", "L0H0"], "got 2"),
        (["--prompt", "a"], "Name the heads to show: --head L3H1"),
        (["--summary", "--head", "L0H0"], "--head belong to the pattern view"),
        (["--summary", "--html", "x.html", "--layer", "1"], "Drop --layer, --html"),
        (["--summary", "--sequences", "0"], "--sequences 0 leaves no data"),
    ],
)
def test_cli_refuses_options_that_do_not_go_together(arguments: list[str], message: str) -> None:
    args = build_parser().parse_args(["attention", *arguments])
    with pytest.raises(InputError, match=message):
        cli.check_arguments(args)


def test_cli_errors_name_the_flags(tiny_folder: Path) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = sub.choices["attention"]
    with pytest.raises(InputError) as caught:
        _run(["--model", str(tiny_folder), "--prompt", "a cat", "--layer", "5"])
    assert re.search(r"--layer 5 is out of range", cli_message(str(caught.value), command))


WRONG_VALUES = [None, "abc", -1, 0, 2.5, [], float("nan"), object(), True]


def test_wrong_values_get_circuitlab_errors(
    llama: ModelHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every parameter of the entry points and of the results' methods, a row of wrong values:
    a circuitlab error or a normal result, never a raw exception."""
    monkeypatch.chdir(tmp_path)  # save_html("abc") writes a file named abc: keep it here
    calls = [
        (attention_pattern, {"prompt": "the cat sat", "heads": "L0H1", "layer": 1}),
        (head_summary, {"prompts": ["a cat a cat"], "sequences": 2, "length": 4, "batch_size": 2}),
    ]
    view = attention_pattern(llama, "the cat sat", "L0H1")
    summary = head_summary(llama, sequences=2, length=4)
    for result in (view, summary):
        for name in ("weights", "strongest_keys", "plot", "save_html", "top", "score_of"):
            method = getattr(result, name, None)
            if method is not None:
                calls.append((method, {}))
    raw = []
    for function, arguments in calls:
        parameters = [
            p for p in inspect.signature(function).parameters if p not in ("model", "progress")
        ]
        for parameter in parameters:
            for value in [*WRONG_VALUES, 10**6] if not arguments else WRONG_VALUES:
                call = {**arguments, parameter: value}
                try:
                    function(llama, **call) if arguments else function(**call)
                except CircuitlabError:
                    continue
                except TypeError as error:  # another required argument is missing: fine
                    if not arguments and "missing" in str(error) and "required" in str(error):
                        continue
                    raw.append(f"{function.__name__}({parameter}={value!r}): {error!r}")
                except Exception as error:
                    raw.append(f"{function.__name__}({parameter}={value!r}): {error!r}")
    assert not raw, "\n".join(raw)
