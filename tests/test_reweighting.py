"""Component reweighting, Calib+, the shared-prefix cache and the few-shot protocol (tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import circuitlab
from circuitlab import (
    ClassificationTask,
    ComponentReweighting,
    InputError,
    LabelContributions,
    label_contributions,
    reweighting_study,
)
from circuitlab.components import Head, Mlp
from circuitlab.fingerprint import model_fingerprint
from circuitlab.hf_compat import kv_cache_in
from circuitlab.prefix import SharedPrefix, common_prefix_length
from circuitlab.reweighting import CalibPlus, label_logits
from circuitlab.reweighting.study import draw_examples, split_pool_test
from circuitlab.testing import tiny_hf_model, tiny_model
from circuitlab.training import Stopping, classification_objective, train

WORDS = "good great bad terrible".split()


def tiny_task(n_per_class: int = 12) -> ClassificationTask:
    """A 2-class task in the tiny vocabulary (label words are single tiny tokens)."""
    texts, labels = [], []
    nouns = ["movie", "film", "review", "city", "cat", "dog"]
    for i in range(n_per_class):
        noun = nouns[i % len(nouns)]
        texts.append(f"the {noun} was really {WORDS[i % 2]} {'and ' * (i // 6)}it")
        labels.append(1)
        texts.append(f"the {noun} was not {WORDS[2 + i % 2]} {'or ' * (i // 6)}it")
        labels.append(0)
    return ClassificationTask(
        name="tiny",
        texts=tuple(texts),
        labels=tuple(labels),
        label_names=("negative", "positive"),
        label_words=(" negative", " positive"),
        templates=("review {text} .", "{text} ? answer"),
    )


def synthetic(n: int = 40, n_components: int = 6, seed: int = 0) -> LabelContributions:
    """Contributions where component 2 carries the label and the rest are noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    values = torch.randn(n, n_components, 2, generator=generator)
    values[:, 2, :] = 0.0
    values[torch.arange(n), 2, labels] = 2.0
    components = tuple([Head(0, i) for i in range(n_components - 1)] + [Mlp(0)])
    return LabelContributions(
        values=values,
        logits=values.sum(dim=1),
        labels=labels,
        components=components,
        label_words=(" a", " b"),
        model_name="synthetic",
        fingerprint="f" * 16,
    )


# ------------------------------------------------------------ shared prefix
def test_common_prefix_length_stops_before_read_positions() -> None:
    model = tiny_model("llama")
    batch = model.tokenize(["the cat sat on the mat", "the cat sat on a dog", "the cat sat"])
    assert common_prefix_length(batch) == 2  # "the cat" (row 3 is read at "sat")
    assert common_prefix_length(batch, torch.tensor([5, 5, 1])) == 1
    assert common_prefix_length(model.tokenize(["a cat", "the cat"])) == 0


