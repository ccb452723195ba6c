"""The circuitlab command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from circuitlab.cli.main import build_parser, main
from circuitlab.testing import tiny_hf_model


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    model, tokenizer = tiny_hf_model("llama")
    folder = tmp_path / "tiny-llama"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_report_on_a_local_folder_writes_json(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    code = main(
        [
            "report",
            "--model",
            str(tiny_folder),
            "--prompt",
            "the capital of france is",
            "--top-k",
            "3",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "LlamaForCausalLM (llama): 2 layers, 4 heads (2 KV heads)" in printed
    report = json.loads(out.read_text())
    assert report["model"]["n_layers"] == 2
    assert report["prompt_tokens"] == ["the", "capital", "of", "france", "is"]
    probabilities = [row["probability"] for row in report["top_next_tokens"]]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    assert len(report["top_writers"]) == 3
    assert "Components writing" in printed


def test_bad_input_exits_2_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--model", "no-such-model"]) == 2
    assert "Unknown model 'no-such-model'" in capsys.readouterr().err
    assert main(["models", "fetch", "no-such-model"]) == 2
    assert "Known names" in capsys.readouterr().err


def test_models_list_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "models.json"
    assert main(["models", "list", "--cache-dir", str(tmp_path / "empty"), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {row["name"] for row in rows} == {"smollm2-135m-instruct", "gemma3-270m"}
    assert not any(row["cached"] for row in rows)
    assert "not cached" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command", [[], ["report"], ["models"], ["models", "list"], ["models", "fetch"]]
)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args([*command, "--help"])
    assert caught.value.code == 0
    assert "usage: circuitlab" in capsys.readouterr().out


@pytest.mark.real_model
def test_console_script_reports_on_the_default_model(tmp_path: Path, smollm2: object) -> None:
    """The README's main job, end to end in a subprocess, on the embedded default model."""
    out = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "circuitlab", "report", "--json", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "smollm2-135m-instruct" in result.stdout
    report = json.loads(out.read_text())
    assert report["top_next_tokens"][0]["token"] == " Paris"
    assert report["top_writers"][0]["component"] == "MLP29"


def test_decompose_command(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, plot, saved = tmp_path / "dla.json", tmp_path / "heads.png", tmp_path / "dla.safetensors"
    code = main(
        [
            "decompose",
            "--model",
            str(tiny_folder),
            "--prompt",
            "the capital of france is",
            "--prompt",
            "a cat sat",
            "--target",
            "paris",
            "--diff",
            "yes",
            "no",
            "--top-k",
            "3",
            "--json",
            str(out),
            "--plot",
            str(plot),
            "--save",
            str(saved),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "target 'paris'" in printed and "target 'yes' - 'no'" in printed
    report = json.loads(out.read_text())
    assert report["reconstruction_error"] < 1e-5
    assert len(report["targets"]) == 2 and len(report["targets"][0]["top"]) == 3
    assert len(report["mean_attribution"]) == 2
    assert len(report["mean_attribution"][0]) == len(report["components"]) == 11
    assert plot.stat().st_size > 1000 and saved.stat().st_size > 0


def test_decompose_bad_input(tiny_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decompose", "--model", str(tiny_folder), "--prompt", "a cat"]) == 2
    assert "at least one --target" in capsys.readouterr().err
    args = ["decompose", "--model", str(tiny_folder), "--prompt", "a cat", "--target", "paris"]
    assert main([*args, "--position", "5"]) == 2
    assert "out of range for prompt 0" in capsys.readouterr().err
    assert (
        main(["decompose", "--model", str(tiny_folder), "--prompt", "a", "--target", "a cat"]) == 2
    )
    assert "is 2 tokens" in capsys.readouterr().err


def test_component_accuracy_command(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task_file = tmp_path / "task.jsonl"
    rows = [
        ("the movie was good", "yes"),
        ("the movie was bad", "no"),
        ("a great film", "yes"),
        ("a terrible film", "no"),
        ("really good", "yes"),
        ("not good", "no"),
    ]
    task_file.write_text("".join(json.dumps({"review": t, "label": y}) + "\n" for t, y in rows))
    out, table = tmp_path / "acc.json", tmp_path / "acc.csv"
    code = main(
        [
            "component-accuracy",
            "--model",
            str(tiny_folder),
            "--task",
            str(task_file),
            "--text-column",
            "review",
            "--label-words",
            "no",
            "yes",
            "--k-shot",
            "2",
            "--json",
            str(out),
            "--csv",
            str(table),
            "--plot",
            str(tmp_path / "acc.png"),
        ]
    )
    assert code == 0
    assert "full model accuracy" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["examples"] == 6 and report["chance"] == 0.5
    assert set(report["accuracy"]) >= {"EMBED", "L0H0", "MLP1"}
    assert all(0.0 <= value <= 1.0 for value in report["accuracy"].values())
    assert table.read_text().startswith("component,accuracy,majority_label")


def test_component_accuracy_bad_task(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["component-accuracy", "--model", str(tiny_folder), "--task", "nope"]) == 2
    assert "sentiment" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["component-accuracy", "--model", str(tiny_folder), "--task", str(empty)]) == 2
    assert "empty" in capsys.readouterr().err.lower()
    multi_token = ["--label-words", "very good", "bad", "--limit", "4"]
    assert (
        main(
            ["component-accuracy", "--model", str(tiny_folder), "--task", "sentiment", *multi_token]
        )
        == 2
    )
    assert "Label word 'very good' is 2 tokens" in capsys.readouterr().err
