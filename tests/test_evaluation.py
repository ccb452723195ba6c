"""The evaluation harness (QA, perplexity, sentiment) and the pruning study, on tiny models."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

import circuitlab
from circuitlab.errors import InputError
from circuitlab.evaluation import (
    EvaluationSuite,
    FactualQuestion,
    answer_matches,
    classification_accuracy,
    greedy_continuations,
    load_factual_qa,
    load_heldout_prose,
    normalize_answer,
    perplexity,
    qa_accuracy,
    retention,
)
from circuitlab.evaluation.qa import QA_DEMOS, qa_prompt
from circuitlab.interventions import PruneLayers
from circuitlab.layers import drop_last_scores, ground_truth_scores, pruning_study, random_scores
from circuitlab.layers.pruning import PruningStudy
from circuitlab.reweighting import label_logits
from circuitlab.testing import tiny_hf_model, tiny_model

TINY_SUITE = EvaluationSuite(
    qa_questions=6, perplexity_tokens=60, sentiment_examples=10, k_shot=2, window=32
)


# ------------------------------------------------------------------ shipped data
def test_factual_questions_are_balanced_unique_and_disjoint_from_the_demos() -> None:
    questions = load_factual_qa()
    assert len(questions) >= 200
    assert Counter(q.category for q in questions) == {
        category: 40
        for category in ("geography", "science", "history", "culture", "language", "everyday")
    }
    assert len({q.question for q in questions}) == len(questions)
    assert all(q.question.endswith("?") and q.answer.strip() for q in questions)
    assert all(len(q.answer.split()) <= 3 for q in questions)
    demo_questions = {normalize_answer(question) for question, _ in QA_DEMOS}
    assert not demo_questions & {normalize_answer(q.question) for q in questions}
    assert len(load_factual_qa("science")) == 40
    with pytest.raises(InputError, match="Unknown question categories"):
        load_factual_qa(["sport"])


def test_heldout_prose_is_large_and_split() -> None:
    evaluation, calibration = load_heldout_prose(), load_heldout_prose("calibration")
    assert len(evaluation) == 32 and len(calibration) == 8
    assert not set(evaluation) & set(calibration)
    words = sum(len(text.split()) for text in load_heldout_prose("all"))
    assert words > 25_000  # ~34k tokens on SmolLM2
    with pytest.raises(InputError, match="prose split"):
        load_heldout_prose("test")


# ------------------------------------------------------------------------ QA
@pytest.mark.parametrize(
    ("prediction", "golds", "expected"),
    [
        ("Paris", ["Paris"], (True, True)),
        (" paris.", ["Paris"], (True, True)),
        ("The Moon", ["Moon", "the Moon"], (True, True)),
        ("It is Paris, France", ["Paris"], (False, True)),
        ("10", ["0", "zero"], (False, False)),  # whole words only
        ("Separate", ["Ate"], (False, False)),
        ("Mt. Everest", ["Mount Everest", "Mt Everest"], (True, True)),
        ("", ["Paris"], (False, False)),
    ],
)
def test_answer_matching(prediction: str, golds: list[str], expected: tuple[bool, bool]) -> None:
    assert answer_matches(prediction, golds) == expected


def test_qa_prompt_and_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    prompt = qa_prompt("Who wrote Hamlet?")
    assert prompt.startswith("Q: What is the capital of France?\nA: Paris\n\n")
    assert prompt.endswith("Q: Who wrote Hamlet?\nA:")
    questions = [
        FactualQuestion("q1?", "Paris"),
        FactualQuestion("q2?", "Mount Everest", ("Everest",)),
        FactualQuestion("q3?", "8", ("eight",)),
        FactualQuestion("q4?", "Rome"),
    ]
    answers = [" Paris", " It is Everest", " eight", " Milan"]
    monkeypatch.setattr(
        "circuitlab.evaluation.qa.greedy_continuations", lambda *args, **kwargs: answers
    )
    result = qa_accuracy(tiny_model("llama"), questions)
    assert result.exact_match == 0.5 and result.contains == 0.75
    assert result.correct == (True, True, True, False)
    with pytest.raises(InputError, match="No questions"):
        qa_accuracy(tiny_model("llama"), [])


@pytest.mark.parametrize("architecture", ["llama", "gemma3"])
def test_batched_greedy_decoding_equals_one_prompt_at_a_time(architecture: str) -> None:
    model = tiny_model(architecture)
    prefix = "the capital city of france is paris . the capital city of " * 2
    prompts = [prefix + end for end in ("rome is", "the cat is", "a dog", "london is", "rome is")]
    prompts.append("yes or no")  # no shared prefix with the others
    batched = greedy_continuations(model, prompts, max_new_tokens=5, stop=None, batch_size=2)
    single = model.generate(prompts, max_new_tokens=5, stop_at_eos=True)
    assert batched == [text for text in single]
    with model.intervene(PruneLayers([0])):
        pruned = greedy_continuations(model, prompts, max_new_tokens=5, stop=None)
        assert pruned == list(model.generate(prompts, max_new_tokens=5))


def test_decoding_stops_at_the_stop_string() -> None:
    model = tiny_model("llama")
    texts = greedy_continuations(model, ["the cat", "a dog"], max_new_tokens=6, stop="the")
    assert all("the" not in text for text in texts)
    with pytest.raises(InputError, match="max_new_tokens"):
        greedy_continuations(model, ["the cat"], max_new_tokens=0)


# ---------------------------------------------------------------- perplexity
@pytest.mark.parametrize("architecture", ["llama", "gemma3", "gpt2"])
def test_perplexity_equals_transformers_loss(architecture: str) -> None:
    hf_model, tokenizer = tiny_hf_model(architecture)
    reference, _ = tiny_hf_model(architecture)
    model = circuitlab.ModelHandle(hf_model, tokenizer, name="tiny")
    texts = [" ".join(["the cat sat on the mat"] * 7), "paris is the capital city of france"]
    result = perplexity(model, texts, window=16, batch_size=3)
    total, count = 0.0, 0
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        for start in range(0, len(ids), 16):
            window = torch.tensor([ids[start : start + 16]])
            if window.shape[1] < 2:
                continue
            with torch.no_grad():
                loss = reference(window, labels=window).loss
            total += float(loss) * (window.shape[1] - 1)
            count += window.shape[1] - 1
    assert result.tokens == count
    assert result.nll == pytest.approx(total / count, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(total / count), rel=1e-5)
    capped = perplexity(model, texts, window=16, max_tokens=10)
    assert capped.tokens == 15  # whole windows until at least 10 tokens are predicted
    with pytest.raises(InputError, match="fewer than two tokens"):
        perplexity(model, [""], window=16)
    with pytest.raises(InputError, match="exceeds the model's context"):
        perplexity(model, texts, window=4096)


# ---------------------------------------------------------------- sentiment
def test_classification_accuracy_is_the_argmax_of_the_label_logits() -> None:
    model = tiny_model("llama")
    task = circuitlab.load_task("sentiment").balanced_sample(12, seed=1)
    accuracy = classification_accuracy(model, task, k_shot=2)
    logits = label_logits(model, task.prompts(k_shot=2), task.label_words)
    expected = (logits.argmax(-1) == torch.tensor(task.labels)).float().mean()
    assert accuracy == pytest.approx(float(expected))


# --------------------------------------------------------------------- suite
def test_retention_per_task() -> None:
    original = {"qa": 0.5, "perplexity": 20.0, "sentiment": 0.8}
    pruned = {"qa": 0.25, "perplexity": 40.0, "sentiment": 0.8}
    assert retention(original, pruned) == {"qa": 0.5, "perplexity": 0.5, "sentiment": 1.0}
    assert math.isnan(retention({"qa": 0.0}, {"qa": 0.1})["qa"])


def test_suite_settings_and_bad_input() -> None:
    metrics = TINY_SUITE.evaluate(tiny_model("llama"))
    assert set(metrics) == {"qa", "qa_exact", "perplexity", "sentiment"}
    assert metrics["perplexity"] > 1 and 0 <= metrics["qa"] <= 1
    categories = Counter(q.category for q in EvaluationSuite(qa_questions=12).questions)
    assert set(categories.values()) == {2}  # subsets stay balanced over categories
    assert TINY_SUITE.settings()["tasks"] == ["qa", "perplexity", "sentiment"]
    with pytest.raises(InputError, match="Unknown or no evaluation task"):
        EvaluationSuite(tasks=("mmlu",))
    with pytest.raises(InputError, match="qa_questions"):
        EvaluationSuite(qa_questions=0)


# ------------------------------------------------------------- pruning study
def test_ground_truth_is_the_measured_drop_of_each_single_layer() -> None:
    model = tiny_model("llama")
    suite = EvaluationSuite(
        tasks=("perplexity", "sentiment"),
        perplexity_tokens=60,
        sentiment_examples=10,
        k_shot=2,
        window=32,
    )
    truth = ground_truth_scores(model, suite)
    original = suite.evaluate(model)
    for layer in range(model.n_layers):
        with model.intervene(PruneLayers([layer])):
            kept = retention(original, suite.evaluate(model))
        expected = 1 - (kept["perplexity"] + kept["sentiment"]) / 2
        assert truth.values[layer] == pytest.approx(expected, rel=1e-6)
        assert truth.details["retention_perplexity"][layer] == pytest.approx(kept["perplexity"])


def test_pruning_study_resumes_from_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_model("llama")
    checkpoint = tmp_path / "evaluations.json"
    rankings = [drop_last_scores(2), random_scores(2, seed=1)]
    study = pruning_study(
        model, rankings, percents=[25, 40], suite=TINY_SUITE, checkpoint=checkpoint
    )
    # 2 layers: every k removes one layer, so only 3 distinct evaluations exist
    assert len(json.loads(checkpoint.read_text())["entries"]) == 3
    assert set(study.scores) == {"drop_last", "random", "ground_truth"}
    frame = study.to_frame()
    assert len(frame) == 6 and set(frame["removed"]) == {1}
    row = frame[(frame["method"] == "drop_last") & (frame["k"] == 25)].iloc[0]
    assert row["layers"] == "1"
    assert row["retention_perplexity"] == pytest.approx(
        study.original["perplexity"] / row["perplexity"]
    )
    assert isinstance(study.plot(), Figure)
    assert list(study.retention_table(25).index) == ["drop_last", "random", "ground_truth"]
    assert set(study.spearman()["method"]) == {"drop_last", "random"}
    calls = []
    monkeypatch.setattr(EvaluationSuite, "evaluate", lambda self, m, **k: calls.append(1))
    again = pruning_study(
        model, rankings, percents=[25, 40], suite=TINY_SUITE, checkpoint=checkpoint
    )
    assert calls == [] and again.rows == study.rows  # everything came from the checkpoint
    assert study.evaluations == again.evaluations == 3
    assert again.evaluation_seconds == pytest.approx(study.evaluation_seconds)
    assert study.evaluation_seconds > 0
    path = study.save(tmp_path / "study.json")
    assert json.dumps(PruningStudy.load(path).to_document()) == json.dumps(study.to_document())
    other = EvaluationSuite(
        qa_questions=3, perplexity_tokens=60, sentiment_examples=10, k_shot=2, window=32
    )
    with pytest.raises(InputError, match="another model or suite"):
        pruning_study(model, rankings, suite=other, checkpoint=checkpoint)


def test_the_extended_question_set() -> None:
    from collections import Counter

    from circuitlab.evaluation import load_factual_qa

    core, every = load_factual_qa(), load_factual_qa(extended=True)
    assert len(core) == 240 and len(every) == 660 and every[:240] == core
    texts = [question.question.casefold() for question in every]
    assert len(set(texts)) == len(texts)  # no question twice
    more = every[240:]
    assert set(Counter(q.category for q in more).values()) == {35}
    assert len({q.category for q in more}) == 12
    assert Counter(q.difficulty for q in more) == {"easy": 144, "medium": 144, "hard": 132}
    assert all(q.answer.strip() and q.question.endswith("?") for q in every)
    assert len(load_factual_qa("sports", extended=True)) == 35
