"""Semantic consistency: answers and metrics, head probes, directions as edits, the sweep and
the export (tiny models; the embedded-model integration is marked real_model)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

import circuitlab
from circuitlab import SteerResidual
from circuitlab.components import Head
from circuitlab.consistency.answers import ParaphraseAnswers, majority_agreement, pair_agreement
from circuitlab.consistency.export import export_consistency_edit, plain_answers
from circuitlab.consistency.heads import (
    ConsistencyHeads,
    locate_consistency_heads,
    read_paraphrases,
)
from circuitlab.consistency.sweep import ConsistencySweep, consistency_sweep
from circuitlab.errors import InputError
from circuitlab.testing import tiny_model
from circuitlab.weights import output_projection, unembedding


def _answers(answers: list[list[int]], labels: list[int], classes: int = 2) -> ParaphraseAnswers:
    table = torch.tensor(answers)
    logits = torch.nn.functional.one_hot(table, classes).float() * 3.0
    return ParaphraseAnswers(
        logits=logits,
        labels=torch.tensor(labels),
        paraphrases=tuple(range(table.shape[1])),
        label_words=tuple(f" w{i}" for i in range(classes)),
        task="toy",
    )


def test_consistency_rate_counts_pairs_answered_alike() -> None:
    # input 0: all three agree (3 consistent pairs); input 1: one odd answer (1 of 3 pairs)
    result = _answers([[1, 1, 1], [0, 1, 0]], labels=[1, 0])
    assert result.consistency_rate() == pytest.approx(4 / 6)
    assert torch.equal(pair_agreement(result.answers), torch.tensor(
        [[1.0, 0.5, 1.0], [0.5, 1.0, 0.5], [1.0, 0.5, 1.0]]
    ))  # fmt: skip
    table = result.per_paraphrase()
    assert table["accuracy"].tolist() == [1.0, 0.5, 1.0]
    assert table["consistency"].tolist() == [0.75, 0.5, 0.75]
    summary = result.summary()
    assert summary["accuracy_mean"] == pytest.approx(2.5 / 3)
    assert summary["accuracy_std"] == pytest.approx(
        math.sqrt(((1 - 2.5 / 3) ** 2 * 2 + (0.5 - 2.5 / 3) ** 2) / 3)
    )
    assert summary["consistency_rate"] == pytest.approx(4 / 6)


def test_majority_labels_and_ties() -> None:
    result = _answers([[1, 1, 0], [0, 1, 1]], labels=[1, 0])
    assert result.consistent().tolist() == [[True, True, False], [False, True, True]]
    logits = torch.tensor([[[2.0, 0.0], [0.0, 5.0]]])  # a tie: one vote each; class 1 surer
    assert majority_agreement(logits).tolist() == [[False, True]]


def test_one_paraphrase_has_no_pairs() -> None:
    with pytest.raises(InputError, match="at least two paraphrases"):
        _answers([[1], [0]], labels=[1, 0]).consistency_rate()


def test_answers_shape_is_checked() -> None:
    with pytest.raises(InputError, match=r"\[input, paraphrase, label\]"):
        ParaphraseAnswers(
            logits=torch.zeros(2, 3), labels=torch.tensor([0, 1]), paraphrases=(0, 1, 2),
            label_words=(" a", " b"),
        )  # fmt: skip


# ------------------------------------------------------------------ locating, editing, export
def tiny_paraphrase_task(n_inputs: int = 40) -> Any:
    """A yes/no task over the tiny vocabulary with 8 paraphrases (5 locate, 3 held out)."""
    from circuitlab.consistency.data import ParaphraseTask
    from circuitlab.tasks import ClassificationTask

    words = (
        "the a cat dog sky city movie film review very not really good bad great terrible "
        "blue green red"
    ).split()
    generator = torch.Generator().manual_seed(0)
    picks = torch.randint(len(words), (n_inputs, 4), generator=generator).tolist()
    task = ClassificationTask(
        name="tiny-yesno",
        texts=tuple(" ".join(words[i] for i in row) for row in picks),
        labels=tuple([0, 1] * (n_inputs // 2)),
        label_names=("no", "yes"),
        label_words=(" no", " yes"),
        templates=(
            "{text} ?", "question : {text} ?", "{text} . answer", "is {text} ?",
            "{text} , yes or no ?", "the answer to {text} is", "{text} ! really ?",
            "review : {text}",
        ),
    )  # fmt: skip
    return ParaphraseTask(task, locate=(0, 1, 2, 3, 4), heldout=(5, 6, 7))


@pytest.fixture(scope="module")
def model() -> circuitlab.ModelHandle:
    return tiny_model("llama")


@pytest.fixture(scope="module")
def located(model: circuitlab.ModelHandle) -> ConsistencyHeads:
    return locate_consistency_heads(model, tiny_paraphrase_task())


def test_every_head_is_probed_and_ranked(
    model: circuitlab.ModelHandle, located: ConsistencyHeads
) -> None:
    assert located.accuracy.shape == (model.n_layers, model.n_heads)
    assert located.directions.shape == (model.n_layers, model.n_heads, model.d_head)
    assert located.settings["consistent"] + located.settings["inconsistent"] == 40 * 5
    ranking = located.ranking()
    assert len(ranking) == 8 and [v for _, v in ranking] == sorted(
        (v for _, v in ranking), reverse=True
    )
    assert located.top(3) == ranking[:3]
    assert 0.5 <= located.chance <= 1 and located.to_frame().shape == (8, 5)
    with pytest.raises(InputError, match="more than the model's 8 heads"):
        located.top(9)


def test_directions_are_the_papers_mean_shift(
    model: circuitlab.ModelHandle, located: ConsistencyHeads
) -> None:
    task = tiny_paraphrase_task()
    answers, outputs = read_paraphrases(model, task, task.locate, heads=True)
    consistent = answers.consistent()
    z = outputs[:, :, 1, 2]  # layer 1, head 2: [input, paraphrase, d_head]
    expected = z[consistent].mean(dim=0) - z.reshape(-1, z.shape[-1]).mean(dim=0)
    torch.testing.assert_close(located.directions[1, 2], expected, atol=1e-5, rtol=1e-4)


def test_a_steer_edit_adds_alpha_times_the_direction_to_the_head_output(
    model: circuitlab.ModelHandle, located: ConsistencyHeads
) -> None:
    (edit,) = located.interventions(model, 1, 3.0, heads=[Head(1, 2)])
    w_o, _ = output_projection(model, 1)
    torch.testing.assert_close(edit.vector, 3.0 * located.directions[1, 2] @ w_o[2])
    with pytest.raises(InputError, match="alpha"):
        located.interventions(model, 1, float("nan"))


def test_the_sweep_has_every_setting_and_its_controls(
    model: circuitlab.ModelHandle, located: ConsistencyHeads
) -> None:
    task = tiny_paraphrase_task()
    sweep = consistency_sweep(model, task, located, alphas=(1, 3), ks=(1, 2), control_seeds=(0,))
    frame = sweep.to_frame()
    assert len(frame) == 1 + 2 * 2 * 3
    assert set(frame["method"]) == {"base", "located", "random_heads", "random_direction"}
    assert sweep.best()["method"] == "located"
    base = read_paraphrases(model, task, task.heldout)[0].summary()
    assert sweep.base()["consistency_rate"] == pytest.approx(base["consistency_rate"])
    with pytest.raises(InputError, match="more than the model's 8 heads"):
        consistency_sweep(model, task, located, ks=(9,))
    with pytest.raises(InputError, match="alpha"):
        consistency_sweep(model, task, located, alphas=(float("inf"),))


def test_the_sweep_resumes_from_its_checkpoint_and_refuses_other_heads(
    model: circuitlab.ModelHandle,
    located: ConsistencyHeads,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import circuitlab.consistency.sweep as sweep_module
    from circuitlab.consistency.sweep import random_direction_heads

    task = tiny_paraphrase_task()
    checkpoint = tmp_path / "sweep.json"
    options: dict[str, Any] = {"alphas": (2,), "ks": (1, 2), "control_seeds": (0, 1)}
    first = consistency_sweep(
        model, task, located, **options, direction_seeds=(), checkpoint=checkpoint
    )
    assert [row["method"] for row in first.rows].count("random_direction") == 0
    assert [row["method"] for row in first.rows].count("random_heads") == 4

    def no_forward(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a finished setting was measured again")

    monkeypatch.setattr(sweep_module, "read_paraphrases", no_forward)
    again = consistency_sweep(
        model, task, located, **options, direction_seeds=(), checkpoint=checkpoint
    )
    assert again.rows == first.rows
    with pytest.raises(InputError, match="heads_fingerprint"):
        consistency_sweep(
            model, task, random_direction_heads(located, 3), **options, checkpoint=checkpoint
        )
    monkeypatch.undo()
    extended = consistency_sweep(
        model, task, located, **options, direction_seeds=(5,), checkpoint=checkpoint
    )
    assert all(row in extended.rows for row in first.rows)  # resumed, not remeasured
    assert [row["seed"] for row in extended.rows if row["method"] == "random_direction"] == [5, 5]


def test_the_export_answers_every_held_out_prompt_like_the_edited_model(
    model: circuitlab.ModelHandle, located: ConsistencyHeads, tmp_path: Path
) -> None:
    task = tiny_paraphrase_task()
    edits = located.interventions(model, 3, 5.0)
    folder, answers = export_consistency_edit(model, edits, tmp_path / "edited", task)
    reloaded = plain_answers(folder, model, task, task.heldout)
    assert torch.equal(reloaded, answers.answers)
    base = read_paraphrases(model, task, task.heldout)[0]
    assert not torch.equal(base.logits, answers.logits)  # the edit changed something


def test_no_inconsistent_prompts_means_nothing_to_probe(model: circuitlab.ModelHandle) -> None:
    w_u, _ = unembedding(model)  # [d_model, d_vocab]
    always_yes = SteerResidual(model.n_layers - 1, 200 * w_u[:, model.token_id(" yes")])
    with model.intervene(always_yes), pytest.raises(InputError, match="nothing to probe"):
        locate_consistency_heads(model, tiny_paraphrase_task())


def test_the_commands_locate_sweep_and_export(tmp_path: Path) -> None:
    import json

    from circuitlab.cli.main import main
    from circuitlab.testing import tiny_hf_model

    hf_model, tokenizer = tiny_hf_model("llama")
    hf_model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    task = tiny_paraphrase_task()
    inputs, paraphrases = tmp_path / "inputs.jsonl", tmp_path / "paraphrases.jsonl"
    inputs.write_text("".join(
        json.dumps({"text": text, "label": ["no", "yes"][label]}) + "\n"
        for text, label in zip(task.task.texts, task.task.labels, strict=True)
    ))  # fmt: skip
    paraphrases.write_text("".join(
        json.dumps({"template": t, "split": "heldout" if i >= 5 else "locate"}) + "\n"
        for i, t in enumerate(task.task.templates)
    ))  # fmt: skip
    common = ["--model", str(tmp_path / "tiny"), "--task", str(inputs), "--paraphrases"]
    common.append(str(paraphrases))
    heads_file = tmp_path / "heads.safetensors"
    assert main(["consistency-heads", *common, "--save", str(heads_file)]) == 0
    sweep_file, export = tmp_path / "sweep.json", tmp_path / "edited"
    arguments = ["consistency-edit", *common, "--heads", str(heads_file), "--alphas", "2"]
    arguments += ["--ks", "1", "2", "--control-seeds", "0", "--export", str(export)]
    assert main([*arguments, "--json", str(sweep_file)]) == 0
    sweep = ConsistencySweep.load(sweep_file)
    assert len(sweep.rows) == 1 + 2 * 3
    assert (export / "model.safetensors").is_file()
