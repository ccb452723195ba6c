"""Hallucination-prone layers: answer sets, the span readers, HSAV / HSS / EAVSS (tiny models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from circuitlab import sites
from circuitlab.collector import EVERY_TOKEN, collect
from circuitlab.errors import InputError
from circuitlab.hallucination.data import AnswerSet, load_labelled_answers
from circuitlab.readers import GroupMoments, SpanMean
from circuitlab.statistics import MomentStatistics
from circuitlab.testing import tiny_model

TEXTS = ["the cat sat on the mat", "a dog ran", "the sky is blue and green", "red city film"]
STARTS = [2, 1, 3, 0]
GROUPS = [0, 1, 1, 0]


def _cached(model, text: str, site) -> torch.Tensor:
    _, cache = model.run_with_cache(text, names=[site])
    return cache[site.hook_name][0]  # [pos, d]


def test_group_moments_and_span_mean_read_only_the_span_of_each_group() -> None:
    model = tiny_model("llama")
    site = sites.resid_post(1)
    readers = {
        "moments": GroupMoments(site, 0.05, GROUPS, start=STARTS),
        "mean": SpanMean(site, STARTS),
    }
    out = collect(model, TEXTS, readers, positions=EVERY_TOKEN, batch_size=3)
    spans = [_cached(model, text, site)[start:] for text, start in zip(TEXTS, STARTS, strict=True)]
    for group in (0, 1):
        expected = MomentStatistics(0.05)
        expected.update(torch.cat([s for s, g in zip(spans, GROUPS, strict=True) if g == group]))
        got = out["moments"][group]
        assert got.count == expected.count
        assert got.variance == pytest.approx(expected.variance, rel=1e-5)  # float32 passes
        assert got.sparsity == pytest.approx(expected.sparsity)
    torch.testing.assert_close(
        out["mean"], torch.stack([s.mean(0) for s in spans]), atol=1e-5, rtol=1e-5
    )


def test_span_readers_refuse_bad_starts() -> None:
    model = tiny_model("llama")
    site = sites.resid_post(0)
    with pytest.raises(InputError, match="no token at or after"):
        collect(model, TEXTS, {"m": SpanMean(site, [2, 1, 3, 50])}, positions=EVERY_TOKEN)
    with pytest.raises(InputError, match="positions='all'"):
        collect(model, TEXTS, {"m": SpanMean(site, STARTS)})
    with pytest.raises(InputError, match="one position per prompt"):
        GroupMoments(site, 0.05, GROUPS, start=[1, 2])


def _answer_set() -> AnswerSet:
    questions = tuple(f"question {i}?" for i in range(10))
    return AnswerSet(
        prompts=tuple(f"Q: {q}\nA:" for q in questions),
        answers=tuple(" yes" if i % 3 else " no" for i in range(10)),
        truthful=tuple(bool(i % 3) for i in range(10)),
        question=tuple(range(10)),
        questions=questions,
        golds=tuple(("yes",) for _ in questions),
    )


def test_answer_set_splits_by_question_stratified() -> None:
    answers = _answer_set()
    assert answers.counts() == (6, 4)
    train, val, test = answers.split((0.6, 0.2, 0.2), seed=0)
    assert sorted([*train.questions, *val.questions, *test.questions]) == sorted(answers.questions)
    for part in (train, val, test):
        assert part.counts()[1] >= 1  # each split has hallucinated answers
    assert (
        train.split((0.5, 0.5), seed=0)[0].questions == train.split((0.5, 0.5), seed=0)[0].questions
    )
    with pytest.raises(InputError, match="sum to 1"):
        answers.split((0.5, 0.2))


def test_all_right_or_all_wrong_has_nothing_to_contrast() -> None:
    answers = _answer_set()
    right = answers.subset([1, 2, 4, 5])
    with pytest.raises(InputError, match="Every one of the 4 answers is right"):
        right.check_contrast()
    wrong = answers.subset([0, 3])
    with pytest.raises(InputError, match="is wrong"):
        wrong.check_contrast()


def test_labelled_answers_from_jsonl_and_csv(tmp_path: Path) -> None:
    rows = [
        {"question": "What is 2+2?", "correct_answers": ["4", "four"], "incorrect_answers": ["5"]},
        {"question": "Capital of France?", "correct_answers": "Paris", "incorrect_answers": []},
    ]
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    answers = load_labelled_answers(jsonl)
    assert answers.counts() == (3, 1) and answers.question == (0, 0, 0, 1)
    assert answers.answers[2] == " 5" and answers.prompts[0].endswith("Q: What is 2+2?\nA:")
    csv_file = tmp_path / "qa.csv"
    csv_file.write_text("question,correct_answers,incorrect_answers\nWhat is 2+2?,4; four,5;6\n")
    assert load_labelled_answers(csv_file).counts() == (2, 2)
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"question": "q?", "incorrect_answers": ["x"]}) + "\n")
    with pytest.raises(InputError, match="no 'correct_answers' field"):
        load_labelled_answers(missing)
    no_gold = tmp_path / "nogold.jsonl"
    no_gold.write_text(json.dumps({"question": "q?", "correct_answers": []}) + "\n")
    with pytest.raises(InputError, match="has no correct answer"):
        load_labelled_answers(no_gold)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="holds no questions"):
        load_labelled_answers(empty)
    with pytest.raises(InputError, match=r"use \.jsonl, \.json or \.csv"):
        load_labelled_answers(tmp_path / "qa.txt")


def tiny_answers(n: int = 24) -> AnswerSet:
    words = "the a cat dog sky city movie film good bad great blue green red".split()
    generator = torch.Generator().manual_seed(1)
    picks = torch.randint(len(words), (n, 5), generator=generator).tolist()
    questions = tuple(" ".join(words[i] for i in row[:3]) + " ?" for row in picks)
    return AnswerSet(
        prompts=tuple(f"q : {q} a :" for q in questions),
        answers=tuple(" " + " ".join(words[i] for i in row[3:]) for row in picks),
        truthful=tuple(i % 2 == 0 for i in range(n)),
        question=tuple(range(n)),
        questions=questions,
        golds=tuple(("cat",) for _ in questions),
    )


def test_scores_follow_their_definitions() -> None:
    from circuitlab.hallucination.scores import (
        HALLUCINATION_METHODS,
        answer_starts,
        hallucination_scores,
    )

    model = tiny_model("llama")
    answers = tiny_answers()
    scores = hallucination_scores(model, answers, epsilon=0.05)
    assert set(scores) == set(HALLUCINATION_METHODS)
    starts = answer_starts(model, answers)
    layer = 1
    groups = {True: MomentStatistics(0.05), False: MomentStatistics(0.05)}
    for text, start, right in zip(answers.texts(), starts.tolist(), answers.truthful, strict=True):
        groups[right].update(_cached(model, text, sites.resid_post(layer))[start:])
    var_t, var_h = groups[True].variance, groups[False].variance
    sp_t, sp_h = groups[True].sparsity, groups[False].sparsity
    details = scores["eavss"].details
    assert details["hsav_signed"][layer] == pytest.approx(
        (var_h - var_t) / (var_h + var_t), rel=1e-4
    )
    assert details["hss_signed"][layer] == pytest.approx((sp_t - sp_h) / (sp_t + sp_h), abs=1e-6)
    assert scores["hsav"].values[layer] == pytest.approx(abs(details["hsav_signed"][layer]))
    all_var_t = torch.tensor(details["variance_truthful"])
    all_var_h = torch.tensor(details["variance_hallucinated"])
    avss_t = var_t / float(all_var_t.sum()) / sp_t
    avss_h = var_h / float(all_var_h.sum()) / sp_h
    assert scores["eavss"].values[layer] == pytest.approx(
        abs(torch.log(torch.tensor(avss_h / avss_t)).item()), rel=1e-4
    )
    assert all(0 <= value <= 1 for value in scores["probe"].values)
    assert scores["probe"].settings["truthful"] == 12


def test_scores_refuse_data_without_contrast() -> None:
    from circuitlab.hallucination.scores import hallucination_scores

    model = tiny_model("llama")
    answers = tiny_answers()
    right = answers.subset([i for i in range(24) if i % 2 == 0])
    with pytest.raises(InputError, match="answers is right"):
        hallucination_scores(model, right)
    with pytest.raises(InputError, match="Unknown site"):
        hallucination_scores(model, answers, site="resid")


def test_continuation_logprobs_are_mean_token_logprobs_of_the_answer() -> None:
    from circuitlab.hallucination.contrastive import continuation_logprobs

    model = tiny_model("llama")
    prompts, answers = ["the cat sat", "a dog"], [" on the mat", " ran"]
    got, pooled = continuation_logprobs(model, prompts, answers, layers=[1])
    for row, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
        start = int(model.tokenize(prompt).lengths[0])
        tokens = model.tokenize(prompt + answer).input_ids[0]
        log_probs = torch.log_softmax(model.logits(prompt + answer)[0], dim=-1)
        expected = torch.stack(
            [log_probs[t - 1, tokens[t]] for t in range(start, len(tokens))]
        ).mean()
        assert float(got[row]) == pytest.approx(float(expected), abs=1e-5)
        hidden = _cached(model, prompt + answer, sites.resid_post(1))[start:]
        torch.testing.assert_close(pooled[1][row], hidden.mean(0), atol=1e-5, rtol=1e-5)


def test_contrastive_loss_terms() -> None:
    from circuitlab.hallucination.contrastive import contrastive_loss, representation_loss

    correct = torch.tensor([-1.0, -2.0])
    incorrect = torch.tensor([[-1.5, -3.0], [float("-inf"), float("-inf")]])
    # question 0: -(-1) + 1 * max(0, 1 - (-1 - -1.5)) = 1 + 0.5; question 1: 2 (no ranking)
    loss = contrastive_loss(correct, incorrect, margin=1.0, ranking_weight=1.0)
    assert float(loss) == pytest.approx((1.5 + 2.0) / 2)
    assert float(contrastive_loss(correct, incorrect[:, :0])) == pytest.approx(1.5)
    pooled = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    truthful = torch.tensor([True, True, False])
    near = representation_loss(pooled, truthful, 0.1)
    far = representation_loss(pooled[[0, 2, 1]], truthful, 0.1)  # positive is now the far one
    assert 0 <= float(near) < float(far)


def test_contrastive_finetune_trains_only_the_chosen_layers() -> None:
    from circuitlab.hallucination.contrastive import contrastive_finetune, contrastive_pairs

    model = tiny_model("llama")
    answers = tiny_answers(12)
    pairs = contrastive_pairs(answers)
    assert len(pairs) == 12 and sum(bool(pair.incorrect) for pair in pairs) == 6
    run = contrastive_finetune(
        model, answers, [1], epochs=4, batch_size=6, learning_rate=5e-3,
        representation_weight=0.5, seed=0,
    )  # fmt: skip
    assert run.history.epochs == 4 and run.history.losses[-1] < run.history.losses[0]
    assert run.settings["steps"] == 8
    lora = [name for name, _ in model.hf_model.named_parameters() if "lora_" in name]
    assert lora and all(".layers.1." in name for name in lora)
    with pytest.raises(InputError, match="at least one layer"):
        contrastive_finetune(tiny_model("llama"), answers, [])


_KILLED_RUN = """
import os, sys
import torch
from safetensors.torch import save_file
import circuitlab.hallucination.contrastive as contrastive
sys.path.insert(0, {tests!r})
from test_hallucination import tiny_answers
from circuitlab.testing import tiny_model

