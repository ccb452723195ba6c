"""Hallucination tools on tiny models: the scores result, choice accuracy, question files, the
checked export (plain peft and plain transformers) and both CLI commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

import circuitlab
from circuitlab.cli.main import main
from circuitlab.errors import ExportCheckError, InputError
from circuitlab.evaluation.data import FactualQuestion
from circuitlab.hallucination import (
    HallucinationScores,
    choice_accuracy,
    continuation_logprobs,
    contrastive_finetune,
    export_contrastive,
    hallucination_scores,
    load_labelled_answers,
    load_questions,
)
from circuitlab.testing import tiny_model

WORDS = "the a cat dog sky city movie film good bad great blue green red".split()


def _labelled_rows(n: int = 12) -> list[dict[str, object]]:
    return [
        {
            "question": f"{WORDS[i % 14]} {WORDS[(i * 5) % 14]} ?",
            "correct_answers": [f"{WORDS[(i * 3) % 14]} {WORDS[(i + 2) % 14]}"],
            "incorrect_answers": [f"{WORDS[(i * 7 + 1) % 14]}", f"{WORDS[(i + 9) % 14]} cat"],
        }
        for i in range(n)
    ]


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    path = tmp_path / "labelled.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in _labelled_rows()))
    return path


def test_scores_result_ranks_saves_and_refuses_bad_k(labelled: Path, tmp_path: Path) -> None:
    model = tiny_model("llama")
    scores = hallucination_scores(model, load_labelled_answers(labelled))
    assert isinstance(scores, HallucinationScores) and scores.n_layers == 2
    for method in scores:
        values = scores[method].values
        top = scores.top(1, method)
        assert values[top[0]] == max(values)
    assert scores.top(2) == [0, 1]
    for k in (0, 3, -1):
        with pytest.raises(InputError, match="pass k between 1 and 2"):
            scores.top(k)
    with pytest.raises(InputError, match="No 'avss' ranking"):
        scores["avss"]
    frame = scores.to_frame()
    assert list(frame["eavss"]) == list(scores["eavss"].values)
    assert "hsav_signed" in frame and "probe" in frame
    saved = scores.save(tmp_path / "scores.safetensors")
    again = HallucinationScores.load(saved)
    assert again["probe"].values == scores["probe"].values and again.chance == scores.chance
    figure = scores.plot(k=1)
    assert len(figure.axes) == 4
    with pytest.raises(InputError, match="pass k between 1 and 2"):
        scores.plot(k=5)


def test_choice_accuracy_compares_the_gold_with_every_incorrect_answer(labelled: Path) -> None:
    model = tiny_model("llama")
    answers = load_labelled_answers(labelled)
    got = choice_accuracy(model, answers)
    assert got.questions == 12
    wins = 0
    for row in _labelled_rows():
        question = answers.questions.index(str(row["question"]))
        prompt = answers.prompts[answers.question.index(question)]
        texts = [" " + row["correct_answers"][0], *(" " + a for a in row["incorrect_answers"])]
        scores, _ = continuation_logprobs(model, [prompt] * len(texts), texts)
        wins += bool(scores[0] > scores[1:].max())
    assert got.accuracy == pytest.approx(wins / 12)
    only_right = answers.subset([])
    with pytest.raises(InputError, match="No question has an incorrect answer"):
        choice_accuracy(model, only_right)


def test_question_files_need_gold_answers(tmp_path: Path) -> None:
    good = tmp_path / "q.jsonl"
    good.write_text(
        json.dumps({"question": "Capital of France?", "answer": "Paris", "aliases": ["paris"]})
        + "\n"
    )
    assert load_questions(good) == [FactualQuestion("Capital of France?", "Paris", ("paris",))]
    csv_file = tmp_path / "q.csv"
    csv_file.write_text("question,answer,aliases\n2+2?,4,four;IV\n")
    assert load_questions(csv_file)[0].golds == ("4", "four", "IV")
    no_gold = tmp_path / "nogold.jsonl"
    no_gold.write_text(json.dumps({"question": "Who?"}) + "\n")
    with pytest.raises(InputError, match="has no gold answer"):
        load_questions(no_gold)
    blank = tmp_path / "blank.csv"
    blank.write_text("question,answer\nWho?,  \n")
    with pytest.raises(InputError, match="has no gold answer"):
        load_questions(blank)
    from circuitlab.hallucination import label_model_answers

    with pytest.raises(InputError, match="has no gold answer"):
        label_model_answers(tiny_model("llama"), [FactualQuestion("Who?", " ")])


def _trained(folder: Path, labelled: Path) -> tuple[circuitlab.ModelHandle, object]:
    model = circuitlab.load(str(folder))
    run = contrastive_finetune(
        model, load_labelled_answers(labelled), [1], epochs=3, learning_rate=5e-2, seed=0
    )
    return model, run


def _questions() -> list[FactualQuestion]:
    return [FactualQuestion(row["question"], "cat") for row in _labelled_rows(6)]  # type: ignore[arg-type]


def test_export_reloads_with_plain_peft_and_transformers(
    tiny_folder: Path, labelled: Path, tmp_path: Path
) -> None:
    model, run = _trained(tiny_folder, labelled)
    batch = model.tokenize(["the cat sat on the mat", "a dog"])
    expected = model.logits(batch)
    base = AutoModelForCausalLM.from_pretrained(tiny_folder, dtype=torch.float32).eval()
    with torch.no_grad():
        plain_base = base(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    mask = batch.attention_mask.bool()
    assert float((plain_base - expected)[mask].abs().max()) > 1e-3  # training changed the model
    folder = export_contrastive(model, run.adapter, tmp_path / "out", _questions())
    record = json.loads((folder / "circuitlab_contrastive.json").read_text())
    assert record["layers"] == [1] and record["check"]["questions"] == 6
    merged = AutoModelForCausalLM.from_pretrained(folder / "merged", dtype=torch.float32).eval()
    with_adapter = PeftModel.from_pretrained(base, folder / "adapter").eval()
    with torch.no_grad():
        for plain in (merged, with_adapter):
            logits = plain(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            assert float((logits - expected)[mask].abs().max()) <= 1e-4


def test_export_refuses_different_answers_and_leaves_nothing(
    tiny_folder: Path, labelled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import circuitlab.hallucination.export as export

    model, run = _trained(tiny_folder, labelled)
    original = export.plain_answers
    monkeypatch.setattr(
        export, "plain_answers", lambda *a, **k: ["?" + text for text in original(*a, **k)]
    )
    with pytest.raises(ExportCheckError, match="merged checkpoint answers 6 of 6"):
        export_contrastive(model, run.adapter, tmp_path / "out", _questions())
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    with pytest.raises(InputError, match="Cannot find the plain weights"):
        export_contrastive(tiny_model("llama"), run.adapter, tmp_path / "o2", _questions())


def test_cli_commands_rank_train_and_export(
    tiny_folder: Path, labelled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scores_json = tmp_path / "scores.json"
    code = main(
        ["hallucination-layers", "--model", str(tiny_folder), "--data", str(labelled),
         "--top-k", "1", "--json", str(scores_json), "--plot", str(tmp_path / "s.png")]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "12 questions, 12 truthful and 24 hallucinated answers" in printed
    document = json.loads(scores_json.read_text())
    scores = HallucinationScores.from_document(document)
    expected = hallucination_scores(
        circuitlab.load(str(tiny_folder)), load_labelled_answers(labelled)
    )
    assert scores["eavss"].values == pytest.approx(expected["eavss"].values)
    assert document["run"]["chosen"]["eavss"] == expected.top(1)
    assert (tmp_path / "s.png").stat().st_size > 1000

    out = tmp_path / "run.json"
    code = main(
        ["contrastive-finetune", "--model", str(tiny_folder), "--data", str(labelled),
         "--layers", "1", "--epochs", "2", "--learning-rate", "0.05", "--test-fraction", "0.25",
         "--json", str(out), "--export", str(tmp_path / "export")]
    )  # fmt: skip
    assert code == 0
    run = json.loads(out.read_text())
    assert run["layers"] == [1] and run["test_questions"] == 3 and run["train_questions"] == 9
    assert len(run["losses"]) == 2 and run["settings"]["steps"] == 4
    assert 0 <= run["after"]["choice_accuracy"] <= 1
    assert (tmp_path / "export" / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "export" / "merged" / "config.json").is_file()
    assert "both give circuitlab's answers to the 3 test questions" in capsys.readouterr().out


def test_dataset_loader_refuses_unlabelled_rows_through_the_cli(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    all_right = tmp_path / "right.jsonl"
    all_right.write_text(
        "".join(
            json.dumps({"question": row["question"], "correct_answers": row["correct_answers"]})
            + "\n"
            for row in _labelled_rows()
        )
    )
    code = main(
        ["contrastive-finetune", "--model", str(tiny_folder), "--data", str(all_right),
         "--layers", "1"]
    )  # fmt: skip
    assert code == 2
    assert "answers is right" in capsys.readouterr().err
    code = main(["hallucination-layers", "--model", str(tiny_folder), "--data", str(all_right),
                 "--top-k", "3"])  # fmt: skip
    assert code == 2
    assert "pass --top-k between 1 and 2" in capsys.readouterr().err
