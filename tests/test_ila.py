"""ILA on tiny models: instruction data, the two stages, gates in the one ΔW function, rankings,
overlap, the peft config, and resuming an interrupted run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from peft import PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from circuitlab import InputError
from circuitlab.ila import (
    INSTRUCTION_SETS,
    ILARanking,
    InstructionSet,
    LoraGates,
    RankingOverlap,
    encode_instructions,
    fit_gates,
    fit_lora,
    ila_rank,
    instruction_loss,
    jaccard,
    load_instructions,
    ranking_overlap,
    response_loss,
)
from circuitlab.interventions.export import export_hf
from circuitlab.layers import LayerScores
from circuitlab.lora import add_lora, lora_modules
from circuitlab.testing import tiny_hf_model, tiny_model

PAIRS = InstructionSet(
    "toy",
    tuple(f"the cat {word}" for word in ("sat", "ran", "is", "a", "on", "mat", "dog", "the")),
    tuple("the dog sat on the mat ." for _ in range(8)),
)


# ------------------------------------------------------------------ data


def test_shipped_sets_have_both_splits_and_differ() -> None:
    sizes = {}
    for name in INSTRUCTION_SETS:
        train = load_instructions(name)
        heldout = load_instructions(name, split="heldout")
        everything = load_instructions(name, split=None)
        assert len(train) >= 200 and len(heldout) >= 40
        assert len(train) + len(heldout) == len(everything)
        assert not set(train.instructions) & set(heldout.instructions)
        sizes[name] = sum(len(r.split()) for r in train.responses) / len(train)
    assert sizes["steps"] > 3 * sizes["facts"]  # different styles: step-by-step is longer
    assert all(
        r.strip().splitlines()[-1].startswith("Answer:")
        for r in load_instructions("steps").responses
    )


def test_user_files_and_datasets(tmp_path: Path) -> None:
    rows = [{"q": f"question {i}", "a": f"answer {i}"} for i in range(10)]
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    data = load_instructions(jsonl, instruction_column="q", response_column="a")
    assert len(data) == 10 and data.responses[3] == "answer 3"
    csv = tmp_path / "pairs.csv"
    csv.write_text("q,a\n" + "".join(f"{r['q']},{r['a']}\n" for r in rows))
    assert load_instructions(csv, instruction_column="q", response_column="a") == data.__class__(
        "pairs.csv", data.instructions, data.responses
    )
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_list(rows)
    from_hub_type = load_instructions(dataset, instruction_column="q", response_column="a")
    assert from_hub_type.instructions == data.instructions
    train, heldout = data.split_off(0.2, seed=1)
    assert len(train) == 8 and len(heldout) == 2
    assert set(train.instructions) | set(heldout.instructions) == set(data.instructions)


@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        ("", {}, "holds no instruction/response pairs"),
        ('{"instruction": "x"}\n', {}, "has no 'response' field"),
        ('{"instruction": "x", "response": ""}\n', {}, "must be non-empty text"),
        ('{"instruction": "x", "response": 3}\n', {}, "must be non-empty text"),
        ('{"instruction": "x", "response": "y"\n', {}, "not valid JSON"),
        ('{"instruction": "x", "response": "y"}\n', {"split": "heldout"}, "has no 'split' field"),
        ('{"instruction": "x", "response": "y"}\n', {"split": "test"}, "is not a split"),
        ('["x", "y"]\n', {}, "is not an object"),
    ],
)
def test_bad_instruction_files(tmp_path: Path, content: str, options: dict, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_instructions(path, **options)


def test_unknown_source_is_named() -> None:
    with pytest.raises(InputError, match="neither a shipped instruction set"):
        load_instructions("poems")


def test_only_responses_are_scored_and_long_ones_are_truncated() -> None:
    model = tiny_model("llama")
    encoded = encode_instructions(model, PAIRS)
    prompt = model.tokenize("### Instruction:\nthe cat sat\n\n### Response:\n").row(0).tolist()
    assert list(encoded.rows[0][: len(prompt)]) == prompt and encoded.starts[0] == len(prompt)
    assert encoded.rows[0][-1] == model.tokenizer.eos_token_id
    limit = len(encoded.rows[0]) - 3
    with pytest.warns(UserWarning, match=r"8 of 8 responses in toy were longer than the "):
        cut = encode_instructions(model, PAIRS, max_length=limit)
    assert cut.truncated == 8 and max(len(row) for row in cut.rows) == limit
    with pytest.raises(InputError, match="leaves no room for its response"):
        encode_instructions(model, PAIRS, max_length=len(prompt))


def test_collector_loss_equals_training_loss() -> None:
    """The held-out loss (one collector pass) and the training loss agree on the same data."""
    model = tiny_model("qwen2")
    encoded = encode_instructions(model, PAIRS)
    batch, starts = encoded.batch(range(len(encoded)), model.pad_token_id)
    with torch.no_grad():
        direct = float(response_loss(model, batch, starts))
    assert instruction_loss(model, PAIRS, batch_size=3) == pytest.approx(direct, rel=1e-5)


# ------------------------------------------------------------------ gates and ΔW


@pytest.mark.parametrize("architecture", ["llama", "gpt2", "gemma3"])
def test_gated_model_computes_and_exports_w0_plus_gamma_delta(
    architecture: str, tmp_path: Path
) -> None:
    model = tiny_model(architecture)
    batch = model.tokenize(["the cat sat on the mat", "a dog ."])
    base = model.logits(batch)
    torch.manual_seed(0)
    adapter = add_lora(model, [0, 1], r=2, init=False)  # random A and B: ΔW ≠ 0
    full = model.logits(batch)
    with LoraGates(model, unit="matrix") as gates:
        assert len(gates.keys) == len(lora_modules(model))
        with torch.no_grad():
            gates.scores.fill_(-math.inf)  # γ = 0: the base model
        torch.testing.assert_close(model.logits(batch), base, atol=1e-5, rtol=0)
        with torch.no_grad():
            gates.scores.fill_(math.inf)  # γ = 1: the full adapter
        torch.testing.assert_close(model.logits(batch), full, atol=1e-5, rtol=0)
        with torch.no_grad():
            gates.scores.copy_(torch.linspace(-2, 2, len(gates.keys)))
        gated = model.logits(batch)
        assert (gated - full).abs().max() > 1e-3 and (gated - base).abs().max() > 1e-3
        export_hf(model, [], tmp_path / "gated")  # bakes W0 + γ·ΔW through lora_delta
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "gated", attn_implementation="eager")
    with torch.no_grad():
        reloaded = plain(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    mask = batch.attention_mask.bool()
    torch.testing.assert_close(reloaded[mask], gated[mask], atol=1e-4, rtol=0)
    torch.testing.assert_close(model.logits(batch), full, atol=1e-5, rtol=0)  # gates removed
    adapter.remove()


def test_stage_two_needs_an_adapter() -> None:
    with pytest.raises(InputError, match=r"carries no LoRA adapter.*fit_lora.*load_lora"):
        fit_gates(tiny_model("llama"), PAIRS)


def test_gates_find_the_layer_whose_update_matters() -> None:
    """Layer 0's update is zeroed after stage 1, so only layer 1's can lower the loss: under the
    budget, layer 1's gate must end above layer 0's."""
    model = tiny_model("llama")
    fit = fit_lora(model, PAIRS, learning_rate=2e-2, stable=None, max_steps=15, batch_size=4)
    assert fit.history.step_losses[-1] < fit.history.step_losses[0]
    with torch.no_grad():
        for layer, _, module in lora_modules(model):
            if layer == 0:
                module.lora_B["default"].weight.zero_()
    gate_fit = fit_gates(model, PAIRS, steps=15, batch_size=4)
    gamma = gate_fit.layer_gamma
    assert gamma[1] > gamma[0] + 0.05
    assert gamma[0] < 0.25 < gamma[1]  # the budget's start: layer 0 fell, layer 1 rose
    gate_fit.gates.remove()
    fit.adapter.remove()


def test_stage_one_stops_when_the_loss_is_stable() -> None:
    model = tiny_model("llama")
    fit = fit_lora(model, PAIRS, learning_rate=2e-2, stable=0.5, window=2, max_steps=50)
    assert fit.history.stopped == "stable" and 4 <= fit.history.steps < 50
    fit.adapter.remove()
    fixed = fit_lora(model, PAIRS, learning_rate=2e-2, stable=None, max_steps=7, batch_size=3)
    assert fixed.history.stopped == "max_steps" and fixed.history.steps == 7
    fixed.adapter.remove()


# ------------------------------------------------------------------ rankings


def test_ila_rank_leaves_the_model_as_it_was_and_gives_a_peft_config(tmp_path: Path) -> None:
    model = tiny_model("llama")
    batch = model.tokenize(["the cat sat"])
    before = model.logits(batch)
    ranking = ila_rank(
        model, PAIRS, max_steps=6, gate_steps=4, unit="matrix", save_adapter=tmp_path / "a"
    )
    torch.testing.assert_close(model.logits(batch), before, atol=0, rtol=0)
    assert isinstance(ranking, ILARanking) and ranking.n_layers == 2
    assert ranking.stage1["steps"] == 6 and ranking.stage2["steps"] == 4
    assert set(ranking.top(1) + ranking.bottom(1)) == {0, 1}
    frame = ranking.to_frame()
    assert {"gamma", "gamma_q_proj", "gamma_down_proj"} <= set(frame.columns)
    for k in (0, 3):
        with pytest.raises(InputError, match="cannot be chosen from a model with 2 layers"):
            ranking.top(k)
    config = ranking.lora_config(model, 1)
    assert config.layers_to_transform == list(ranking.top(1))
    plain, _ = tiny_hf_model("llama")
    peft_model = get_peft_model(plain, config)
    adapted = {n.split(".layers.")[1].split(".")[0] for n, _ in peft_model.named_parameters()
               if "lora_" in n}  # fmt: skip
    assert adapted == {str(layer) for layer in ranking.top(1)}
    base, _ = tiny_hf_model("llama")
    assert PeftModel.from_pretrained(base, tmp_path / "a") is not None  # stage-1 adapter reloads
    ranking.plot()
    assert ILARanking.load(ranking.save(tmp_path / "r.json")).gamma == ranking.gamma


def test_overlap_matrix() -> None:
    scores = {
        "a": LayerScores("ila", (0.9, 0.8, 0.1, 0.2)),
        "b": LayerScores("ila", (0.9, 0.1, 0.8, 0.2)),
        "c": LayerScores("ila", (0.9, 0.8, 0.2, 0.1)),
    }
    overlap = ranking_overlap(scores, k=2)
    assert isinstance(overlap, RankingOverlap)
    assert overlap.matrix[0] == (1.0, 1 / 3, 1.0)
    assert overlap.mean == pytest.approx((1 / 3 + 1 + 1 / 3) / 3)
    assert ranking_overlap(scores).k == 1  # 25% of 4 layers
    assert jaccard({1, 2}, {2, 3}) == pytest.approx(1 / 3)
    with pytest.raises(InputError, match="at least two rankings"):
        ranking_overlap({"a": scores["a"]})
    with pytest.raises(InputError, match="cannot be chosen"):
        ranking_overlap(scores, k=5)
    overlap.plot()


def test_interrupted_run_resumes_to_the_same_ranking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed in stage 2 (after stage 1 finished), the same call restores stage 1, resumes stage
    2 from its last epoch, and ends where an uninterrupted run ends."""
    options = {"max_steps": 6, "gate_steps": 6, "batch_size": 4, "stable": None}
    reference = ila_rank(tiny_model("llama"), PAIRS, **options)
    from circuitlab.ila import fit as fit_module

    real = fit_module.response_loss
    calls = {"n": 0}

    def dying(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 6 + 3:  # the 3rd stage-2 step: mid-way through stage 2's 2nd epoch
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(fit_module, "response_loss", dying)
    model = tiny_model("llama")
    with pytest.raises(KeyboardInterrupt):
        ila_rank(model, PAIRS, checkpoint=tmp_path / "ck", **options)
    assert not lora_modules(model)  # the failed run took its adapter off
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "stage1.safetensors",
        "stage2.safetensors",
    ]
    monkeypatch.setattr(fit_module, "response_loss", real)
    resumed = ila_rank(model, PAIRS, checkpoint=tmp_path / "ck", **options)
    assert resumed.gamma == pytest.approx(reference.gamma, abs=1e-6)
    assert resumed.stage1["step_losses"] == pytest.approx(reference.stage1["step_losses"])