kill_at = int(sys.argv[1])
calls = [0]
original = contrastive.continuation_logprobs

def counting(*args, **kwargs):
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), 9)  # like kill -9: no cleanup, no flush
    return original(*args, **kwargs)

contrastive.continuation_logprobs = counting
model = tiny_model("llama")
run = contrastive.contrastive_finetune(
    model, tiny_answers(12), [1], epochs=4, batch_size=6, learning_rate=5e-3,
    checkpoint=sys.argv[2],
)
save_file(run.adapter.state_dict(), sys.argv[3])
"""


def test_a_killed_training_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    import subprocess
    import sys

    from safetensors.torch import load_file

    from circuitlab.hallucination.contrastive import contrastive_finetune

    script = tmp_path / "run.py"
    script.write_text(_KILLED_RUN.format(tests=str(Path(__file__).parent)))
    state, out = tmp_path / "state.safetensors", tmp_path / "adapter.safetensors"
    killed = subprocess.run([sys.executable, str(script), "6", str(state), str(out)], check=False)
    assert killed.returncode == -9 and state.exists() and not out.exists()  # died in epoch 3
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    resumed = subprocess.run([sys.executable, str(script), "0", str(state), str(out)], check=False)
    assert resumed.returncode == 0

    model = tiny_model("llama")
    run = contrastive_finetune(
        model, tiny_answers(12), [1], epochs=4, batch_size=6, learning_rate=5e-3
    )
    expected = run.adapter.state_dict()
    got = load_file(out)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=1e-5)
    other = contrastive_finetune(
        tiny_model("llama"), tiny_answers(12), [1], epochs=4, batch_size=6,
        learning_rate=5e-3, checkpoint=state,
    )  # fmt: skip
    assert other.history.epochs == 4  # a finished checkpoint returns its history at once
    with pytest.raises(InputError, match="belongs to another run"):
        contrastive_finetune(tiny_model("llama"), tiny_answers(12), [0], epochs=4, checkpoint=state)


def test_hallucination_rates_split_every_question(monkeypatch: pytest.MonkeyPatch) -> None:
    import circuitlab.evaluation.qa as qa
    from circuitlab.evaluation.data import FactualQuestion
    from circuitlab.hallucination import hallucination_rates

    questions = [
        FactualQuestion("Capital of France?", "Paris"),
        FactualQuestion("2+2?", "4", ("four",)),
        FactualQuestion("Red planet?", "Mars"),
        FactualQuestion("Author of Hamlet?", "Shakespeare"),
    ]
    replies = ["Paris, France", "five", "", "William Shakespeare"]
    monkeypatch.setattr(qa, "greedy_continuations", lambda model, prompts, **kw: replies)
    rates = hallucination_rates(tiny_model("llama"), questions)
    assert rates.as_dict() == {"accuracy": 0.5, "hallucination_rate": 0.25, "abstention_rate": 0.25}
    with pytest.raises(InputError, match="No questions"):
        hallucination_rates(tiny_model("llama"), [])
