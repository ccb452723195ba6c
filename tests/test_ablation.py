"""Ablation studies on tiny models: values against direct hooked runs, metrics, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from circuitlab import InputError
from circuitlab.ablation import AblationEffects, ablation_study, study_components
from circuitlab.ablation.metrics import metric_values
from circuitlab.components import Head, Layer, Mlp
from circuitlab.interventions import Ablate
from circuitlab.tasks import ClassificationTask
from circuitlab.testing import tiny_model

PROMPTS = ["the cat sat on the", "a dog", "yes the capital of france is", "no"]


def _task() -> ClassificationTask:
    return ClassificationTask(
        name="tiny-yesno",
        texts=("the cat sat", "a dog", "the mat", "paris is", "no cat", "yes dog"),
        labels=(1, 0, 1, 0, 0, 1),
        label_names=("no", "yes"),
        label_words=("no", "yes"),
        templates=("{text} ?",),
    )


def test_study_equals_one_hooked_run_per_component(tiny_architecture: str) -> None:
    model = tiny_model(tiny_architecture)
    components = ["L0H1", "MLP1", "L1"]
    result = ablation_study(model, PROMPTS, "mat", components=components, batch_size=3)
    gold = model.token_id("mat")
    intact = model.next_token_logits(PROMPTS).log_softmax(dim=-1)[:, gold]
    torch.testing.assert_close(result.baseline, intact, atol=1e-5, rtol=0)
    assert [str(c) for c in result.components] == components
    for index, component in enumerate(components):
        with model.intervene(Ablate(component)):
            expected = model.next_token_logits(PROMPTS).log_softmax(dim=-1)[:, gold]
        torch.testing.assert_close(result.ablated[:, index], expected, atol=1e-5, rtol=0)
        effect = float(expected.mean() - intact.mean())
        assert result.score_of(component) == pytest.approx(effect, abs=1e-5)
    assert (result.effects.abs() > 1e-4).all()


def test_mean_ablation_study_uses_one_reference_for_every_component() -> None:
    model = tiny_model("qwen2")
    reference = ["the capital of france is paris", "a cat"]
    result = ablation_study(
        model, PROMPTS, "cat", components=["L1H0", "MLP0"], method="mean", reference=reference
    )
    assert [str(c) for c in result.components] == ["MLP0", "L1H0"]  # model order
    for index, component in enumerate(result.components):
        with model.intervene(Ablate(component, "mean", reference=reference)):
            expected = model.next_token_logits(PROMPTS).log_softmax(dim=-1)[
                :, model.token_id("cat")
            ]
        torch.testing.assert_close(result.ablated[:, index], expected, atol=1e-5, rtol=0)


def test_task_metrics_match_their_definitions() -> None:
    model = tiny_model("llama")
    task = _task()
    prompts = task.prompts()
    logits = model.next_token_logits(prompts)
    words = torch.tensor(model.token_ids(task.label_words))
    labels = torch.tensor(task.labels)
    options = logits[:, words]
    gold = options[torch.arange(len(labels)), labels]
    other = options[torch.arange(len(labels)), 1 - labels]
    expected = {
        "logit_diff": gold - other,
        "accuracy": (options.argmax(dim=-1) == labels).float(),
        "logit": gold,
        "log_prob": logits.log_softmax(dim=-1)[torch.arange(len(labels)), words[labels]],
        "prob": logits.softmax(dim=-1)[torch.arange(len(labels)), words[labels]],
    }
    for metric, values in expected.items():
        result = ablation_study(model, task, components=["L0H0"], metric=metric)
        torch.testing.assert_close(result.baseline, values, atol=1e-5, rtol=0)
        assert result.metric == metric and result.data == "tiny-yesno"


def test_logit_diff_takes_the_strongest_wrong_label() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 5.0], [2.0, 0.0, 4.0, 1.0]])
    choices, labels, gold = torch.tensor([1, 2, 3]), torch.tensor([0, 1]), torch.tensor([1, 2])
    torch.testing.assert_close(
        metric_values("logit_diff", logits, gold, choices, labels), torch.tensor([-2.0, 3.0])
    )
    torch.testing.assert_close(
        metric_values("accuracy", logits, gold, choices, labels), torch.tensor([0.0, 1.0])
    )


def test_batching_and_padding_do_not_change_the_study() -> None:
    model = tiny_model("gemma3")
    single = ablation_study(model, PROMPTS, "dog", components=["heads"], batch_size=1)
    batched = ablation_study(model, PROMPTS, "dog", components=["heads"], batch_size=4)
    torch.testing.assert_close(single.ablated, batched.ablated, atol=1e-5, rtol=0)
    torch.testing.assert_close(single.baseline, batched.baseline, atol=1e-5, rtol=0)


def test_groups_expand_in_model_order_and_the_model_is_untouched() -> None:
    model = tiny_model("llama")
    chosen = study_components(model, ["layers", "heads", "mlps", "L0H1"])
    assert len(chosen) == model.n_layers * (model.n_heads + 2)
    assert chosen[:2] == [Head(0, 0), Head(0, 1)] and chosen[-2:] == [Mlp(1), Layer(1)]
    before = model.logits(PROMPTS)
    ablation_study(model, PROMPTS, "mat", components=["L1", "MLP0"], method="resample")
    assert torch.equal(model.logits(PROMPTS), before)


def test_result_table_figure_and_file_round_trip(tmp_path: Path) -> None:
    model = tiny_model("llama")
    result = ablation_study(model, PROMPTS, "mat")
    table = result.to_frame()
    assert list(table.columns) == [
        "component",
        "kind",
        "layer",
        "head",
        "log_prob_ablated",
        "log_prob_intact",
        "effect",
        "standard_error",
    ]
    assert len(table) == 12 and set(table["kind"]) == {"head", "mlp", "layer"}
    worst, value = result.bottom(1)[0]
    assert value == pytest.approx(float(result.effects.min()))
    assert "most negative effect" in repr(result) and str(worst) in repr(result)
    figure = result.plot()
    assert [a.get_title() for a in figure.axes if a.get_title()] == ["heads", "MLP", "layer"]
    loaded = AblationEffects.load(result.save(tmp_path / "study.safetensors"))
    assert torch.equal(loaded.ablated, result.ablated) and loaded.components == result.components
    assert loaded.metric == "log_prob" and loaded.method == "zero"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": [], "targets": "mat"}, "No prompts"),
        ({"data": PROMPTS}, "need targets"),
        ({"data": PROMPTS, "targets": ["mat", "cat"]}, "2 targets were given for 4 prompts"),
        ({"data": PROMPTS, "targets": "the cat"}, "is 2 tokens"),
        ({"data": PROMPTS, "targets": "mat", "metric": "f1"}, "Unknown metric"),
        ({"data": PROMPTS, "targets": "mat", "metric": "accuracy"}, "only a classification"),
        ({"data": PROMPTS, "targets": "mat", "components": ["L2H0"]}, "layer 2"),
        ({"data": PROMPTS, "targets": "mat", "components": ["L0H7"]}, "head 7"),
        ({"data": PROMPTS, "targets": "mat", "components": ["EMBED"]}, "can be ablated"),
        ({"data": PROMPTS, "targets": "mat", "components": []}, "No components"),
        ({"data": PROMPTS, "targets": "mat", "method": "noise"}, "Unknown ablation method"),
        ({"data": PROMPTS, "targets": "mat", "batch_size": 0}, "batch_size"),
    ],
)
def test_bad_studies_are_refused_clearly(kwargs: dict, message: str) -> None:
    model = tiny_model("llama")
    with pytest.raises(InputError, match=message):
        ablation_study(model, **kwargs)


def test_a_task_takes_no_targets() -> None:
    model = tiny_model("llama")
    with pytest.raises(InputError, match="drop targets"):
        ablation_study(model, _task(), "yes")