_KILLED_RANKING = """
import json, os, sys
sys.path.insert(0, {tests!r})
import circuitlab.ila.fit as fit
from circuitlab.ila import ila_rank
from circuitlab.testing import tiny_model
from test_ila import PAIRS

kill_at = int(sys.argv[1])
calls = [0]
original = fit.response_loss

def counting(*args, **kwargs):
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), 9)  # like kill -9: no cleanup, no flush
    return original(*args, **kwargs)

fit.response_loss = counting
ranking = ila_rank(tiny_model("llama"), PAIRS, max_steps=6, gate_steps=6, batch_size=4,
                   stable=None, checkpoint=sys.argv[2])
open(sys.argv[3], "w").write(json.dumps(list(ranking.gamma)))
"""


@pytest.mark.parametrize("kill_at", [4, 9])  # in stage 1; in stage 2
def test_a_killed_ranking_resumes_to_the_uninterrupted_result(tmp_path: Path, kill_at: int) -> None:
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(_KILLED_RANKING.format(tests=str(Path(__file__).parent)))
    folder, out = tmp_path / "ck", tmp_path / "gamma.json"
    killed = subprocess.run([sys.executable, str(script), str(kill_at), str(folder), str(out)])
    assert killed.returncode == -9 and not out.exists()
    assert not [p for p in folder.iterdir() if p.name.endswith(".partial")]
    resumed = subprocess.run([sys.executable, str(script), "0", str(folder), str(out)])
    assert resumed.returncode == 0
    options = {"max_steps": 6, "gate_steps": 6, "batch_size": 4, "stable": None}
    expected = ila_rank(tiny_model("llama"), PAIRS, **options)
    assert json.loads(out.read_text()) == pytest.approx(list(expected.gamma), abs=1e-6)