def test_shared_prefix_attribution_equals_full_passes(
    tiny_architecture: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_model(tiny_architecture)
    task = tiny_task()
    demos = [(task.texts[i], task.labels[i]) for i in range(6)]
    prompts = [task.prompt(text, demos=demos) for text in task.texts[6:14]]
    assert common_prefix_length(model.tokenize(prompts)) >= circuitlab.prefix.MIN_SHARED_PREFIX
    shared = circuitlab.direct_logit_attribution(model, prompts, list(task.label_words))
    shared_logits = label_logits(model, prompts, task.label_words, batch_size=3)
    monkeypatch.setattr(SharedPrefix, "_enabled", lambda self: False)
    full = circuitlab.direct_logit_attribution(model, prompts, list(task.label_words))
    ids = model.token_ids(task.label_words)
    plain = model.next_token_logits(prompts)[:, ids]
    torch.testing.assert_close(shared.values, full.values, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(shared.logits, full.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(shared_logits, plain, atol=1e-5, rtol=1e-4)
    assert torch.equal(shared.positions, full.positions)


def test_shared_prefix_under_interventions() -> None:
    model = tiny_model("llama")
    task = tiny_task()
    demos = [(task.texts[i], task.labels[i]) for i in range(6)]
    prompts = [task.prompt(text, demos=demos) for text in task.texts[6:9]]
    batch = model.tokenize(prompts)
    shared = SharedPrefix(model)
    assert shared.split(batch)[0] >= 16
    with model.intervene(circuitlab.Ablate("L0H0", positions="last")):
        assert shared.split(batch) == (0, {})  # position-dependent: no sharing
    ids = model.token_ids(task.label_words)
    for edit in (
        circuitlab.PruneLayers([0]),
        circuitlab.Ablate("L1H2", method="mean", reference=prompts),
    ):
        with model.intervene(edit):
            assert shared.split(batch)[0] >= 16  # the same at every position: shared
            plain = model.next_token_logits(prompts)[:, ids]
            torch.testing.assert_close(
                label_logits(model, prompts, task.label_words), plain, atol=1e-5, rtol=1e-4
            )
    # a prefix cache made under one intervention is never served under another
    with model.intervene(circuitlab.PruneLayers([0])):
        _, kwargs = shared.split(batch)
        under_prune = kv_cache_in(kwargs).layers[1].keys
    _, kwargs = shared.split(batch)
    assert not torch.equal(kv_cache_in(kwargs).layers[1].keys, under_prune)


# --------------------------------------------------------------- training
def test_one_step_matches_the_hand_computed_gradient() -> None:
    data = synthetic(n=10)
    rw = ComponentReweighting(l1=0.1, learning_rate=0.05, max_epochs=1, components="all")
    rw.fit(data)
    g = data.values.double()
    logits = g.sum(dim=1)  # w = 1
    probs = torch.softmax(logits, dim=-1)
    onehot = torch.nn.functional.one_hot(data.labels, 2).double()
    gradient = torch.einsum("ecl,el->c", g, probs - onehot) / len(data) + 0.1  # sign(1) = 1
    expected = 1 - 0.05 * gradient
    torch.testing.assert_close(rw.weights_.double(), expected, atol=1e-6, rtol=0)
    assert rw.history_.epochs == 1 and rw.history_.stopped == "max_epochs"


def test_clipped_weights_are_used_in_the_forward_pass() -> None:
    data = synthetic()
    rw = ComponentReweighting(l1=0.0, clip=True, components="all", max_epochs=50).fit(data)
    rw.weights_ = torch.linspace(-1, 2, len(rw.weights_))
    clipped = rw.weights_.clamp(0, 1)
    expected = torch.einsum("ecl,c->el", data.values, clipped)
    torch.testing.assert_close(rw.decision_function(data), expected)
    assert rw.effective_weights_.min() == 0 and rw.effective_weights_.max() == 1


def test_fit_learns_the_informative_component() -> None:
    train, test = synthetic(seed=0), synthetic(seed=1)
    unweighted = float((test.values.sum(dim=1).argmax(-1) == test.labels).float().mean())
    rw = ComponentReweighting(l1=0.05, components="all").fit(train)
    assert rw.top_components(1)[0][0] == Head(0, 2)
    assert rw.score(test) == 1.0 > unweighted
    assert rw.predict(test).tolist() == test.labels.tolist()
    probabilities = rw.predict_proba(test)
    torch.testing.assert_close(probabilities.sum(dim=-1), torch.ones(len(test)))
    assert rw.weight_of("L0H2") == rw.top_components(1)[0][1]
    assert list(rw.to_frame().columns) == ["component", "weight"]


def test_early_stopping_rules() -> None:
    labels = torch.tensor([0, 1])
    perfect = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    stopping = Stopping(max_epochs=100, patience=3, check_done_every=100)
    w = torch.ones(1)
    history = train(
        [w],
        classification_objective(lambda: perfect * w, labels),
        learning_rate=0.05,
        stopping=stopping,
        done_reason="perfect_train_accuracy",
    )
    assert history.stopped == "perfect_train_accuracy" and history.epochs == 0
    wrong = torch.tensor([[0.0, 5.0], [5.0, 0.0]])
    # a negligible step leaves the loss unchanged: every epoch after the first is a strike
    v = torch.ones(1)
    history = train(
        [v],
        classification_objective(lambda: wrong * v, labels),
        learning_rate=1e-12,
        stopping=stopping,
    )
    assert history.stopped == "patience" and history.epochs == 4


def test_calib_plus_one_step_and_bias_correction() -> None:
    logits = torch.tensor([[2.0, 0.0], [1.5, 0.0], [0.5, 0.0], [0.2, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    calib = CalibPlus(max_epochs=1).fit(logits, labels)
    p = torch.softmax(logits.double(), dim=-1)
    q = torch.softmax(p, dim=-1)  # v = 1
    onehot = torch.nn.functional.one_hot(labels, 2).double()
    gradient = ((q - onehot) * p).mean(dim=0)
    torch.testing.assert_close(calib.weights_.double(), 1 - 0.05 * gradient, atol=1e-7, rtol=0)
    # the model always says class 0; Calib+ learns to demand more of class 0
    fitted = CalibPlus(learning_rate=5.0, max_epochs=5000, patience=50).fit(logits, labels)
    assert fitted.score(logits, labels) == 1.0
    assert float((logits.argmax(-1) == labels).float().mean()) == 0.5


# ----------------------------------------------------------- model-backed
def test_label_contributions_match_the_attribution() -> None:
    model = tiny_model("llama")
    task = tiny_task()
    demos = [(task.texts[0], 1), (task.texts[1], 0)]
    contributions = label_contributions(model, task.subset(range(4, 10)), demos=demos)
    prompts = [task.prompt(text, demos=demos) for text in task.texts[4:10]]
    attribution = circuitlab.direct_logit_attribution(model, prompts, list(task.label_words))
    torch.testing.assert_close(contributions.values, attribution.values)
    torch.testing.assert_close(contributions.logits, attribution.logits)
    assert contributions.labels.tolist() == list(task.labels[4:10])
    assert contributions.fingerprint == model_fingerprint(model)
    # with w = 1 on every component, the reweighted scores are the model's own logits
    rw = ComponentReweighting(components="all", max_epochs=1, learning_rate=1e-9, l1=0.0)
    rw.fit(contributions)
    torch.testing.assert_close(
        rw.decision_function(contributions), contributions.logits, atol=1e-4, rtol=1e-4
    )


def test_fingerprint_tells_models_apart_and_ignores_dtype() -> None:
    model = tiny_model("llama", seed=0)
    assert model_fingerprint(model) == model_fingerprint(tiny_model("llama", seed=0))
    assert model_fingerprint(model) != model_fingerprint(tiny_model("llama", seed=1))
    assert model_fingerprint(model) != model_fingerprint(tiny_model("qwen2", seed=0))
    hf, tokenizer = tiny_hf_model("llama", seed=0)
    half = circuitlab.ModelHandle.from_hf(hf.to(torch.bfloat16), tokenizer)
    assert model_fingerprint(half) == model_fingerprint(model)


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = tiny_model("llama")
    task = tiny_task()
    data = label_contributions(model, task)
    rw = ComponentReweighting(l1=0.05, clip=True).fit(data)
    path = rw.save(tmp_path / "weights")
    assert path.name == "weights.safetensors"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.safetensors"]
    loaded = ComponentReweighting.load(path)
    assert torch.equal(loaded.weights_, rw.weights_)
    assert loaded.components_ == rw.components_ and loaded.get_params() == rw.get_params()
    assert torch.equal(loaded.predict(data), rw.predict(data))
    assert loaded.history_ == rw.history_
    new_prompts = [task.prompt(text) for text in task.texts[:5]]
    assert torch.equal(
        loaded.predict_prompts(model, new_prompts), rw.predict(data.subset(range(5)))
    )
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"not a file")
    with pytest.raises(InputError, match="not a readable safetensors"):
        ComponentReweighting.load(bogus)


# -------------------------------------------------------------- bad input
def test_bad_settings() -> None:
    with pytest.raises(InputError, match=r"l1=-0\.1 is invalid"):
        ComponentReweighting(l1=-0.1)
    with pytest.raises(InputError, match="learning_rate"):
        ComponentReweighting(learning_rate=0)
    with pytest.raises(InputError, match="l1"):
        ComponentReweighting(l1=float("nan"))
    with pytest.raises(InputError, match="Unknown component set"):
        ComponentReweighting(components="attention")
    with pytest.raises(InputError, match="not fitted"):
        ComponentReweighting().predict(synthetic())


def test_class_absent_from_training_examples() -> None:
    data = synthetic()
    only_a = data.subset(data.labels == 0)
    with pytest.raises(InputError, match=r"no example of class\(es\) \[' b'\]"):
        ComponentReweighting().fit(only_a)
    with pytest.raises(InputError, match="Calib"):
        CalibPlus().fit(only_a)


def test_fewer_examples_than_demonstrations() -> None:
    model = tiny_model("llama")
    task = tiny_task()
    with pytest.raises(InputError, match="K=4 labelled examples with 4 of them as demo"):
        reweighting_study(model, task, ks=(4,), n_demos=4)
    with pytest.raises(InputError, match="K=3 labelled examples with 4"):
        draw_examples(task, 3, 4)


def test_multi_token_label_words() -> None:
    model = tiny_model("llama")
    task = tiny_task().with_label_words([" very bad", " positive"])
    with pytest.raises(InputError, match="very bad"):
        label_contributions(model, task)
    with pytest.raises(InputError, match="very bad"):
        reweighting_study(model, task, ks=(6,), n_demos=2)


def test_refuses_a_different_model() -> None:
    task = tiny_task()
    first, other = tiny_model("llama", seed=0), tiny_model("llama", seed=1)
    rw = ComponentReweighting().fit(label_contributions(first, task))
    foreign = label_contributions(other, task)
    with pytest.raises(InputError, match="different model"):
        rw.predict(foreign)
    with pytest.raises(InputError, match="is not the model these weights were fitted on"):
        rw.predict_prompts(other, ["the cat was good ."])
    relabelled = label_contributions(first, task.with_label_words([" good", " bad"]))
    with pytest.raises(InputError, match="label words"):
        rw.score(relabelled)


def test_empty_and_unlabelled_inputs() -> None:
    model = tiny_model("llama")
    with pytest.raises(InputError, match="No examples"):
        label_contributions(model, [], label_words=[" good", " bad"])
    with pytest.raises(InputError, match="label_words"):
        label_contributions(model, ["the cat"])
    unlabelled = label_contributions(model, ["the cat", "the dog"], label_words=[" good", " bad"])
    with pytest.raises(InputError, match="needs gold labels"):
        ComponentReweighting().fit(unlabelled)


# --------------------------------------------------------------- protocol
def test_draws_are_balanced_and_nested() -> None:
    task = tiny_task(n_per_class=20)
    pool, test = split_pool_test(task, 12, seed=0)
    assert len(pool) == 24 and set(pool.texts).isdisjoint(test.texts)
    assert len(set(test.label_counts().values())) == 1
    demos, train = draw_examples(pool, 12, 4, seed=3)
    assert sorted(label for _, label in demos) == [0, 0, 1, 1]
    assert train.label_counts() == {"negative": 4, "positive": 4}
    assert list(train.subset(range(4)).label_counts().values()) == [2, 2]
    assert {text for text, _ in demos}.isdisjoint(train.texts)
    assert draw_examples(pool, 12, 4, seed=3) == (demos, train)


def test_study_on_a_tiny_model(tmp_path: Path) -> None:
    model = tiny_model("llama")
    task = tiny_task(n_per_class=20)
    study = reweighting_study(
        model, task, ks=(6, 8), n_demos=2, n_demo_sets=2, templates=(0, 1), n_test=8
    )
    assert len(study.records) == 2 * 2 * 2 * 7
    summary = study.to_frame()
    assert set(summary["runs"]) == {4}
    # the K'-shot ICL accuracy is the model's own, computed independently
    pool, test = split_pool_test(task, 8, n_test=8, seed=0)
    demos, _ = draw_examples(pool, 8, 2, seed=1)  # demo set 1 of seed 0
    prompts = [task.prompt(text, template=1, demos=demos) for text in test.texts]
    logits = model.next_token_logits(prompts)[:, model.token_ids(task.label_words)]
    expected = float((logits.argmax(-1) == torch.tensor(test.labels)).float().mean())
    record = next(
        r
        for r in study.records
        if r["method"] == "icl_demos" and r["demo_set"] == 1 and r["template"] == 1
    )
    assert record["accuracy"] == pytest.approx(expected)
    # the study keeps its fitted estimators: run (1, 1, K=8) scores as the study recorded
    test_c = label_contributions(model, test, template=1, demos=demos)
    fitted = study.estimator(demo_set=1, template=1, k=8)
    comp_rw = next(
        r
        for r in study.records
        if (r["method"], r["demo_set"], r["template"], r["k"]) == ("comp_rw", 1, 1, 8)
    )
    assert fitted.score(test_c) == comp_rw["accuracy"]
    assert fitted.history_.epochs == comp_rw["history"]["epochs"]
    with pytest.raises(InputError, match="demo_set 2 was not run"):
        study.estimator(demo_set=2)
    with pytest.raises(InputError, match="No run with template 5"):
        study.estimator(template=5)
    # oracles bound every component; the transfer check is a correlation
    best = study.accuracies("oracle_best", 8)
    assert best == [float(a.max()) for a in study.component_accuracy.reshape(4, -1)]
    assert all(-1 <= value <= 1 for value in study.transfer().values())
    assert len(study.top_weighted(n=3)) == 3
    path = study.save(tmp_path / "study.json")
    loaded = circuitlab.ReweightingStudy.load(path)
    assert loaded.records == study.records
    assert torch.equal(loaded.weights, study.weights)
    json.loads(path.read_text())
    with pytest.raises(InputError, match="Unknown method"):
        study.accuracies("icl", 8)
